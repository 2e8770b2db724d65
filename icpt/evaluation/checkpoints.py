"""Which methods a run can have, and the ICPT checkpoints behind them: the method names (`METHODS`: `CHECKPOINT_METHODS`,
`BASELINE_METHODS`, `RETRIEVAL_METHODS`), what each ablation must have been trained with (`ABLATIONS`), loading
the checkpoints on one backbone (`load_models`), and the embedded default's preset (`default_preset`)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from transformers import AutoModelForImageTextToText

from icpt.inference import DEFAULT_DIR, load_model
from icpt.training.prompt_fitting import TEST_TIME_TRAINING_ROWS
from modeling_icpt import ICPTConfig, ICPTForConditionalGeneration
from processing_icpt import ICPTProcessor

from .methods import BackboneContext

CHECKPOINT_METHODS = ("icpt", "icpt_frozen_reader", "icpt_fixed_length", "icpt_adaptive_length", "icpt_no_decoupling",
                      "icpt_with_decoupling", "icpt_no_separation", "icpt_with_separation", "icpt_no_identity_targets")
BASELINE_METHODS = ("name_only", "text_description", "raw_references", "raw_references_plain_noun", "test_time_training",
                    "name_only_adapted", "raw_references_adapted")
# Baselines asked through `icpt`'s reader adapter (its language model with the adapter), when it has one: what
# the adapter does to answers without ICPT's rows (`name_only_adapted`: an answer prior or a scene cue it learned)
ADAPTED_BASELINES = {"name_only_adapted": "name_only", "raw_references_adapted": "raw_references"}
# `icpt` with retrieval choosing context as RAP does: the named concepts plus the top-k others of the whole
# collection that the photo most likely shows
RETRIEVAL_METHODS = ("icpt_retrieval",)
METHODS = CHECKPOINT_METHODS + BASELINE_METHODS + RETRIEVAL_METHODS
# What each ablation checkpoint must have been trained with: (config field, "off" or "on", the training flag).
# An ablation changes one part of the method: "off" switches off a part the method has, "on" switches on a
# part it does not have (the method ships only the parts its measurements support, docs/method.md).
ABLATIONS = {
    "icpt_frozen_reader": ("reader_lora_rank", "off", "--reader_lora_rank 0"),
    "icpt_fixed_length": ("adaptive_length", "off", "--adaptive_length false"),
    "icpt_adaptive_length": ("adaptive_length", "on", "--min_prompt_length 2 --max_prompt_length 8"),
    "icpt_no_decoupling": ("decoupling_weight", "off", "--decoupling_weight 0"),
    "icpt_with_decoupling": ("decoupling_weight", "on", "--decoupling_weight 0.1"),
    "icpt_no_separation": ("separation_weight", "off", "--separation_weight 0"),
    "icpt_with_separation": ("separation_weight", "on", "--separation_weight 1"),
    "icpt_no_identity_targets": ("identity_target_weight", "off", "--identity_target_weight 0"),
}
# Parts with an ablation each way: of the two, only the one that changes a given projector applies to it
PAIRED_ABLATIONS = (("icpt_fixed_length", "icpt_adaptive_length"), ("icpt_no_decoupling", "icpt_with_decoupling"),
                    ("icpt_no_separation", "icpt_with_separation"))
# The ablation projectors ship beside the embedded default, so the results page can be regenerated from a clone.
DEFAULT_ABLATIONS_DIR = DEFAULT_DIR / "ablations"


# --------------------------------------------------------------------------------------------- loading


def load_models(checkpoints: Mapping[str, str], backbone: str | None = None, device: str | None = None):
    """The shared backbone, its processor, and an ICPT model per checkpoint, all around the same backbone.

    Returns `(context, models, notes)`: a `BackboneContext`, `{method: ICPTForConditionalGeneration}` and
    `{method: note}` for checkpoints worth a remark.

    `icpt_fixed_length` may be given a checkpoint trained with adaptive length whose lengths are fixed anyway
    (`min_prompt_length == max_prompt_length`): it is then loaded with `adaptive_length=False`, which gives
    every concept the same rows as before, and the note says so.
    """
    unknown = sorted(set(checkpoints) - set(CHECKPOINT_METHODS))
    if unknown:
        raise ValueError(f"Checkpoints given for unknown methods {unknown}: the checkpoint methods are {CHECKPOINT_METHODS}.")
    configs = {}
    for method, path in checkpoints.items():
        if not (Path(path) / "config.json").is_file():
            raise FileNotFoundError(
                f"No ICPT checkpoint at {path} (for {method}): train one with examples/train_icpt.py "
                "(it writes config.json and model.safetensors into --output_dir)."
            )
        configs[method] = ICPTConfig.from_pretrained(path)
    notes = {}
    for method, config in configs.items():
        if method == "icpt_fixed_length" and config.adaptive_length and config.min_prompt_length == config.max_prompt_length:
            config.adaptive_length = False
            notes[method] = (
                f"the checkpoint {display_path(checkpoints[method])} loaded with adaptive_length=False: it was trained "
                f"with min_prompt_length = max_prompt_length = {config.max_prompt_length}, so adaptive length already "
                f"gives every concept {config.max_prompt_length} rows and a fixed-length run of the same recipe draws "
                "the same lengths and batches (nothing to train)"
            )
        if method in ABLATIONS:
            field, switch, flag = ABLATIONS[method]
            if has_part(config, field) != (switch == "on"):
                found = getattr(config, field)
                if field == "adaptive_length":
                    found = f"{found} and {config.min_prompt_length}..{config.max_prompt_length} rows"
                raise ValueError(
                    f"The {method} checkpoint {checkpoints[method]} was trained with {field}={found}: the ablation "
                    f"switches that part {switch} (train it with examples/train_icpt.py {flag})."
                )
    if backbone is None:
        if not configs:
            raise ValueError("No backbone: pass backbone=PATH (or --backbone), or at least one ICPT checkpoint naming it.")
        method, config = next(iter(configs.items()))
        backbone = _trained_backbone(checkpoints[method], config)
        if not backbone:
            raise ValueError("The checkpoint's config names no backbone (base_model_name_or_path): pass --backbone PATH.")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    vlm = AutoModelForImageTextToText.from_pretrained(backbone).to(device)
    max_length = max([config.max_prompt_length for config in configs.values()] + [TEST_TIME_TRAINING_ROWS])
    processor = ICPTProcessor.from_backbone(backbone, max_prompt_length=max_length)

    models = {}
    for method, config in configs.items():
        if config.prompt_token_id != processor.prompt_token_id:
            raise ValueError(
                f"The {method} checkpoint reserves token id {config.prompt_token_id} for its prompt slots but the "
                f"backbone's tokenizer gives {processor.prompt_token_id}: it was made for another tokenizer."
            )
        trained_on = _trained_backbone(checkpoints[method], config)
        if trained_on and not _same_path(trained_on, backbone):
            notes[method] = (notes[method] + "; " if method in notes else "") + (
                f"trained on {display_path(trained_on)}, evaluated on {display_path(backbone)}"
            )
        # a reader adapter changes the backbone it is added to: such a checkpoint gets a backbone of its own
        own = AutoModelForImageTextToText.from_pretrained(backbone).to(device) if config.reader_lora_rank else vlm
        models[method] = load_model(checkpoints[method], backbone=own, config=config)
    injector = next((model for model in models.values() if model.vlm is vlm), None)
    if injector is None:  # no checkpoint: an untrained wrapper only injects test-time-trained rows
        injector = ICPTForConditionalGeneration.from_backbone(vlm, prompt_token_id=processor.prompt_token_id).eval()
    return BackboneContext(vlm, processor, injector), models, notes


def _trained_backbone(checkpoint, config) -> str | None:
    """The backbone a checkpoint names; a relative path is read from the checkpoint's folder, as
    `ICPTForConditionalGeneration.from_pretrained` reads it."""
    name = config.base_model_name_or_path
    if name and not Path(name).is_absolute() and (Path(checkpoint) / name).is_dir():
        return str((Path(checkpoint) / name).resolve())
    return name


def display_path(path) -> str:
    """A local path relative to the working directory when it lies inside it (reports stay portable)."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _same_path(a: str, b: str) -> bool:
    if Path(a).exists() and Path(b).exists():
        return Path(a).resolve() == Path(b).resolve()
    return str(a) == str(b)


# --------------------------------------------------------------------------------------------- the embedded default's preset


def default_preset(ablations_dir: str | Path = DEFAULT_ABLATIONS_DIR) -> tuple[Path, dict[str, Path], list[str]]:
    """The embedded default: its backbone, the projector checkpoints that exist, and how to train the missing ones.

    The projector is `icpt/default/projector` (the one `icpt ask` uses); the ablations are looked up in
    `ablations_dir/<method>`, those of `inapplicable_ablations` left out: a projector trained with
    `min_prompt_length == max_prompt_length` has no fixed-length ablation (it is one) but an adaptive-length one
    (`icpt_adaptive_length`), one trained without L_sep has `icpt_with_separation` instead of `icpt_no_separation`.
    """
    backbone = DEFAULT_DIR / "backbone"
    if not (backbone / "config.json").is_file():
        raise FileNotFoundError(
            f"The embedded default backbone is not at {backbone}: train it with "
            "`python examples/pretrain_world_backbone.py` (it saves there)."
        )
    paths = {"icpt": DEFAULT_DIR / "projector", **{m: Path(ablations_dir) / m for m in ABLATIONS}}
    # a projector without L_sep has no L_sep to switch off, but one to switch on (and so on for each pair)
    for method in inapplicable_ablations(paths["icpt"]):
        del paths[method]
    checkpoints, missing = {}, []
    for method, path in paths.items():
        if (path / "config.json").is_file():
            checkpoints[method] = path
        else:
            flag = ABLATIONS[method][2] if method in ABLATIONS else ""
            missing.append(
                f"python examples/train_icpt.py --backbone {backbone} --output_dir {path} {flag}".rstrip()
            )
    if "icpt" not in checkpoints:
        raise FileNotFoundError(f"The embedded default projector is not at {paths['icpt']}: train it with `{missing[0]}`.")
    return backbone, checkpoints, missing


def has_part(config: ICPTConfig, field: str) -> bool:
    """Whether a projector's config has the part an ablation's field switches (a length rule needs a choice of lengths)."""
    if field == "adaptive_length":
        return bool(config.adaptive_length) and config.min_prompt_length < config.max_prompt_length
    return bool(getattr(config, field))


def inapplicable_ablations(checkpoint: Path) -> set[str]:
    """The ablations that would not change a projector, one of each pair: e.g. `icpt_no_separation` for one trained
    without L_sep (it is one already), `icpt_with_separation` for one trained with it. Without a checkpoint, the
    library's defaults decide."""
    config = ICPTConfig.from_pretrained(checkpoint) if (Path(checkpoint) / "config.json").is_file() else ICPTConfig()
    return {off if not has_part(config, ABLATIONS[off][0]) else on for off, on in PAIRED_ABLATIONS}
