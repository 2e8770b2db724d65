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
    inapplicable_length_ablation,
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
    for method, (name, value, flag) in ABLATIONS.items():
        assert hasattr(ICPTConfig(), name) and flag.startswith("--"), method


def test_load_models_refuses_before_loading(tmp_path):
    with pytest.raises(ValueError, match=r"unknown methods \['magic'\]"):
        load_models({"magic": str(tmp_path)})
    with pytest.raises(FileNotFoundError, match=r"No ICPT checkpoint at .* \(for icpt\): train one with examples/train_icpt.py"):
        load_models({"icpt": str(tmp_path / "nothing")})
    full = projector(tmp_path / "full", min_prompt_length=2, max_prompt_length=8, decoupling_weight=0.5)
    for method in ("icpt_no_separation", "icpt_no_decoupling", "icpt_fixed_length"):
        field, value, flag = ABLATIONS[method]
        with pytest.raises(ValueError, match=rf"The {method} checkpoint .* needs {field}={value} .*{flag}"):
            load_models({method: str(full)})
    one_length = projector(tmp_path / "one_length", max_prompt_length=8)
    with pytest.raises(ValueError, match="icpt_adaptive_length checkpoint"):  # min = max: no length to adapt
        load_models({"icpt_adaptive_length": str(one_length)})
    with pytest.raises(ValueError, match="names no backbone"):
        load_models({"icpt": str(full)})
    with pytest.raises(ValueError, match="No backbone"):
        load_models({})


def test_the_length_ablation_that_would_change_nothing(tmp_path):
    assert inapplicable_length_ablation(projector(tmp_path / "a", max_prompt_length=4)) == "icpt_fixed_length"
    assert inapplicable_length_ablation(projector(tmp_path / "b", min_prompt_length=2, max_prompt_length=4)) == (
        "icpt_adaptive_length")
    assert inapplicable_length_ablation(tmp_path / "none") == "icpt_adaptive_length"


def test_default_preset_finds_the_projectors_and_says_how_to_train_the_missing(tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoints, "DEFAULT_DIR", tmp_path)
    with pytest.raises(FileNotFoundError, match="default backbone is not at .*pretrain_world_backbone.py"):
        default_preset(tmp_path / "ablations")
    (tmp_path / "backbone").mkdir()
    (tmp_path / "backbone" / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="projector is not at .*train_icpt.py"):
        default_preset(tmp_path / "ablations")
    projector(tmp_path / "projector", max_prompt_length=4)  # one length: no fixed-length ablation, an adaptive one
    projector(tmp_path / "ablations" / "icpt_no_separation", max_prompt_length=4, separation_weight=0.0)
    backbone, found, missing = default_preset(tmp_path / "ablations")
    assert backbone == tmp_path / "backbone"
    assert found == {"icpt": tmp_path / "projector",
                     "icpt_no_separation": tmp_path / "ablations" / "icpt_no_separation"}
    assert len(missing) == len(ABLATIONS) - 2 and not any("icpt_fixed_length" in line for line in missing)
    assert (f"python examples/train_icpt.py --backbone {tmp_path / 'backbone'} --output_dir "
            f"{tmp_path / 'ablations' / 'icpt_adaptive_length'} --min_prompt_length 2 --max_prompt_length 8") in missing


def test_display_path_is_relative_inside_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert display_path(tmp_path / "runs" / "a") == "runs/a"
    assert display_path("/elsewhere/x") == "/elsewhere/x"
