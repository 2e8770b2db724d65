"""The method names and the checkpoints behind them (icpt/evaluation/checkpoints.py): what `load_models` refuses
before it loads anything, and the embedded default's preset. Only configs are written here: no weights."""

import pytest

from icpt.evaluation import checkpoints
from icpt.evaluation.checkpoints import (
    ABLATIONS,
    BASELINE_METHODS,
    CHECKPOINT_METHODS,
    METHODS,
    RETRIEVAL_METHODS,
    default_preset,
    display_path,
    inapplicable_ablations,
    load_models,
)
from modeling_icpt import ICPTConfig


def projector(folder, **values):
    """A projector checkpoint's config.json (all `load_models` and the preset read before loading weights)."""
    ICPTConfig(**values).save_pretrained(folder)
    return folder


def test_the_method_names():
    assert METHODS == CHECKPOINT_METHODS + BASELINE_METHODS + RETRIEVAL_METHODS and len(set(METHODS)) == len(METHODS)
    assert CHECKPOINT_METHODS[0] == "icpt" and set(ABLATIONS) == set(CHECKPOINT_METHODS) - {"icpt"}
    for method, (name, switch, flag) in ABLATIONS.items():
        assert hasattr(ICPTConfig(), name) and switch in ("off", "on") and flag.startswith("--"), method
    for off, on in checkpoints.PAIRED_ABLATIONS:  # the two directions of one part
        assert ABLATIONS[off][0] == ABLATIONS[on][0] and (ABLATIONS[off][1], ABLATIONS[on][1]) == ("off", "on")


def test_load_models_refuses_before_loading(tmp_path):
    with pytest.raises(ValueError, match=r"unknown methods \['magic'\]"):
        load_models({"magic": str(tmp_path)})
    with pytest.raises(FileNotFoundError, match=r"No ICPT checkpoint at .* \(for icpt\): train one with examples/train_icpt.py"):
        load_models({"icpt": str(tmp_path / "nothing")})
    full = projector(tmp_path / "full", min_prompt_length=2, max_prompt_length=8, decoupling_weight=0.5,
                     separation_weight=1.0)
    for method in ("icpt_no_separation", "icpt_no_decoupling", "icpt_fixed_length"):
        field, _, flag = ABLATIONS[method]
        with pytest.raises(ValueError, match=rf"The {method} checkpoint .* with {field}=.*switches that part off .*{flag}"):
            load_models({method: str(full)})
    plain = projector(tmp_path / "plain", max_prompt_length=8, decoupling_weight=0.0, separation_weight=0.0)
    for method in ("icpt_with_separation", "icpt_with_decoupling"):
        field, _, flag = ABLATIONS[method]
        with pytest.raises(ValueError, match=rf"The {method} checkpoint .* with {field}=0.0: the ablation switches "
                                             rf"that part on .*{flag}"):
            load_models({method: str(plain)})
    one_length = projector(tmp_path / "one_length", max_prompt_length=8)
    with pytest.raises(ValueError, match="icpt_adaptive_length checkpoint"):  # min = max: no length to adapt
        load_models({"icpt_adaptive_length": str(one_length)})
    with pytest.raises(ValueError, match="names no backbone"):
        load_models({"icpt": str(full)})
    with pytest.raises(ValueError, match="No backbone"):
        load_models({})


def test_of_each_pair_of_ablations_the_one_that_would_change_nothing(tmp_path):
    one_length = projector(tmp_path / "a", max_prompt_length=4, decoupling_weight=0.0, separation_weight=0.0)
    assert inapplicable_ablations(one_length) == {"icpt_fixed_length", "icpt_no_decoupling", "icpt_no_separation"}
    full = projector(tmp_path / "b", min_prompt_length=2, max_prompt_length=4, decoupling_weight=0.1,
                     separation_weight=1.0)
    assert inapplicable_ablations(full) == {"icpt_adaptive_length", "icpt_with_decoupling", "icpt_with_separation"}
    # no checkpoint: the library's defaults (one length, no L_dec, no L_sep)
    assert inapplicable_ablations(tmp_path / "none") == inapplicable_ablations(one_length)


def test_default_preset_finds_the_projectors_and_says_how_to_train_the_missing(tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoints, "DEFAULT_DIR", tmp_path)
    with pytest.raises(FileNotFoundError, match="default backbone is not at .*pretrain_world_backbone.py"):
        default_preset(tmp_path / "ablations")
    (tmp_path / "backbone").mkdir()
    (tmp_path / "backbone" / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="projector is not at .*train_icpt.py"):
        default_preset(tmp_path / "ablations")
    # one length, no L_dec, no L_sep: the adaptive-length, with-decoupling and with-separation ablations apply
    projector(tmp_path / "projector", max_prompt_length=4)
    projector(tmp_path / "ablations" / "icpt_with_separation", max_prompt_length=4, separation_weight=1.0)
    backbone, found, missing = default_preset(tmp_path / "ablations")
    assert backbone == tmp_path / "backbone"
    assert found == {"icpt": tmp_path / "projector",
                     "icpt_with_separation": tmp_path / "ablations" / "icpt_with_separation"}
    assert len(missing) == len(ABLATIONS) - 3 - 1
    assert not any(name in line for line in missing
                   for name in ("icpt_fixed_length", "icpt_no_decoupling", "icpt_no_separation"))
    assert (f"python examples/train_icpt.py --backbone {tmp_path / 'backbone'} --output_dir "
            f"{tmp_path / 'ablations' / 'icpt_adaptive_length'} --min_prompt_length 2 --max_prompt_length 8") in missing


def test_display_path_is_relative_inside_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert display_path(tmp_path / "runs" / "a") == "runs/a"
    assert display_path("/elsewhere/x") == "/elsewhere/x"
