"""The evaluation harness (the library of `icpt eval`): ICPT, its ablations and the baselines, on the same questions and backbone.

This module runs one evaluation (`run_evaluation`: prepare, answer, score). Beside it: `episodes.py` (the
questions), `checkpoints.py` (the method names, the checkpoints and the default preset), `methods.py` (how each
method answers), `scoring.py`, `claims.py` (the claims and their verdicts), `report.py` (`results.json`,
`outcomes.jsonl`, the Markdown page) and `plots.py`.

One run loads one frozen backbone, wraps it with every ICPT checkpoint it is given (`icpt` and the ablations
`icpt_frozen_reader`, `icpt_fixed_length` or `icpt_adaptive_length`, `icpt_no_decoupling` or `icpt_with_decoupling`,
`icpt_no_separation` or `icpt_with_separation`, `icpt_no_identity_targets`, trained by `examples/train_icpt.py` with
that part switched off -- or, for a part the method is shipped without, on; a checkpoint with a reader adapter gets a backbone
of its own, since the adapter changes the backbone it is added to), and has every method of `METHODS` answer the
same questions:

| method | what the backbone sees for each concept a question names | its prompt tokens per concept |
|---|---|---|
| `icpt`, `icpt_*` | its label and the projector's rows | the bank's length |
| `name_only` | its label, in the question only | the label's text tokens |
| `text_description` | "<bo> is <description>." (skipped when episodes carry no description) | the description's tokens |
| `raw_references` | "<bo> is <photo><photo>." -- the ceiling, and its cost | the image tokens of its photos |
| `raw_references_plain_noun` | "the object is <photo><photo>.", the question asked about "the object" | the same |
| `test_time_training` | its label and 16 rows trained per concept (Yo'LLaVA-style), on a stated subsample | 16 |
| `name_only_adapted`, `raw_references_adapted` | as `name_only`, `raw_references`, through `icpt`'s reader adapter (when it has one) | the same |

Every method asks as users do: a question's prompt holds only the concepts the question names.

**How a run goes.**

1. The ceiling methods (`CEILING_METHODS`: the photos in context) answer every question. A task is
   *measurable on this backbone* when the best ceiling's 95 % interval lies at least `CEILING_MARGIN` above
   the task's chance level; the other tasks are reported as such (their ceiling, no column of zeros), and no
   other method is run on them.
2. Every other method answers every question of the measurable tasks (test-time training a random subsample
   of `ttt_questions`, it costs seconds per concept).
3. A question that offers options (two-option VQA and text QA) is answered with the option the method's model
   finds most likely (`BackboneContext.respond`, the answer ranking of SEED-Bench), every other question with
   the model's greedy generation. Each answer is scored by its task's rule
   (`icpt.evaluation.scoring.question_score`) and written as one line of `outcomes.jsonl` (episode, question
   id, task, splits, method, prediction, score, prompt tokens), so
   every number of the report can be recomputed from that file.
4. Cells are mean [95 % interval] from a bootstrap over episodes (one question per episode;
   `icpt.metrics.statistics`); each method's row carries its paired difference to `icpt` on the same
   questions, with interval and a paired permutation test's p-value. The splits (environment shift,
   look-alikes, multi-concept scenes) are subsets of the same questions.
5. Generic questions that name no concept (the backbone's own "Describe the object." questions, scored by
   word F1) are answered by the ceiling and by `icpt`: through a reader adapter they show what the adapter
   costs the answers it was not trained for (`adapter_cost`: icpt − raw_references on them, and
   raw_references_adapted − raw_references on recognition; `ADAPTER_COST_MARGIN`).
6. The **swap test** asks a subsample of positive recognition questions again with the named concept's photos
   replaced by another held-out identity's, under the same label: a method whose prompt carries the identity
   changes its answer on most of them (`SWAP_TARGET`). results.json keeps each question's two answers, the
   description of the identity it asks about and of the one whose photos stood behind the label
   (`swap_test.methods.<method>.answers`; `examples/swap_by_similarity.py` reads them).

**Sources of variance.** The intervals cover the draw of episodes (questions, references, photos). Each
ICPT checkpoint is one training run (seed 0): the variance between training seeds is a separate source,
not measured by this harness (retrain with other `--seed`s and compare). Decoding is greedy.

A **reference sweep** reruns `icpt` and `raw_references` on a subsample of recognition questions with at
most k references per concept. Everything lands in an output folder: `results.json` (schema below),
`outcomes.jsonl`, `results.md` and the plots `accuracy_vs_prompt_tokens.png`, `accuracy_vs_references.png`.

**Regenerating `docs/results.md`** on the embedded default (backbone `icpt/default/backbone`, projector
`icpt/default/projector`, the ablation projectors in `icpt/default/ablations/<method>`; no number typed by
hand; 17 minutes measured (17:12 wall) on a shared 2-core CPU with one thread, with a progress bar and an ETA that
is right once the ceiling phase is done; `--threads 1` because two spinning threads on a shared 2-core
machine ran several times slower):

```bash
icpt eval --preset default --threads 1 --output-dir outputs/eval --write-docs docs/results.md
# the same without the console script:
python -m icpt eval --preset default --threads 1 --output-dir outputs/eval --write-docs docs/results.md
```

The ablation projectors are trained like the default one, by the same command (scripts/train_default.sh: a
frozen-reader stage, then the reader adapter), on the default backbone's world, with one part changed. The shipped
projector gives every concept 8 rows (`min_prompt_length = max_prompt_length = 8`), so it has no fixed-length
ablation (it is one); its length ablation is `icpt_adaptive_length`, the same recipe with 2..8 rows chosen by visual
complexity. Likewise it is trained without L_dec and L_sep, so their rows are `icpt_with_decoupling` and
`icpt_with_separation` (`checkpoints.inapplicable_ablations` picks one of each pair).

Other data: `--episodes DIR` (a `Dataset.save_to_disk` folder with `EPISODE_FEATURES`), or
`--benchmark yollava|myvlm|mc_llava|rap --benchmark-root DIR` (a local copy of the benchmark, see
`icpt.data.benchmarks`); by default the generated world's held-out episodes (`world_episodes`).

`results.json`: `schema_version`, `command`, `backbone`, `data` (`description`, `num_episodes`, `tasks`,
`tags`), `seeds`, `variance`, `settings`, `metrics`, `splits`, `reference_method`, `ceiling`
(`{task: {chance, method, value, measurable}}`), `split_ceiling`, `methods` (per method: `status`, `note`,
`checkpoint`, `num_questions`, `prompt_tokens_per_concept`, `seconds_per_concept` (`{mean, min, max, n}`),
`wall_seconds`, `results` `{split: {metric: estimate}}`, `difference` `{split: {metric: paired difference}}`,
`agreement_with_reference`, `row_difference`, `weight_difference`, `examples`), `claims`, `reference_sweep`, `outcomes` (the
JSON-lines file) and `plots`. An estimate is `{"mean", "low", "high", "n"}` (plus `n_positive`,
`n_negative` for the weighted recognition); a paired difference `{"difference", "low", "high", "p_value",
"n", "discordant", "verdict"}`.

Example:

```python
>>> from icpt.evaluation.harness import run_evaluation
>>> results = run_evaluation(
...     episodes,  # a Dataset, or a function seed -> Dataset
...     checkpoints={"icpt": "outputs/projector", "icpt_no_separation": "outputs/projector-no-sep"},
...     output_dir="outputs/eval",
... )  # doctest: +SKIP
>>> results["methods"]["icpt"]["results"]["all"]["recognition_weighted"]["mean"]  # doctest: +SKIP
0.79
```"""

from __future__ import annotations

import logging
import sys
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from icpt.metrics.recognition.recognition import read_yes_no
from icpt.metrics.statistics import CONFIDENCE, N_RESAMPLES, estimate
from icpt.training.prompt_fitting import (
    TEST_TIME_TRAINING_LEARNING_RATE,
    TEST_TIME_TRAINING_ROWS,
    TEST_TIME_TRAINING_STEPS,
)

from .checkpoints import (
    ABLATIONS,
    ADAPTED_BASELINES,
    CHECKPOINT_METHODS,
    METHODS,
    RETRIEVAL_METHODS,
    display_path,
    load_models,
)
from .claims import MATCH_MARGIN, claims
from .episodes import question_id
from .methods import (
    DEFAULT_MAX_NEW_TOKENS,
    BackboneContext,
    ICPTMethod,
    ICPTRetrievalMethod,
    NameOnlyMethod,
    RawReferencesMethod,
    TestTimeTrainingMethod,
    TextDescriptionMethod,
    eval_episodes,
    image_key,
    subsample_references,
)
from .report import write_results
from .scoring import (
    CHANCE,
    METRICS,
    SPLITS,
    TASK_METRIC,
    canonical_prediction,
    cell,
    cells,
    differences,
    guess_floor,
    is_positive,
    question_score,
)

logger = logging.getLogger(__name__)
SCHEMA_VERSION = 2
RETRIEVAL_TOP_K = 2
# The photos in context: what decides whether a task is measurable on the backbone at all.
CEILING_METHODS = ("raw_references", "raw_references_plain_noun")
# Every other method's row carries its paired difference to this one.
REFERENCE_METHOD = "icpt"
# Methods that read reference photos: the ones the reference sweep can vary.
REFERENCE_METHODS = CHECKPOINT_METHODS + ("raw_references",)
DEFAULT_SWEEP_METHODS = ("icpt", "raw_references")
# A task is measurable when the best ceiling's interval lies this far above chance.
CEILING_MARGIN = 0.10
VARIANCE = (
    "intervals: bootstrap over episodes (which questions, references and photos were drawn); each ICPT "
    "checkpoint is one training run (seed 0), so the variance between training seeds is not in them; "
    "decoding is greedy"
)
# Besides the ceiling, the methods that answer them: the others ask the same frozen language model the same question.
GENERIC_METHODS = ("icpt",)
DEFAULT_TTT_QUESTIONS = 120
DEFAULT_SWEEP_QUESTIONS = 240
# The swap test: positive recognition questions asked again with the concept's photos replaced by another
# identity's (same label); a method whose rows carry the identity changes its answer on most of them.
DEFAULT_SWAP_QUESTIONS = 200
DEFAULT_SWAP_METHODS = ("icpt", "raw_references")
SWAP_TARGET = 0.80
# What a reader adapter may cost the answers it was not trained for (paired, weighted recognition / word F1).
ADAPTER_COST_MARGIN = 0.01
DEFAULT_REFERENCE_COUNTS = (1, 3, 5)
SWEEP_METRIC = "recognition_weighted"


def _episodes_for_seed(source, seed: int, num_episodes: int | None):
    dataset = source(seed) if callable(source) else source
    if num_episodes is not None and num_episodes < len(dataset):
        dataset = dataset.shuffle(seed=seed).select(range(num_episodes))
    return dataset


def _log(progress: bool, message: str) -> None:
    if progress:
        logger.info(message)


def _spread(values) -> dict:
    """`{"mean", "min", "max", "n"}` of per-concept counts or costs."""
    values = [float(v) for v in values]
    if not values:
        return {"mean": None, "min": None, "max": None, "n": 0}
    return {"mean": sum(values) / len(values), "min": min(values), "max": max(values), "n": len(values)}


def _describe(episodes: list) -> dict:
    tasks, tags = Counter(), Counter()
    for episode in episodes:
        tasks[episode.task] += 1
        tags.update(episode.tags)
    return {"tasks": dict(sorted(tasks.items())), "tags": dict(sorted(tags.items()))}


def _build_runner(name, context, models, ttt_steps, ttt_learning_rate, ttt_negatives):
    if name in ADAPTED_BASELINES:  # the same baseline, through icpt's language model with its reader adapter
        adapted = BackboneContext(models["icpt"].vlm, context.processor, models["icpt"], context.max_new_tokens)
        runner = _build_runner(ADAPTED_BASELINES[name], adapted, models, ttt_steps, ttt_learning_rate, ttt_negatives)
        runner.name = name
        return runner
    if name in CHECKPOINT_METHODS:
        return ICPTMethod(context, models[name], name=name)
    if name == "icpt_retrieval":
        return ICPTRetrievalMethod(context, models["icpt"], top_k=RETRIEVAL_TOP_K)
    if name == "name_only":
        return NameOnlyMethod(context)
    if name == "text_description":
        return TextDescriptionMethod(context)
    if name == "raw_references":
        return RawReferencesMethod(context)
    if name == "raw_references_plain_noun":
        return RawReferencesMethod(context, plain_noun=True)
    return TestTimeTrainingMethod(context, steps=ttt_steps, learning_rate=ttt_learning_rate, num_negatives=ttt_negatives)


def _answer(runner, episodes: list, ids: list[str], seed: int, bar) -> list[dict]:
    """The runner's outcomes on `episodes` (one dict per question, the lines of outcomes.jsonl)."""
    runner.begin_seed(seed)
    if isinstance(runner, TestTimeTrainingMethod):
        runner.set_negative_pool(episodes)
    if isinstance(runner, ICPTRetrievalMethod):
        runner.set_concept_pool(episodes)
    torch.manual_seed(seed)
    outcomes = []
    for episode, (episode_id, qid) in zip(episodes, ids):
        prediction = runner.answer(episode)
        outcomes.append({
            "episode": episode_id, "question_id": qid, "task": episode.task,
            "splits": [tag for tag in episode.tags if tag in SPLITS], "method": runner.name,
            "question": episode.question, "answer": episode.answer, "prediction": prediction,
            "score": question_score(episode, prediction), "positive": is_positive(episode),
            "prompt_tokens": runner.question_tokens(episode),
        })
        if outcomes[-1]["score"] is not None and episode.task != "caption":
            outcomes[-1]["correct"] = outcomes[-1]["score"] == 1.0
        bar.update(1)
    return outcomes


def _ceiling(outcomes_by_method: dict, task: str, chance: float, split: str = "all",
             margin: float = CEILING_MARGIN) -> dict:
    """The best ceiling method's estimate of a task's metric on a split, and whether it is measurable: its interval
    at least `margin` above `chance` (`guess_floor`)."""
    metric = TASK_METRIC[task]
    best_name, best = None, None
    for name, outcomes in outcomes_by_method.items():
        value = cell(outcomes, split, metric)
        if value["mean"] is not None and (best is None or value["mean"] > best["mean"]):
            best_name, best = name, value
    if best is None:
        return {"chance": chance, "method": None, "value": {"mean": None, "low": None, "high": None, "n": 0},
                "measurable": False}
    low = best["low"] if best["low"] is not None else best["mean"]  # too few questions for an interval
    return {"chance": chance, "method": best_name, "value": best,
            "measurable": bool(chance is not None and low >= chance + margin)}


def _agreement(episodes_by_id: dict, outcomes: list[dict], reference: list[dict]) -> dict | None:
    """How often a method's answer, read by its task's rule, equals the reference method's."""
    by_id = {o["question_id"]: o for o in reference}
    common = [o for o in outcomes if o["question_id"] in by_id]
    if not common:
        return None
    same = sum(canonical_prediction(episodes_by_id[o["question_id"]], o["prediction"])
               == canonical_prediction(episodes_by_id[o["question_id"]], by_id[o["question_id"]]["prediction"])
               for o in common)
    return {"same": same, "n": len(common), "share": same / len(common)}


def _row_difference(added: dict, reference: dict) -> float | None:
    """The largest relative difference between two ICPT methods' prompt rows for the same concepts
    (`added`: what each method made of each concept key)."""
    common = [key for key in added if key in reference and hasattr(added[key], "prompts")
              and hasattr(reference[key], "prompts")]
    if not common:
        return None
    worst = 0.0
    for key in common:
        rows, reference_rows = added[key].prompts, reference[key].prompts
        if rows.shape != reference_rows.shape:
            return 1.0
        worst = max(worst, float((rows - reference_rows).norm() / reference_rows.norm().clamp_min(1e-12)))
    return worst


def swap_references(episodes: list, pool: list, seed: int) -> list:
    """`episodes` with each named concept's references replaced by another identity's, under the same label.

    The other identity is drawn (with `seed`) from the concepts of `pool` whose description differs from the
    concept's own (the world's description names the identity; look-alikes differ in one detail).
    """
    rng = np.random.default_rng([seed, 17])
    candidates = list({c.key: c for episode in pool for c in episode.concepts if c.description}.values())
    swapped = []
    for episode in episodes:
        concepts = []
        for concept in episode.concepts:
            if concept in episode.named_concepts:
                others = [c for c in candidates if c.description != concept.description]
                if not others:
                    raise ValueError("The swap test needs concepts of at least two identities (descriptions).")
                other = others[int(rng.integers(len(others)))]
                concept = type(concept)(concept.name, f"{concept.name}|swap|{other.key}", other.reference_values,
                                        other.description)
            concepts.append(concept)
        swapped.append(type(episode)(**{**episode.__dict__, "concepts": concepts}))
    return swapped


def _is_yes_answer(prediction: str) -> bool:
    return read_yes_no(prediction) == "yes"


def _adapter_cost(outcomes: dict, seed: int) -> dict:
    """What `icpt`'s reader adapter costs the answers it was not trained for, as paired differences: generic
    questions without concepts (icpt − raw_references: the same question through the adapted and the frozen
    language model) and raw photos in context (raw_references_adapted − raw_references)."""
    cost = {}
    if "icpt" in outcomes and "raw_references" in outcomes:
        diff = differences(outcomes["icpt"], outcomes["raw_references"], metrics=("generic_f1",), seed=seed)
        cost["generic_f1"] = diff["all"]["generic_f1"]
    if "raw_references_adapted" in outcomes and "raw_references" in outcomes:
        diff = differences(outcomes["raw_references_adapted"], outcomes["raw_references"],
                           metrics=("recognition_weighted",), seed=seed)
        cost["raw_references_recognition"] = diff["all"]["recognition_weighted"]
    return {"margin": ADAPTER_COST_MARGIN, **{k: v for k, v in cost.items() if v and v["difference"] is not None}}


def _weight_difference(model, reference) -> float | None:
    """Relative L2 distance between two ICPT checkpoints' trained weights (projector and any adapter):
    ||w - w_ref|| / ||w_ref|| over the parameters outside the shared backbone."""
    own = {k: v for k, v in model.state_dict().items() if not k.startswith("vlm.")}
    other = {k: v for k, v in reference.state_dict().items() if not k.startswith("vlm.")}
    if own.keys() != other.keys() or not own:
        return None
    distance = sum(float((own[k].float() - other[k].float()).pow(2).sum()) for k in own) ** 0.5
    norm = sum(float(other[k].float().pow(2).sum()) for k in own) ** 0.5
    return distance / max(norm, 1e-12)


def run_evaluation(
    episodes,
    checkpoints: Mapping[str, str] | None = None,
    backbone: str | None = None,
    methods: Sequence[str] | None = None,
    seeds: Sequence[int] = (0,),
    num_episodes: int | None = None,
    num_references: int | None = None,
    reference_counts: Sequence[int] = DEFAULT_REFERENCE_COUNTS,
    sweep_methods: Sequence[str] | None = None,
    sweep_questions: int = DEFAULT_SWEEP_QUESTIONS,
    swap_methods: Sequence[str] | None = None,
    swap_questions: int = DEFAULT_SWAP_QUESTIONS,
    ttt_questions: int | None = DEFAULT_TTT_QUESTIONS,
    ttt_steps: int = TEST_TIME_TRAINING_STEPS,
    ttt_learning_rate: float = TEST_TIME_TRAINING_LEARNING_RATE,
    ttt_negatives: int = 8,
    ceiling_margin: float = CEILING_MARGIN,
    max_new_tokens: Mapping[str, int] | None = None,
    device: str | None = None,
    output_dir: str | Path | None = None,
    data_description: str | None = None,
    command: str | None = None,
    progress: bool = True,
) -> dict:
    """Run `methods` on the same questions and backbone; return (and with `output_dir`, write) the results.

    Args:
        episodes: a `datasets.Dataset` with `EPISODE_FEATURES`, or a function `seed -> Dataset` (e.g. `world_episodes()`).
        checkpoints: `{method: checkpoint folder}` for the methods of `CHECKPOINT_METHODS`; a chosen checkpoint
            method without a checkpoint is reported as skipped.
        backbone: the frozen backbone (default: the one the first checkpoint names).
        methods: which of `METHODS` to run (default: all).
        seeds: episode draws; their questions are pooled (each draw's episodes are fresh for a function,
            a shuffle of a dataset otherwise).
        num_episodes: episodes per seed (default: all of a dataset; a function decides itself).
        num_references: at most this many references per concept, drawn with the seed (default: all).
        reference_counts: the k of the reference sweep (empty: no sweep).
        sweep_methods: methods of the sweep (default: `icpt` and `raw_references`, those that run).
        sweep_questions: recognition questions of the sweep (a random subsample).
        swap_methods: methods of the swap test (default: `icpt` and `raw_references`, those that run).
        swap_questions: positive recognition questions of the swap test (a random subsample; 0: no test).
        ttt_questions: questions test-time training answers (a random subsample; None: all).
        ttt_steps, ttt_learning_rate, ttt_negatives: the test-time-training budget per concept (see
            `train_concept_prompts`; the learning rate is relative to the size of an embedding entry).
        ceiling_margin: a task is measurable when the best ceiling's interval lies this far above chance.
        max_new_tokens: per-task overrides of `DEFAULT_MAX_NEW_TOKENS`.
        device: "cpu", "cuda", ... (default: cuda when available).
        output_dir: where to write results.json, outcomes.jsonl, results.md and the plots.
        data_description: one line on the data for the tables.
        command: the command line that produced the run (recorded in results.json and the markdown).
        progress: a progress bar with an ETA, and a line per method, on stderr.
    """
    started = time.perf_counter()
    checkpoints = {k: str(v) for k, v in (checkpoints or {}).items()}
    methods = list(METHODS if methods is None else methods)
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise ValueError(f"Unknown methods {unknown}: choose among {', '.join(METHODS)}.")
    if not seeds:
        raise ValueError("Give at least one seed (an episode draw).")
    sweep_methods = [m for m in (sweep_methods if sweep_methods is not None else DEFAULT_SWEEP_METHODS) if m in methods]
    bad_sweep = [m for m in sweep_methods if m not in REFERENCE_METHODS]
    if bad_sweep:
        raise ValueError(f"The reference sweep varies references: {bad_sweep} read none (choose among {REFERENCE_METHODS}).")
    swap_methods = [m for m in (swap_methods if swap_methods is not None else DEFAULT_SWAP_METHODS) if m in methods]
    bad_swap = [m for m in swap_methods if m not in REFERENCE_METHODS]
    if bad_swap:
        raise ValueError(f"The swap test replaces references: {bad_swap} read none (choose among {REFERENCE_METHODS}).")
    context, models, checkpoint_notes = load_models(
        {m: p for m, p in checkpoints.items() if m in methods}, backbone=backbone, device=device
    )
    context.max_new_tokens = {**DEFAULT_MAX_NEW_TOKENS, **(max_new_tokens or {})}
    backbone = backbone or context.vlm.config.name_or_path

    # the questions: every seed's draw, pooled
    prepared, ids, counts = [], [], []
    for seed in seeds:
        dataset = _episodes_for_seed(episodes, seed, num_episodes)
        draw = eval_episodes(dataset, num_references=num_references, seed=seed)
        if not draw:
            raise ValueError(f"Seed {seed} has no episodes to evaluate: check the episode source.")
        prepared += draw
        ids += [(f"s{seed}-{index:05d}", question_id(episode)) for index, episode in enumerate(draw)]
        counts.append(len(draw))
    episodes_by_id = {qid: episode for episode, (_, qid) in zip(prepared, ids)}
    seed = seeds[0]

    rows, runners = {}, {}
    for name in methods:
        rows[name] = {"status": "ok", "note": checkpoint_notes.get(name, ""), "checkpoint": checkpoints.get(name)}
        if name in CHECKPOINT_METHODS and name not in models:
            flag = ABLATIONS[name][2] if name in ABLATIONS else ""
            rows[name].update(status="skipped", note=(
                f"no checkpoint given: train one with examples/train_icpt.py {flag}".rstrip()
                + f" and pass it with --checkpoint {name}=PATH"))
            continue
        if name in RETRIEVAL_METHODS and "icpt" not in models:
            rows[name].update(status="skipped", note="retrieval asks through icpt: give an icpt checkpoint")
            continue
        if name in ADAPTED_BASELINES and not ("icpt" in models and models["icpt"].config.reader_lora_rank):
            rows[name].update(status="skipped", note="icpt has no reader adapter: this baseline equals "
                                                     f"{ADAPTED_BASELINES[name]}")
            continue
        if name == "text_description":
            missing = sum(1 for e in prepared for c in e.named_concepts if not c.description)
            if missing:
                total = sum(len(e.named_concepts) for e in prepared)
                rows[name].update(status="skipped", note=(
                    f"{missing} of {total} named concepts in the episodes carry no description "
                    "(the `description` field of EPISODE_FEATURES)"))
                continue
        if name in models:
            rows[name]["reader_lora_rank"] = models[name].config.reader_lora_rank
        runners[name] = _build_runner(name, context, models, ttt_steps, ttt_learning_rate, ttt_negatives)
    ceiling_names = [name for name in CEILING_METHODS if name in runners]
    other_names = [name for name in runners if name not in ceiling_names]

    bar = tqdm(total=len(prepared) * len(runners), desc="icpt eval", unit="answer", disable=not progress,
               dynamic_ncols=True, file=sys.stderr)
    outcomes, wall, added = {}, {}, {}

    def run(name, chosen):
        begin = time.perf_counter()
        outcomes[name] = _answer(runners[name], [prepared[i] for i in chosen], [ids[i] for i in chosen], seed, bar)
        wall[name] = time.perf_counter() - begin
        # what the method made of each concept on the main questions (the swap test and the sweep add others)
        runner = runners[name]
        added[name] = (dict(runner.prompt_tokens), dict(runner.seconds), dict(runner._added))
        _log(progress, f"{name} answered {len(chosen)} questions in {wall[name]:.0f} s")

    # 1. the ceiling on every question, which decides the measurable tasks
    for name in ceiling_names:
        run(name, range(len(prepared)))
    tasks = list(dict.fromkeys(episode.task for episode in prepared))
    ceiling_outcomes = {name: outcomes[name] for name in ceiling_names}
    if ceiling_names:
        ceiling = {task: _ceiling(ceiling_outcomes, task, guess_floor(prepared, task), margin=ceiling_margin)
                   for task in tasks}
    else:  # nothing to tell measurable tasks from the others: every task is run and reported
        logger.warning(
            "No ceiling method (%s) among the methods: every task counts as measurable, so tasks a ceiling would "
            "leave out are asked too and test-time training's subsample is drawn from all of them, unlike in a run "
            "with one; to pair the two, add %s.",
            ", ".join(CEILING_METHODS), " and ".join(CEILING_METHODS))
        ceiling = {task: {"chance": guess_floor(prepared, task), "method": None, "measurable": True,
                          "value": {"mean": None, "low": None, "high": None, "n": 0}} for task in tasks}
    measurable = [i for i, episode in enumerate(prepared) if ceiling[episode.task]["measurable"]]
    _log(progress, "measurable on this backbone: " + (", ".join(t for t in tasks if ceiling[t]["measurable"]) or "none"))

    # 2. every other method on the measurable questions (test-time training on a subsample)
    # each subsample draws from its own stream, so the questions one of them asks do not depend on which of the
    # others run: a run without test-time training or the sweep asks the results page's swap questions
    ttt_rng, sweep_rng, swap_rng = (np.random.default_rng([seed, stream]) for stream in (1, 2, 3))
    plans = {}
    for name in other_names:
        # generic questions name no concept: every method without a reader adapter answers them as the ceiling did
        chosen = [i for i in measurable if prepared[i].task != "generic" or name in GENERIC_METHODS]
        if name == "test_time_training" and ttt_questions is not None and ttt_questions < len(chosen):
            chosen = sorted(int(i) for i in ttt_rng.choice(chosen, size=ttt_questions, replace=False))
        plans[name] = chosen
    recognition = [i for i in measurable if prepared[i].task == "recognition"]
    sweep_chosen = (sorted(int(i) for i in sweep_rng.choice(recognition, replace=False,
                                                            size=min(sweep_questions, len(recognition))))
                    if recognition else [])
    sweep_names = [name for name in sweep_methods if name in runners] if reference_counts and sweep_chosen else []
    positives = [i for i in recognition if is_positive(prepared[i])]
    swap_chosen = (sorted(int(i) for i in swap_rng.choice(positives, replace=False,
                                                          size=min(swap_questions, len(positives))))
                   if positives and swap_questions > 0 else [])
    swap_names = [name for name in swap_methods if name in runners] if swap_chosen else []
    bar.total = (len(prepared) * len(ceiling_names) + sum(len(chosen) for chosen in plans.values())
                 + len(sweep_chosen) * len(reference_counts) * len(sweep_names) + len(swap_chosen) * len(swap_names))
    bar.refresh()
    for name in other_names:
        run(name, plans[name])

    # 3. the swap test: positives asked again with each named concept's photos replaced by another identity's
    swap = {}
    if swap_names:
        swapped = swap_references([prepared[i] for i in swap_chosen], prepared, seed)
        for name in swap_names:
            before = {o["question_id"]: o for o in outcomes[name]}
            answered = _answer(runners[name], swapped, [ids[i] for i in swap_chosen], seed, bar)
            pairs, identities = [], []
            for index, after, episode in zip(swap_chosen, answered, swapped):
                if ids[index][1] in before:
                    pairs.append((before[ids[index][1]], after))
                    identities.append(([c.description for c in prepared[index].named_concepts],
                                        [c.description for c in episode.named_concepts]))
            changed = [float(read_yes_no(a["prediction"]) != read_yes_no(b["prediction"])) for b, a in pairs]
            swap[name] = {"changed": estimate(changed, seed=seed),
                          "yes_before": estimate([float(_is_yes_answer(b["prediction"])) for b, _ in pairs], seed=seed),
                          "yes_after": estimate([float(_is_yes_answer(a["prediction"])) for _, a in pairs], seed=seed),
                          # each question's answers, whom it asks about and whose photos stood behind the label
                          "answers": [{"question_id": b["question_id"], "before": b["prediction"],
                                       "after": a["prediction"], "asks_about": asked, "photos_of": swapped_in}
                                      for (b, a), (asked, swapped_in) in zip(pairs, identities)]}
        _log(progress, f"swap test on {len(swap_chosen)} positives done")

    # 4. the reference sweep, on a subsample of the measurable recognition questions
    sweep = {name: {} for name in sweep_names}
    if sweep_names:
        subset = [prepared[i] for i in sweep_chosen]
        for k in reference_counts:
            capped = []
            for episode in subset:  # the same questions, each concept keeping at most k references
                concepts = [type(c)(c.name, _capped_key(c, k, seed), _capped(c, k, seed), c.description)
                            for c in episode.concepts]
                capped.append(type(episode)(**{**episode.__dict__, "concepts": concepts}))
            for name in sweep_names:
                answered = _answer(runners[name], capped, [ids[i] for i in sweep_chosen], seed, bar)
                positive = [o["positive"] for o in answered]
                sweep[name][str(k)] = estimate([o["score"] for o in answered], positive=positive, seed=seed)
        _log(progress, f"reference sweep k = {list(reference_counts)} done")
    bar.close()

    # 5. cells, differences, agreement
    reference = outcomes.get(REFERENCE_METHOD)
    headline = [TASK_METRIC[task] for task in tasks if ceiling[task]["measurable"]]
    for name, runner in runners.items():
        own = outcomes[name]
        rows[name].update(
            num_questions=len(own),
            prompt_tokens_per_concept=_spread(added[name][0].values()),
            seconds_per_concept=_spread(added[name][1].values()),
            wall_seconds=wall[name],
            results=cells(own, seed=seed),
            difference=(differences(own, reference, metrics=headline, seed=seed)
                        if reference is not None and name != REFERENCE_METHOD else {}),
            agreement_with_reference=(_agreement(episodes_by_id, own, reference)
                                      if reference is not None and name != REFERENCE_METHOD else None),
            row_difference=(_row_difference(added[name][2], added[REFERENCE_METHOD][2])
                            if REFERENCE_METHOD in runners and name != REFERENCE_METHOD else None),
            weight_difference=(_weight_difference(models[name], models[REFERENCE_METHOD])
                               if name in models and REFERENCE_METHOD in models and name != REFERENCE_METHOD else None),
            examples=[{k: o[k] for k in ("task", "question", "answer", "prediction", "score")} for o in own[:6]],
        )
        eligible = sum(1 for i in measurable if prepared[i].task != "generic")  # it answers no generic question
        if name == "test_time_training" and len(own) < eligible:
            note = (f"a random subsample of {len(own)} of the {eligible} questions ({ttt_steps} steps per "
                    "concept); its Δ is on that subsample")
            rows[name]["note"] = "; ".join(filter(None, [rows[name]["note"], note]))
        if isinstance(runner, ICPTRetrievalMethod) and runner.retrieval_hits:
            hits = runner.retrieval_hits
            note = (f"the named concepts plus the top {runner.top_k} others retrieval finds in the photo among "
                    f"{len(runner.concept_pool)} identities; a named concept in the photo was among retrieval's first "
                    f"{runner.top_k} + (named) on {sum(hits)} of {len(hits)} questions ({sum(hits) / len(hits):.3f})")
            rows[name]["note"] = "; ".join(filter(None, [rows[name]["note"], note]))
        if name == "raw_references_plain_noun":
            note = "questions naming one concept asked about \"the object\" (the backbone's pretraining layout)"
            rows[name]["note"] = "; ".join(filter(None, [rows[name]["note"], note]))
    split_ceiling = ({split: _ceiling(ceiling_outcomes, "recognition", CHANCE["recognition"], split, ceiling_margin)
                      for split in SPLITS[1:]}
                     if ceiling_names and "recognition" in tasks else {})

    results = {
        "schema_version": SCHEMA_VERSION,
        "command": command,
        "backbone": display_path(backbone),
        "data": {
            "description": data_description or getattr(episodes, "description", None) or "episode dataset",
            "num_episodes": counts,
            **_describe(prepared),
            "num_references": num_references,
        },
        "seeds": list(seeds),
        "variance": VARIANCE,
        "settings": {
            "ceiling_methods": ceiling_names,
            "ceiling_margin": ceiling_margin,
            "match_margin": MATCH_MARGIN,
            "confidence": CONFIDENCE,
            "n_resamples": N_RESAMPLES,
            "ttt_rows": TEST_TIME_TRAINING_ROWS,
            "ttt_steps": ttt_steps,
            "ttt_learning_rate": ttt_learning_rate,
            "ttt_negatives": ttt_negatives,
            "ttt_questions": ttt_questions,
            "max_new_tokens": context.max_new_tokens,
            "device": str(context.device),
            "threads": torch.get_num_threads(),
        },
        "metrics": list(METRICS),
        "splits": list(SPLITS),
        "reference_method": REFERENCE_METHOD if reference is not None else None,
        "ceiling": ceiling,
        "split_ceiling": split_ceiling,
        "methods": rows,
        "reference_sweep": {
            "metric": SWEEP_METRIC,
            "counts": list(reference_counts),
            "num_questions": len(sweep_chosen) if sweep_names else 0,
            "methods": sweep,
            "note": "" if sweep_names else "no reference sweep: no measurable recognition question or no reference-using method",
        },
        "swap_test": {
            "num_questions": len(swap_chosen) if swap_names else 0,
            "question_ids": [ids[i][1] for i in swap_chosen] if swap_names else [],
            "target": SWAP_TARGET,
            "methods": swap,
            "note": ("each positive recognition question asked again with the photos of the concept it names "
                     "replaced by those of another held-out identity (another description), under the same label"
                     if swap_names else "no swap test: no positive recognition question or no reference-using method"),
        },
        "adapter_cost": _adapter_cost(outcomes, seed),
        "outcomes": "outcomes.jsonl",
        "plots": {},
    }
    results["claims"] = claims(results)
    results["wall_seconds"] = time.perf_counter() - started
    all_outcomes = [o for name in runners for o in outcomes[name]]
    if output_dir is not None:
        write_results(results, all_outcomes, output_dir)
    results["wall_seconds"] = time.perf_counter() - started
    return results


def _capped(concept, k: int, seed: int) -> list:
    return subsample_references(concept.reference_values, k, seed, concept.key)


def _capped_key(concept, k: int, seed: int) -> str:
    return concept.name + "|" + ",".join(image_key(v) for v in _capped(concept, k, seed))
