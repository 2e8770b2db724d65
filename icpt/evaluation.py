"""The evaluation harness (`icpt eval`): ICPT, its ablations and the baselines, on the same data and backbone.

One run loads one frozen backbone, wraps it with every ICPT checkpoint it is given (`icpt`,
`icpt_fixed_length`, `icpt_no_decoupling`, `icpt_no_separation`, `icpt_no_identity_targets`, trained by
`examples/train_icpt.py` with that part switched off), and answers the same episodes with each method of `METHODS`:

| method | what the backbone sees for each concept | its prompt tokens per concept |
|---|---|---|
| `icpt`, `icpt_*` | its label and the projector's rows | the bank's length |
| `name_only` | its label, in the question only | the label's text tokens |
| `text_description` | "<bo> is <description>." (skipped when episodes carry no description) | the description's tokens |
| `raw_references` | "<bo> is <photo><photo>." -- the ceiling, and its cost | the image tokens of its photos |
| `test_time_training` | its label and 16 rows trained per concept (Yo'LLaVA-style) | 16 |

It scores the answers with the project's `evaluate` metrics (`icpt.metrics`): recognition in the
Yo'LLaVA protocol (positive, negative, weighted; overall and per concept), two-option VQA and text-only
QA by exact match, attribute and presence questions, accuracy on single- vs multi-concept images
(tag `multi_concept`) and caption recall (against `present`); every metric again on the
`environment_shift` and `look_alike` splits; mean and 95 % interval over seeds (at least 3 by default).

**What a seed varies**: which held-out episodes are drawn (the generated world draws fresh episodes per
seed; a fixed dataset is shuffled and `num_episodes` of it taken), which references of each concept are
used (when `num_references` is set, and in the reference sweep), and the test-time-training baseline's
initialization and negatives. Decoding is greedy: nothing else is random.

A **reference sweep** reruns the reference-using methods on the recognition episodes with at most
k = 1..5 references per concept. Everything lands in an output folder:

- `results.json` (schema below), `results.md` (the tables),
- `accuracy_vs_prompt_tokens.png`, `accuracy_vs_references.png` (`icpt.plots`).

**Regenerating `docs/results.md`** on the embedded default (backbone `icpt/default/backbone`, projector
`icpt/default/projector`, the three ablation projectors in `icpt/default/ablations/<method>`; no number
typed by hand):

```bash
icpt eval --preset default --write-docs docs/results.md
# the same without the console script:
python -m icpt.evaluation --preset default --write-docs docs/results.md
```

The ablation projectors are trained like the default one, on the default backbone's world (read from its
`world.json`, so that no evaluation identity was a training identity), with one term switched off:

```bash
python examples/train_icpt.py --backbone icpt/default/backbone \
    --output_dir icpt/default/ablations/icpt_no_separation --separation_weight 0
# --decoupling_weight 0 -> icpt_no_decoupling, --adaptive_length false -> icpt_fixed_length,
# no --identity_targets -> icpt_no_identity_targets
```

Other data: `--episodes DIR` (a `Dataset.save_to_disk` folder with `EPISODE_FEATURES`), or
`--benchmark yollava|myvlm|mc_llava --benchmark-root DIR` (a local copy of the benchmark, see
`icpt.benchmarks`); by default the generated world's held-out episodes.

`results.json`: `schema_version`, `command`, `backbone`, `data` (`description`, `num_episodes` per seed,
`tasks`, `tags`), `seeds`, `seed_varies`, `settings`, `metrics`, `splits`, `methods` (per method:
`status` "ok" or "skipped", `note`, `checkpoint`, `prompt_tokens_per_concept`, `seconds_per_concept`,
`wall_seconds`, `results` `{split: {metric: aggregate}}`, `per_concept` `{label: {metric: aggregate}}`,
`examples`), `reference_sweep` (`metric`, `counts`, `methods` `{method: {k: aggregate}}`, `note`) and
`plots`. An aggregate is `{"mean", "low", "high", "per_seed", "num_seeds"}`.

Example:

```python
>>> from icpt.evaluation import run_evaluation
>>> results = run_evaluation(
...     episodes,  # a Dataset, or a function seed -> Dataset
...     checkpoints={"icpt": "outputs/projector", "icpt_no_separation": "outputs/projector-no-sep"},
...     seeds=(0, 1, 2), output_dir="outputs/eval",
... )  # doctest: +SKIP
>>> results["methods"]["icpt"]["results"]["all"]["recognition_weighted"]["mean"]  # doctest: +SKIP
0.79
```
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch

from .evaluation_methods import (
    DEFAULT_MAX_NEW_TOKENS,
    TEST_TIME_TRAINING_LEARNING_RATE,
    TEST_TIME_TRAINING_ROWS,
    TEST_TIME_TRAINING_STEPS,
    BackboneContext,
    ICPTMethod,
    NameOnlyMethod,
    RawReferencesMethod,
    TestTimeTrainingMethod,
    TextDescriptionMethod,
    eval_episodes,
)
from .evaluation_scoring import METRICS, SPLITS, Scorer, aggregate, aggregate_scores, render_markdown

SCHEMA_VERSION = 1
CHECKPOINT_METHODS = ("icpt", "icpt_fixed_length", "icpt_no_decoupling", "icpt_no_separation", "icpt_no_identity_targets")
BASELINE_METHODS = ("name_only", "text_description", "raw_references", "test_time_training")
METHODS = CHECKPOINT_METHODS + BASELINE_METHODS
# Methods that read reference photos: the ones the reference sweep varies (test-time training only on request).
REFERENCE_METHODS = CHECKPOINT_METHODS + ("raw_references",)
# What each ablation checkpoint must have been trained with (config field, value), and the training flag.
ABLATIONS = {
    "icpt_fixed_length": ("adaptive_length", False, "--adaptive_length false"),
    "icpt_no_decoupling": ("decoupling_weight", 0.0, "--decoupling_weight 0"),
    "icpt_no_separation": ("separation_weight", 0.0, "--separation_weight 0"),
    "icpt_no_identity_targets": ("identity_target_weight", 0.0, "--identity_target_weight 0"),
}
SEED_VARIES = (
    "a seed fixes which held-out episodes are drawn, which references of each concept are used "
    "(when capped) and the test-time-training initialization and negatives; decoding is greedy"
)
# The embedded default: the backbone and the four projector checkpoints, inside the package.
DEFAULT_DIR = Path(__file__).resolve().parent / "default"
# The ablation projectors ship beside it, so the results page can be regenerated from a clone.
DEFAULT_ABLATIONS_DIR = DEFAULT_DIR / "ablations"
# The generated world the default backbone is pretrained on (examples/pretrain_world_backbone.py defaults).
DEFAULT_WORLD_SEED = 0
DEFAULT_WORLD_IDENTITIES = 1000
DEFAULT_NUM_EPISODES = 120  # 20 per task; test-time training dominates the run time (seconds per concept)
SWEEP_METRIC = "recognition_weighted"


# --------------------------------------------------------------------------------------------- data


def world_episodes(world_seed: int = DEFAULT_WORLD_SEED, num_identities: int = DEFAULT_WORLD_IDENTITIES,
                   num_episodes: int = DEFAULT_NUM_EPISODES) -> Callable:
    """A function `seed -> Dataset` of the generated world's held-out episodes, fresh ones for each seed.

    Held-out identities only (never seen by the backbone or the projectors); references from environment
    set A, queries from A or B (tagged `environment_shift`); tasks cycled so each seed has all six.
    """
    from .world import World
    from .world_tasks import build_episodes

    world = World(seed=world_seed, num_identities=num_identities)

    def episodes(seed: int):
        return build_episodes(world, "held_out", num_episodes, seed=seed)

    episodes.description = (
        f"generated world (seed {world_seed}, {num_identities} identities), held-out identities, "
        f"{num_episodes} fresh episodes per seed"
    )
    return episodes


def _episodes_for_seed(source, seed: int, num_episodes: int | None):
    dataset = source(seed) if callable(source) else source
    if num_episodes is not None and num_episodes < len(dataset):
        dataset = dataset.shuffle(seed=seed).select(range(num_episodes))
    return dataset


# --------------------------------------------------------------------------------------------- models


def load_models(checkpoints: Mapping[str, str], backbone: str | None = None, device: str | None = None):
    """The shared backbone, its processor, and an ICPT model per checkpoint, all around the same backbone.

    Returns `(context, models, notes)`: a `BackboneContext`, `{method: ICPTForConditionalGeneration}` and
    `{method: note}` for checkpoints worth a remark.
    """
    from transformers import AutoModelForImageTextToText

    from modeling_icpt import ICPTConfig, ICPTForConditionalGeneration
    from processing_icpt import ICPTProcessor

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
        if method in ABLATIONS:
            field, value, flag = ABLATIONS[method]
            if getattr(config, field) != value:
                raise ValueError(
                    f"The {method} checkpoint {checkpoints[method]} was trained with {field}={getattr(config, field)}: "
                    f"the ablation needs {field}={value} (train it with examples/train_icpt.py {flag})."
                )
        elif not (config.adaptive_length and config.decoupling_weight > 0 and config.separation_weight > 0):
            notes[method] = (
                f"trained with adaptive_length={config.adaptive_length}, decoupling_weight={config.decoupling_weight}, "
                f"separation_weight={config.separation_weight}"
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
                f"trained on {_display_path(trained_on)}, evaluated on {_display_path(backbone)}"
            )
        models[method] = ICPTForConditionalGeneration.from_pretrained(checkpoints[method], backbone=vlm).eval()
    injector = next(iter(models.values()), None)
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


def _display_path(path) -> str:
    """A local path relative to the working directory when it lies inside it (reports stay portable)."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _same_path(a: str, b: str) -> bool:
    if Path(a).exists() and Path(b).exists():
        return Path(a).resolve() == Path(b).resolve()
    return str(a) == str(b)


# --------------------------------------------------------------------------------------------- running


def _log(progress: bool, message: str) -> None:
    if progress:
        print(f"[icpt eval {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _mean(values) -> float | None:
    values = list(values)
    return sum(values) / len(values) if values else None


def _describe(dataset_list: list) -> dict:
    """Episodes per task and per tag, all seeds together."""
    tasks, tags = Counter(), Counter()
    for episodes in dataset_list:
        for episode in episodes:
            tasks[episode.task] += 1
            tags.update(episode.tags)
    return {"tasks": dict(sorted(tasks.items())), "tags": dict(sorted(tags.items()))}


def run_evaluation(
    episodes,
    checkpoints: Mapping[str, str] | None = None,
    backbone: str | None = None,
    methods: Sequence[str] | None = None,
    seeds: Sequence[int] = (0, 1, 2),
    num_episodes: int | None = None,
    num_references: int | None = None,
    reference_counts: Sequence[int] = (1, 2, 3, 4, 5),
    sweep_methods: Sequence[str] | None = None,
    ttt_steps: int = TEST_TIME_TRAINING_STEPS,
    ttt_learning_rate: float = TEST_TIME_TRAINING_LEARNING_RATE,
    ttt_negatives: int = 8,
    max_new_tokens: Mapping[str, int] | None = None,
    device: str | None = None,
    output_dir: str | Path | None = None,
    data_description: str | None = None,
    command: str | None = None,
    progress: bool = True,
) -> dict:
    """Run `methods` on the same episodes and backbone over `seeds`; return (and with `output_dir`, write) the results.

    Args:
        episodes: a `datasets.Dataset` with `EPISODE_FEATURES`, or a function `seed -> Dataset` (e.g. `world_episodes()`).
        checkpoints: `{method: checkpoint folder}` for the methods of `CHECKPOINT_METHODS`; a chosen checkpoint
            method without a checkpoint is reported as skipped.
        backbone: the frozen backbone (default: the one the first checkpoint names).
        methods: which of `METHODS` to run (default: all).
        seeds: at least 3 for an interval (see the module docstring for what a seed varies).
        num_episodes: episodes per seed (default: all of a dataset; a function decides itself).
        num_references: at most this many references per concept, drawn with the seed (default: all).
        reference_counts: the k of the reference sweep (empty: no sweep).
        sweep_methods: methods of the sweep (default: the chosen ones among `REFERENCE_METHODS`).
        ttt_steps, ttt_learning_rate, ttt_negatives: the test-time-training budget per concept (see
            `train_concept_prompts`; the learning rate is relative to the size of an embedding entry).
        max_new_tokens: per-task overrides of `DEFAULT_MAX_NEW_TOKENS`.
        device: "cpu", "cuda", ... (default: cuda when available).
        output_dir: where to write results.json, results.md and the plots.
        data_description: one line on the data for the tables.
        command: the command line that produced the run (recorded in results.json and the markdown).
        progress: log each method's progress to stderr.
    """
    checkpoints = {k: str(v) for k, v in (checkpoints or {}).items()}
    methods = list(METHODS if methods is None else methods)
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise ValueError(f"Unknown methods {unknown}: choose among {', '.join(METHODS)}.")
    if not seeds:
        raise ValueError("Give at least one seed (three or more for a 95 % interval).")
    sweep_methods = [m for m in (sweep_methods if sweep_methods is not None else REFERENCE_METHODS) if m in methods]
    context, models, checkpoint_notes = load_models(
        {m: p for m, p in checkpoints.items() if m in methods}, backbone=backbone, device=device
    )
    context.max_new_tokens = {**DEFAULT_MAX_NEW_TOKENS, **(max_new_tokens or {})}
    backbone = backbone or context.vlm.config.name_or_path

    rows, runners = {}, {}
    for name in methods:
        rows[name] = {"status": "ok", "note": checkpoint_notes.get(name, ""), "checkpoint": checkpoints.get(name)}
        if name in CHECKPOINT_METHODS:
            if name not in models:
                flag = ABLATIONS[name][2] if name in ABLATIONS else ""
                rows[name].update(status="skipped", note=(
                    f"no checkpoint given: train one with examples/train_icpt.py {flag}".rstrip()
                    + f" and pass it with --checkpoint {name}=PATH"))
                continue
            runners[name] = ICPTMethod(context, models[name], name=name)
        elif name == "name_only":
            runners[name] = NameOnlyMethod(context)
        elif name == "text_description":
            runners[name] = TextDescriptionMethod(context)
        elif name == "raw_references":
            runners[name] = RawReferencesMethod(context)
        else:
            runners[name] = TestTimeTrainingMethod(context, steps=ttt_steps, learning_rate=ttt_learning_rate,
                                                   num_negatives=ttt_negatives)

    scorer = Scorer()
    per_seed = {name: {"scores": [], "tokens": [], "seconds": [], "wall": 0.0, "examples": []} for name in runners}
    sweep = {name: {k: [] for k in reference_counts} for name in sweep_methods if name in runners}
    seen_episodes, counts = [], []
    for seed in seeds:
        dataset = _episodes_for_seed(episodes, seed, num_episodes)
        prepared = eval_episodes(dataset, num_references=num_references, seed=seed)
        seen_episodes.append(prepared)
        counts.append(len(prepared))
        if not prepared:
            raise ValueError(f"Seed {seed} has no episodes to evaluate: check the episode source.")
        for name, runner in list(runners.items()):
            if name == "text_description":
                missing = sum(1 for e in prepared for c in e.concepts if not c.description)
                if missing:
                    total = sum(len(e.concepts) for e in prepared)
                    rows[name].update(status="skipped", note=(
                        f"{missing} of {total} concepts in the episodes carry no description "
                        "(the `description` field of EPISODE_FEATURES)"))
                    del runners[name], per_seed[name]
                    sweep.pop(name, None)
                    continue
            start = time.perf_counter()
            predictions = _answer_all(runner, prepared, seed)
            record = per_seed[name]
            record["wall"] += time.perf_counter() - start
            record["scores"].append(scorer.score(prepared, predictions))
            record["tokens"].append(_mean(runner.prompt_tokens.values()))
            record["seconds"].append(_mean(runner.seconds.values()))
            if not record["examples"]:
                record["examples"] = [
                    {"task": e.task, "question": e.question, "answer": e.answer, "prediction": p}
                    for e, p in list(zip(prepared, predictions))[:6]
                ]
            _log(progress, f"seed {seed}: {name} answered {len(prepared)} episodes in {time.perf_counter() - start:.1f} s")
        recognition = [i for i, e in enumerate(prepared) if e.task == "recognition"]
        if sweep and recognition:
            subset = dataset.select(recognition)
            for k in reference_counts:
                capped = eval_episodes(subset, num_references=k, seed=seed)
                for name in sweep:
                    predictions = _answer_all(runners[name], capped, seed)
                    sweep[name][k].append(scorer.score(capped, predictions)["all"][SWEEP_METRIC])
            _log(progress, f"seed {seed}: reference sweep k = {list(reference_counts)} done")

    for name, record in per_seed.items():
        aggregated = aggregate_scores(record["scores"])
        rows[name].update(
            prompt_tokens_per_concept=aggregate(record["tokens"]),
            seconds_per_concept=aggregate(record["seconds"]),
            wall_seconds=record["wall"],
            results={split: aggregated[split] for split in SPLITS},
            per_concept=aggregated["per_concept"],
            examples=record["examples"],
        )
    sweep_has_data = any(values for by_count in sweep.values() for values in by_count.values())
    results = {
        "schema_version": SCHEMA_VERSION,
        "command": command,
        "backbone": _display_path(backbone),
        "data": {
            "description": data_description or getattr(episodes, "description", None) or "episode dataset",
            "num_episodes": counts,
            **_describe(seen_episodes),
            "num_references": num_references,
        },
        "seeds": list(seeds),
        "seed_varies": SEED_VARIES,
        "settings": {
            "ttt_rows": TEST_TIME_TRAINING_ROWS,
            "ttt_steps": ttt_steps,
            "ttt_learning_rate": ttt_learning_rate,
            "ttt_negatives": ttt_negatives,
            "max_new_tokens": context.max_new_tokens,
            "device": str(context.device),
        },
        "metrics": list(METRICS),
        "splits": list(SPLITS),
        "methods": rows,
        "reference_sweep": {
            "metric": SWEEP_METRIC,
            "counts": list(reference_counts),
            "methods": {name: {str(k): aggregate(values) for k, values in by_count.items()}
                        for name, by_count in sweep.items()} if sweep_has_data else {},
            "note": "" if sweep_has_data else "no reference sweep: no recognition episodes or no reference-using method",
        },
        "plots": {},
    }
    if output_dir is not None:
        write_results(results, output_dir)
    return results


def _answer_all(runner, episodes, seed: int) -> list[str]:
    runner.begin_seed(seed)
    if isinstance(runner, TestTimeTrainingMethod):
        runner.set_negative_pool(episodes)
    torch.manual_seed(seed)
    return [runner.answer(episode) for episode in episodes]


# --------------------------------------------------------------------------------------------- writing


def write_results(results: dict, output_dir: str | Path) -> Path:
    """Write the plots, `results.json` and `results.md` into `output_dir`; returns the folder."""
    from .plots import plot_accuracy_vs_prompt_tokens, plot_accuracy_vs_references

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    plot_accuracy_vs_prompt_tokens(results, output_dir / "accuracy_vs_prompt_tokens.png")
    plot_accuracy_vs_references(results, output_dir / "accuracy_vs_references.png")
    results["plots"] = {
        "accuracy_vs_prompt_tokens": "accuracy_vs_prompt_tokens.png",
        "accuracy_vs_references": "accuracy_vs_references.png",
    }
    (output_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (output_dir / "results.md").write_text(_page(results, title="ICPT evaluation", plots_prefix=""))
    return output_dir


def write_docs(results: dict, output_dir: str | Path, docs_path: str | Path) -> Path:
    """Write the results page `docs_path` (e.g. docs/results.md) from a run's output, plots copied beside it."""
    docs_path = Path(docs_path)
    plots_dir = docs_path.parent / f"{docs_path.stem}_plots"
    plots_dir.mkdir(parents=True, exist_ok=True)
    for file in results["plots"].values():
        shutil.copyfile(Path(output_dir) / file, plots_dir / file)
    docs_path.write_text(_page(results, title="ICPT results", plots_prefix=f"{plots_dir.name}/"))
    return docs_path


def _page(results: dict, title: str, plots_prefix: str) -> str:
    command = results.get("command")
    header = [f"# {title}", ""]
    if command:
        header += ["Generated by this command (do not edit by hand: rerun it):", "", "```bash", command, "```", ""]
    settings = results["settings"]
    header += [(f"Backbone: `{results['backbone']}`. Device: {settings['device']}. Test-time training: "
                f"{settings['ttt_rows']} rows, {settings['ttt_steps']} steps per concept."), ""]
    return "\n".join(header) + "\n" + render_markdown(results, plots_prefix=plots_prefix) + "\n"


# --------------------------------------------------------------------------------------------- command line


def default_preset(ablations_dir: str | Path = DEFAULT_ABLATIONS_DIR) -> tuple[Path, dict[str, Path], list[str]]:
    """The embedded default: its backbone, the projector checkpoints that exist, and how to train the missing ones.

    The projector is `icpt/default/projector` (the one `icpt ask` uses); the ablations are looked up in
    `ablations_dir/<method>`.
    """
    backbone = DEFAULT_DIR / "backbone"
    if not (backbone / "config.json").is_file():
        raise FileNotFoundError(
            f"The embedded default backbone is not at {backbone}: train it with "
            "`python examples/pretrain_world_backbone.py` (it saves there)."
        )
    paths = {"icpt": DEFAULT_DIR / "projector", **{m: Path(ablations_dir) / m for m in ABLATIONS}}
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


def _parse_checkpoint(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"--checkpoint takes METHOD=PATH (e.g. icpt=outputs/projector), got {text!r}.")
    method, path = text.split("=", 1)
    if method not in CHECKPOINT_METHODS:
        raise argparse.ArgumentTypeError(f"--checkpoint: unknown method {method!r}; choose among {CHECKPOINT_METHODS}.")
    return method, path


def _parse_methods(text: str) -> list[str]:
    if text == "all":
        return list(METHODS)
    methods = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise argparse.ArgumentTypeError(f"Unknown methods {unknown}; choose among {', '.join(METHODS)} (or 'all').")
    return methods


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="icpt eval",
        description="Evaluate ICPT, its ablations and the baselines on the same episodes and backbone; write "
        "results.json, results.md and plots.",
        epilog="Regenerate docs/results.md on the embedded default:\n"
        "  icpt eval --preset default --write-docs docs/results.md",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    models = parser.add_argument_group("models")
    models.add_argument("--preset", choices=["default"], help="the embedded default backbone and its projectors")
    models.add_argument("--ablations-dir", default=str(DEFAULT_ABLATIONS_DIR),
                        help="with --preset: where the ablation projectors are, one folder per method "
                        f"(default: {DEFAULT_ABLATIONS_DIR})")
    models.add_argument("--checkpoint", action="append", type=_parse_checkpoint, default=[], metavar="METHOD=PATH",
                        help=f"an ICPT checkpoint for one of {', '.join(CHECKPOINT_METHODS)} (repeatable; "
                        "overrides the preset's)")
    models.add_argument("--backbone", help="the frozen backbone (default: the one the checkpoints name)")
    models.add_argument("--methods", type=_parse_methods, default=list(METHODS),
                        help="comma-separated methods, or 'all' (default: all)")
    data = parser.add_argument_group("data (default: the generated world's held-out episodes)")
    data.add_argument("--episodes", help="an episode dataset folder written by Dataset.save_to_disk")
    data.add_argument("--benchmark", choices=["yollava", "myvlm", "mc_llava"], help="a public benchmark's layout")
    data.add_argument("--benchmark-root", help="the local copy of --benchmark")
    data.add_argument("--world-seed", type=int, default=DEFAULT_WORLD_SEED,
                      help=f"seed of the generated world (default: {DEFAULT_WORLD_SEED}, the default backbone's)")
    data.add_argument("--world-identities", type=int, default=DEFAULT_WORLD_IDENTITIES,
                      help=f"identities of the generated world (default: {DEFAULT_WORLD_IDENTITIES}, the default backbone's)")
    data.add_argument("--num-episodes", type=int, default=None,
                      help=f"episodes per seed (world default: {DEFAULT_NUM_EPISODES}; datasets: all)")
    data.add_argument("--num-references", type=int, default=None, help="at most this many references per concept (default: all)")
    run = parser.add_argument_group("run")
    run.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="(default: 0 1 2; 3+ for an interval)")
    run.add_argument("--reference-counts", type=int, nargs="*", default=[1, 2, 3, 4, 5],
                     help="k of the reference sweep (default: 1 2 3 4 5; none: no sweep)")
    run.add_argument("--sweep-methods", type=_parse_methods, default=None,
                     help=f"methods of the reference sweep (default: {', '.join(REFERENCE_METHODS)})")
    run.add_argument("--ttt-steps", type=int, default=TEST_TIME_TRAINING_STEPS,
                     help=f"test-time-training steps per concept (default: {TEST_TIME_TRAINING_STEPS})")
    run.add_argument("--ttt-learning-rate", type=float, default=TEST_TIME_TRAINING_LEARNING_RATE,
                     help="Adam step relative to the size of an embedding entry "
                     f"(default: {TEST_TIME_TRAINING_LEARNING_RATE})")
    run.add_argument("--ttt-negatives", type=int, default=8, help="negative photos per concept (default: 8)")
    run.add_argument("--max-new-tokens", type=int, default=None,
                     help="at most this many new tokens for any task (default: per task, enough for its answers)")
    run.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda when available)")
    run.add_argument("--threads", type=int, default=None, help="CPU threads for torch (on a shared machine, 1 avoids spinning threads)")
    out = parser.add_argument_group("output")
    out.add_argument("--output-dir", default="outputs/eval", help="(default: outputs/eval)")
    out.add_argument("--write-docs", metavar="PATH", help="also write the results page here (e.g. docs/results.md)")
    out.add_argument("--quiet", action="store_true", help="no progress lines")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """`icpt eval`: parse the arguments, run the evaluation, write the outputs; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    checkpoints = dict(args.checkpoint)
    backbone = args.backbone
    notes = []
    if args.preset == "default":
        preset_backbone, preset_checkpoints, missing = default_preset(args.ablations_dir)
        backbone = backbone or str(preset_backbone)
        checkpoints = {**{m: str(p) for m, p in preset_checkpoints.items()}, **checkpoints}
        notes = missing
    if args.benchmark and not args.benchmark_root:
        raise ValueError(f"--benchmark {args.benchmark} needs --benchmark-root DIR (the local copy of the benchmark).")
    if args.episodes and args.benchmark:
        raise ValueError("Pass --episodes or --benchmark, not both.")

    num_episodes = args.num_episodes
    if args.episodes:
        from datasets import load_from_disk

        if not Path(args.episodes).is_dir():
            raise FileNotFoundError(f"No episode dataset at {args.episodes}: write one with Dataset.save_to_disk.")
        episodes, description = load_from_disk(args.episodes), f"episodes from {args.episodes}"
    elif args.benchmark:
        from . import benchmarks

        loader = {"yollava": benchmarks.load_yollava, "myvlm": benchmarks.load_myvlm,
                  "mc_llava": benchmarks.load_mc_llava}[args.benchmark]
        episodes, description = loader(args.benchmark_root), f"{args.benchmark} from {args.benchmark_root}"
    else:
        episodes = world_episodes(args.world_seed, args.world_identities, args.num_episodes or DEFAULT_NUM_EPISODES)
        description, num_episodes = episodes.description, None

    results = run_evaluation(
        episodes,
        checkpoints=checkpoints,
        backbone=backbone,
        methods=args.methods,
        seeds=args.seeds,
        num_episodes=num_episodes,
        num_references=args.num_references,
        reference_counts=args.reference_counts,
        sweep_methods=args.sweep_methods,
        ttt_steps=args.ttt_steps,
        ttt_learning_rate=args.ttt_learning_rate,
        ttt_negatives=args.ttt_negatives,
        max_new_tokens=(None if args.max_new_tokens is None
                        else {task: min(n, args.max_new_tokens) for task, n in DEFAULT_MAX_NEW_TOKENS.items()}),
        device=args.device,
        output_dir=args.output_dir,
        data_description=description,
        command=" ".join(["icpt eval", *map(shlex.quote, argv)]),
        progress=not args.quiet,
    )
    if args.write_docs:
        write_docs(results, args.output_dir, args.write_docs)
    for note in notes:
        print(f"note: a projector of the preset is missing; train it with: {note}", file=sys.stderr)
    print(render_markdown(results))
    print(f"\nWrote {Path(args.output_dir) / 'results.json'}, results.md and plots"
          + (f"; and {args.write_docs}" if args.write_docs else "") + ".")
    return 0


if __name__ == "__main__":
    sys.exit(main())
