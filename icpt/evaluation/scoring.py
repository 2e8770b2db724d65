"""Scores of the evaluation harness: one score per question, then cells with bootstrap intervals, then tables.

- `question_score(episode, prediction)`: the score of one answer by its task's rule, the rule of the
  project's `evaluate` metrics (`icpt.metrics`): yes/no read from the first word (recognition), the option
  picked (two-option VQA and text QA), exact match after normalization (attribute), for presence lists and
  captions the share of the concepts asked that the answer names exactly when they are in the photo (name
  accuracy), word F1 for the generic questions that name no concept (what a reader adapter costs the backbone's
  own answers). `Scorer` computes the same figures with the `evaluate` modules themselves (the tests check that
  both agree).
- `guess_floor(episodes, task)`: what an answer that looks at no photo scores on a task; the harness measures
  a task only above it.
- `cells(outcomes)`: every metric of `METRICS` on every split of `SPLITS` with its bootstrap interval over
  episodes (`icpt.metrics.statistics.estimate`); `differences(outcomes, reference_outcomes)`: the paired
  difference to a reference method on the same questions, with interval and p-value; `compare_runs(before,
  after)`: the same between two runs' output folders (e.g. two backbones asked the same questions).
- `render_markdown(results)`: the tables of a `results.json`.

Example:

```python
>>> from types import SimpleNamespace
>>> from icpt.evaluation.scoring import question_score
>>> episode = SimpleNamespace(task="recognition", answer="Yes", options=[], present=["<bo>"])
>>> question_score(episode, "Yes, it is."), question_score(episode, "Maybe")
(1.0, 0.0)
```
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from icpt.metrics import load_metric, normalize_answer
from icpt.metrics.name_accuracy.name_accuracy import mentions, name_score
from icpt.metrics.option_match.option_match import pick_option
from icpt.metrics.recognition.recognition import read_yes_no
from icpt.metrics.statistics import estimate, paired_difference, verdict
from icpt.metrics.word_f1.word_f1 import word_f1


# Flat metric names, in table order, and the task each is computed on.
METRICS = (
    "recognition_positive",  # Yo'LLaVA protocol: share of photos of the concept answered yes
    "recognition_negative",  # share of photos of other concepts answered no
    "recognition_weighted",  # 0.5 * positive + 0.5 * negative
    "vqa",  # two-option visual questions, exact match
    "text_qa",  # two-option text-only questions, exact match
    "attribute",  # short-answer questions, exact match after normalization
    "presence_names",  # "which of them are here?": per concept asked, listed exactly when present
    "caption_names",  # "write a caption that names any of them": per concept asked, named exactly when present
    "generic_f1",  # questions without concepts (describe an object or a scene), SQuAD word F1
)
METRIC_TASK = {
    "recognition_positive": "recognition",
    "recognition_negative": "recognition",
    "recognition_weighted": "recognition",
    "vqa": "vqa",
    "text_qa": "text_qa",
    "attribute": "attribute",
    "presence_names": "presence",
    "caption_names": "caption",
    "generic_f1": "generic",
}
# The metric that stands for each task (its ceiling and its headline column).
TASK_METRIC = {"recognition": "recognition_weighted", "vqa": "vqa", "text_qa": "text_qa", "attribute": "attribute",
               "presence": "presence_names", "caption": "caption_names", "generic": "generic_f1"}
# What answering at random (or always the same) scores: 0.5 for yes/no (weighted) and two options; free answers and
# free descriptions have no guessing floor worth counting. Presence lists and captions have theirs measured on the
# questions asked (`guess_floor`).
CHANCE = {"recognition": 0.5, "vqa": 0.5, "text_qa": 0.5, "attribute": 0.0, "generic": 0.0}


def guess_floor(episodes, task: str) -> float | None:
    """What `task`'s metric scores on these questions with an answer that looks at no photo: `CHANCE` for yes/no,
    two options and open answers; for presence and captions, the better of naming every concept asked (the share
    present) and naming none (the share absent). A task is measurable only above this floor; None without
    questions of the task."""
    chosen = [episode for episode in episodes if episode.task == task]
    if not chosen:
        return None
    if task in ("presence", "caption"):
        every = [question_score(e, ", ".join(c.name for c in e.named_concepts)) for e in chosen]
        every = [score for score in every if score is not None]
        if not every:
            return None
        present = sum(every) / len(every)
        return max(present, 1.0 - present)
    return CHANCE[task]


# Subsets of the questions reported separately: "all" is every question (all of held-out identities).
SPLITS = ("all", "environment_shift", "look_alike", "multi_concept")
# a split's row with fewer questions than this gets a note under the table (test-time training's subsample)
FEW_SPLIT_QUESTIONS = 100
SPLIT_TITLES = {
    "all": "all held-out questions",
    "environment_shift": "environment shift (queries from environments no reference shows)",
    "look_alike": "look-alikes (a look-alike of the target, differing in one detail, is in the question's scene)",
    "multi_concept": "multi-concept scenes (several of the user's concepts in the photo)",
}


def _is_yes(answer: str) -> bool:
    return normalize_answer(answer).split()[:1] == ["yes"]


def _asked(episode) -> list[str]:
    return [concept.name for concept in episode.named_concepts]


def _named(episode, text: str) -> str:
    """The concepts asked that a presence list names, sorted ("<b> and <a>" and "A, B." both give "<a> <b>")."""
    return " ".join(sorted(name for name in _asked(episode) if mentions(text, name))) or "none"


def canonical_answer(episode) -> str:
    """The reference answer in the form `canonical_prediction` gives, so exact match scores every task."""
    if episode.task == "recognition":
        return "yes" if _is_yes(episode.answer) else "no"
    if episode.task == "presence":
        return " ".join(sorted(episode.present)) or "none"
    return normalize_answer(episode.answer)


def canonical_prediction(episode, prediction: str) -> str:
    """A prediction read by its task's rule: yes/no by the first word (as the recognition metric reads it),
    presence as the set of the concepts asked that it names, options by the option-match rules, anything else
    normalized."""
    if episode.task == "recognition":
        return read_yes_no(prediction) or ""
    if episode.task == "presence":
        return _named(episode, prediction)
    if episode.task in ("vqa", "text_qa") and episode.options:
        picked = pick_option(prediction, episode.options)
        return normalize_answer(episode.options[picked]) if picked is not None else ""
    return normalize_answer(prediction)


def question_score(episode, prediction: str) -> float | None:
    """The score of one answer: 1.0 right, 0.0 wrong; a presence list's or a caption's name accuracy (None when
    the question names no concept) and a generic answer's word F1 in [0, 1]."""
    if episode.task in ("presence", "caption"):
        return name_score(prediction, list(episode.present), _asked(episode))
    if episode.task == "generic":
        return word_f1(prediction, episode.answer)
    return float(canonical_prediction(episode, prediction) == canonical_answer(episode))


def is_positive(episode) -> bool | None:
    """For a recognition question, whether the concept asked about is in the photo; None for other tasks."""
    return _is_yes(episode.answer) if episode.task == "recognition" else None


class Scorer:
    """The same metrics computed by the project's `evaluate` modules on lists of answers (one call per subset).

    The harness scores with `question_score`, which applies the modules' rules per question so that the
    bootstrap can resample questions; this class is the cross-check.
    """

    def __init__(self):
        self.recognition = load_metric("recognition", keep_in_memory=True)
        self.option_match = load_metric("option_match", keep_in_memory=True)
        self.name_accuracy = load_metric("name_accuracy", keep_in_memory=True)
        self.word_f1 = load_metric("word_f1", keep_in_memory=True)

    def score(self, episodes: list, predictions: list[str]) -> dict:
        """`{split: {metric: value or None}}` for every split of `SPLITS` and metric of `METRICS`."""
        scores = {}
        for split in SPLITS:
            chosen = [i for i, e in enumerate(episodes) if split == "all" or split in e.tags]
            scores[split] = self._score_subset([episodes[i] for i in chosen], [predictions[i] for i in chosen])
        return scores

    def _score_subset(self, episodes, predictions) -> dict:
        result = dict.fromkeys(METRICS)
        by_task = defaultdict(list)
        for episode, prediction in zip(episodes, predictions):
            by_task[episode.task].append((episode, prediction))
        recognition = by_task["recognition"]
        if recognition:
            out = self.recognition.compute(
                predictions=[p for _, p in recognition], references=[_is_yes(e.answer) for e, _ in recognition]
            )
            result["recognition_positive"] = out["positive_accuracy"]
            result["recognition_negative"] = out["negative_accuracy"]
            result["recognition_weighted"] = out["weighted_accuracy"]
        for task in ("vqa", "text_qa"):
            pairs = by_task[task]
            if pairs:
                out = self.option_match.compute(
                    predictions=[p for _, p in pairs], references=[e.answer for e, _ in pairs],
                    options=[e.options for e, _ in pairs] if all(e.options for e, _ in pairs) else None,
                )
                result[task] = out["accuracy"]
        attributes = by_task["attribute"]
        if attributes:
            out = self.option_match.compute(
                predictions=[canonical_prediction(e, p) for e, p in attributes],
                references=[canonical_answer(e) for e, _ in attributes],
            )
            result["attribute"] = out["accuracy"]
        for task in ("presence", "caption"):
            pairs = by_task[task]
            if pairs:
                out = self.name_accuracy.compute(predictions=[p for _, p in pairs],
                                                 references=[list(e.present) for e, _ in pairs],
                                                 asked=[_asked(e) for e, _ in pairs])
                result[f"{task}_names"] = out["accuracy"]
        generic = by_task["generic"]
        if generic:
            out = self.word_f1.compute(predictions=[p for _, p in generic], references=[e.answer for e, _ in generic])
            result["generic_f1"] = out["f1"]
        return result


# --------------------------------------------------------------------------------------------- cells


def _select(outcomes: list[dict], split: str, metric: str) -> list[dict]:
    """The outcomes a metric is computed on in a split (a recognition metric's positives or negatives only)."""
    task = METRIC_TASK[metric]
    chosen = [o for o in outcomes if o["task"] == task and o["score"] is not None
              and (split == "all" or split in o["splits"])]
    if metric == "recognition_positive":
        chosen = [o for o in chosen if o["positive"]]
    elif metric == "recognition_negative":
        chosen = [o for o in chosen if not o["positive"]]
    return chosen


def cell(outcomes: list[dict], split: str, metric: str, seed: int = 0) -> dict:
    """One metric on one split of one method's outcomes, with its bootstrap interval (`estimate`)."""
    chosen = _select(outcomes, split, metric)
    positive = [o["positive"] for o in chosen] if metric == "recognition_weighted" else None
    return estimate([o["score"] for o in chosen], positive=positive, seed=seed)


def cells(outcomes: list[dict], seed: int = 0) -> dict:
    """`{split: {metric: estimate}}` for every split and metric (undefined ones have mean None)."""
    return {split: {metric: cell(outcomes, split, metric, seed) for metric in METRICS} for split in SPLITS}


def differences(outcomes: list[dict], reference: list[dict], metrics=METRICS, seed: int = 0) -> dict:
    """`{split: {metric: paired difference}}` of a method minus `reference`, on the questions both answered.

    Questions are matched by `question_id`; a method that answered a subsample (test-time training) is
    compared on that subsample.
    """
    by_id = {o["question_id"]: o for o in reference}
    result = {}
    for split in SPLITS:
        result[split] = {}
        for metric in metrics:
            chosen = [o for o in _select(outcomes, split, metric) if o["question_id"] in by_id]
            positive = [o["positive"] for o in chosen] if metric == "recognition_weighted" else None
            result[split][metric] = paired_difference([o["score"] for o in chosen],
                                                      [by_id[o["question_id"]]["score"] for o in chosen],
                                                      positive=positive, seed=seed)
            result[split][metric]["verdict"] = verdict(result[split][metric])
    return result


def read_outcomes(folder: Path) -> dict[str, list[dict]]:
    """`{method: outcomes}` of an `icpt eval` output folder's outcomes.jsonl."""
    path = folder / "outcomes.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: pass an output folder of `icpt eval` (its --output-dir).")
    by_method: dict[str, list[dict]] = {}
    for line in path.read_text().splitlines():
        outcome = json.loads(line)
        by_method.setdefault(outcome["method"], []).append(outcome)
    return by_method


def compare_runs(before: Path, after: Path, methods: list[str] | None = None, split: str = "all") -> list[dict]:
    """Two `icpt eval` runs on the same questions (e.g. two backbones), paired: one row per (method, metric)
    both measured, with ``before``, ``after`` (cells) and ``difference`` (after − before, `differences`).

    The runs must share questions (`question_id`): the same world, seeds and question counts.
    """
    first, second = read_outcomes(before), read_outcomes(after)
    shared = [m for m in second if m in first and (methods is None or m in methods)]
    if not shared:
        raise ValueError(f"No method in both runs{' among ' + ', '.join(methods) if methods else ''}: "
                         f"{sorted(first)} vs {sorted(second)}.")
    rows = []
    for method in shared:
        asked = {o["question_id"] for o in first[method]} & {o["question_id"] for o in second[method]}
        if not asked:
            raise ValueError(f"{method}: the two runs share no question; run both with the same world, seeds "
                             "and question counts.")
        old = [o for o in first[method] if o["question_id"] in asked]
        new = [o for o in second[method] if o["question_id"] in asked]
        change = differences(new, old)[split]
        for metric in METRICS:
            if change[metric]["difference"] is None:
                continue
            rows.append({"method": method, "metric": metric, "task": METRIC_TASK[metric],
                         "before": cell(old, split, metric), "after": cell(new, split, metric),
                         "difference": change[metric]})
    return rows



# --------------------------------------------------------------------------------------------- markdown

METRIC_HEADERS = {
    "recognition_positive": "Recog. pos.",
    "recognition_negative": "Recog. neg.",
    "recognition_weighted": "Recog. weighted",
    "vqa": "VQA",
    "text_qa": "Text QA",
    "attribute": "Attribute",
    "presence_names": "Presence (per name)",
    "caption_names": "Caption names (per name)",
    "generic_f1": "Generic (word F1)",
}


def format_value(value: dict | None, digits: int = 3) -> str:
    """`0.720 [0.690, 0.750]`, `0.720` (no interval) or `–` (undefined)."""
    if not value or value.get("mean") is None:
        return "–"
    text = f"{value['mean']:.{digits}f}"
    if value.get("low") is not None:
        text += f" [{value['low']:.{digits}f}, {value['high']:.{digits}f}]"
    return text


def format_difference(value: dict | None, digits: int = 3) -> str:
    """`−0.031 [−0.060, −0.002], p = 0.041` or `–`."""
    if not value or value.get("difference") is None:
        return "–"
    text = f"{value['difference']:+.{digits}f}"
    if value.get("low") is not None:
        text += f" [{value['low']:+.{digits}f}, {value['high']:+.{digits}f}]"
    if value.get("p_value") is not None:
        text += f", p = {value['p_value']:.3f}" if value["p_value"] >= 0.001 else ", p < 0.001"
    return text


def format_count(value: dict | None, digits: int = 1) -> str:
    """A per-concept count: `8.0` when every concept had the same, else `mean (min–max)`."""
    if not value or value.get("mean") is None:
        return "–"
    if value["min"] == value["max"]:
        return f"{value['mean']:.{digits}f}"
    return f"{value['mean']:.{digits}f} ({value['min']:.{digits}f}–{value['max']:.{digits}f})"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _n(value: dict) -> str:
    if value.get("n_positive") is not None:
        return f"{value['n']} ({value['n_positive']} / {value['n_negative']})"
    return str(value["n"])


def render_markdown(results: dict, plots_prefix: str = "") -> str:
    """The results as markdown: ceilings, the main table with differences to ICPT, the splits, agreement,
    the reference sweep, plots."""
    methods = results["methods"]
    ok = [name for name, row in methods.items() if row["status"] == "ok"]
    ceiling = results.get("ceiling", {})
    measurable = [task for task, row in ceiling.items() if row["measurable"]]
    settings = results["settings"]
    if settings["ceiling_methods"]:
        ceilings = ", ".join(f"`{m}`" for m in settings["ceiling_methods"])
        intro = (f"Each task is first answered by the ceiling methods ({ceilings}: the reference photos in context). "
                 "A task is measurable on this backbone when the best ceiling's "
                 f"95 % interval lies at least {settings['ceiling_margin']:.2f} above chance, the score of an answer "
                 "that looks at no photo (for presence lists and captions, scored per concept asked: the better of "
                 "naming every concept the question names and naming none); the other tasks are a property of the "
                 "backbone, not a result for a method, and no other method is run on them.")
    else:
        intro = ("No ceiling method (the reference photos in context) was among the methods, so nothing told the "
                 "measurable tasks from the others: every task was run and is reported, whether or not the backbone "
                 "can answer it.")
    intro += (" Every method answers a question that offers two options (VQA, text QA) with the option its model "
              "finds more likely (answer ranking, as SEED-Bench scores multiple choice), and every other question "
              "with its greedy generation.")
    lines = ["## What the backbone can do: the ceiling per task", "", intro, ""]
    rows = []
    for task, row in ceiling.items():
        chance = f"{row['chance']:.2f}" if row["chance"] is not None else "–"
        rows.append([task, chance, f"{row['method'] or '–'}", format_value(row["value"]),
                     str(row["value"]["n"]), "measurable" if row["measurable"] else "**not measurable on this backbone**"])
    lines += _table(["Task", "Chance", "Best ceiling", "Ceiling [95 % CI]", "Questions", "Status"], rows) + [""]

    reference = results.get("reference_method")
    used = [m for m in METRICS if METRIC_TASK[m] in measurable]
    headline = [m for m in used if m == TASK_METRIC[METRIC_TASK[m]]]
    lines += ["## Main results", "",
              (f"Data: {results['data']['description']}. Cells: mean [95 % bootstrap interval over episodes, "
               f"percentile, {settings['n_resamples']} resamples]. Every method answers the same questions "
               "(test-time training a stated subsample of them). "
               f"Δ to `{reference}`: the method minus `{reference}` on the same questions, its bootstrap interval "
               f"and the p-value of a paired permutation test ({settings['n_resamples']} permutations)."), ""]
    header = (["Method", "Questions", "Prompt tokens / concept", "Seconds / concept"] + [METRIC_HEADERS[m] for m in used]
              + [f"Δ {METRIC_HEADERS[m]} to {reference}" for m in headline])
    rows, notes = [], []
    for name, row in methods.items():
        if row["status"] != "ok":
            rows.append([name, "skipped"] + ["–"] * (len(header) - 2))
            notes.append(f"- `{name}` skipped: {row['note']}")
            continue
        deltas = [("(reference)" if name == reference else format_difference(row["difference"].get("all", {}).get(m)))
                  for m in headline]
        rows.append([name, str(row["num_questions"]), format_count(row["prompt_tokens_per_concept"]),
                     format_count(row["seconds_per_concept"], 4)]
                    + [format_value(row["results"]["all"][m]) for m in used] + deltas)
        if row.get("note"):
            notes.append(f"- `{name}`: {row['note']}")
    lines += _table(header, rows) + [""] + notes + ([""] if notes else [])

    lines += ["## Splits", "",
              ("Weighted recognition on each split of the same questions (cells: mean [95 % interval]; questions as "
               "all (positives / negatives); Δ and p as above). The ceiling column says whether the photos in "
               "context themselves do better than chance there."), ""]
    for split in SPLITS[1:]:
        lines += [f"### {SPLIT_TITLES[split][0].upper()}{SPLIT_TITLES[split][1:]}", ""]
        split_ceiling = results.get("split_ceiling", {}).get(split)
        if split_ceiling:
            lines += [f"Ceiling ({split_ceiling['method']}): {format_value(split_ceiling['value'])} — "
                      + ("measurable." if split_ceiling["measurable"] else
                         "**below the bar: differences on this split say little about the methods.**"), ""]
        table_rows = []
        for name in ok:
            value = methods[name]["results"][split]["recognition_weighted"]
            if value["mean"] is None:
                continue
            delta = ("(reference)" if name == reference
                     else format_difference(methods[name]["difference"].get(split, {}).get("recognition_weighted")))
            table_rows.append([name, _n(value), format_value(methods[name]["results"][split]["recognition_positive"]),
                               format_value(methods[name]["results"][split]["recognition_negative"]),
                               format_value(value), delta])
        if not table_rows:
            lines += ["No recognition question of this split.", ""]
            continue
        lines += _table(["Method", "Questions", "Recog. pos.", "Recog. neg.", "Recog. weighted", f"Δ to {reference}"],
                        table_rows) + [""]
        few = [f"`{name}` ({methods[name]['results'][split]['recognition_weighted']['n']})" for name, *_ in table_rows
               if methods[name]["results"][split]["recognition_weighted"]["n"] < FEW_SPLIT_QUESTIONS]
        if few:  # a subsampled method may hold a handful of a split's questions, whose mean says little
            lines += [f"Fewer than {FEW_SPLIT_QUESTIONS} questions of this split: {', '.join(few)}; read their cells "
                      f"with their intervals (`icpt eval --world-split {split}` asks this split alone).", ""]

    agreement = {name: methods[name].get("agreement_with_reference") for name in ok if name != reference}
    if any(value is not None for value in agreement.values()):
        lines += [f"## Agreement with `{reference}`", "",
                  (f"Same answer: share of the questions both answered on which a method gives the same answer as "
                   f"`{reference}` (read by its task's rule). Row difference: the largest relative distance between its "
                   f"prompt rows and `{reference}`'s for the same concept. Weight difference: the relative distance "
                   f"between its trained weights and `{reference}`'s (ICPT checkpoints only)."), ""]

        def relative(value):
            return "–" if value is None else f"{value:.3f}"

        rows = [[name, f"{value['share']:.3f} ({value['same']} / {value['n']})" if value else "–",
                 relative(methods[name].get("row_difference")), relative(methods[name].get("weight_difference"))]
                for name, value in agreement.items()]
        lines += _table(["Method", "Same answer", "Row difference", "Weight difference"], rows) + [""]
        same_reading = [name for name, value in agreement.items() if value and value["share"] >= 0.99
                        and (methods[name].get("weight_difference") or 0) > 0]
        if same_reading:
            lines += [(f"{', '.join(f'`{name}`' for name in same_reading)}: different weights and different rows, yet "
                       f"the same answer as `{reference}` on at least 99 % of the questions: the backbone reads both "
                       "prompts alike, so equal cells come from equal answers, not from equal checkpoints."), ""]

    swap = results.get("swap_test") or {}
    if swap.get("methods"):
        lines += ["## Swap test: do the rows carry the identity?", "",
                  (f"{swap['num_questions']} positive recognition questions asked again with {swap['note'].split('with ', 1)[-1]}. "
                   f"Changed: the share of answers that changed (yes/no); a method whose prompt carries the identity "
                   f"changes most of them (target {swap['target']:.0%}). Yes before / after: the share of yes answers."), ""]
        rows = [[name, format_value(row["changed"]), format_value(row["yes_before"]), format_value(row["yes_after"])]
                for name, row in swap["methods"].items()]
        lines += _table(["Method", "Changed", "Yes before", "Yes after"], rows) + [""]

    cost = results.get("adapter_cost") or {}
    if "generic_f1" in cost or "raw_references_recognition" in cost:
        lines += ["## What the reader adapter costs", "",
                  ("Paired differences on the answers the adapter was not trained for (the margin allowed: "
                   f"{cost['margin']:.2f})."), ""]
        rows = []
        if "generic_f1" in cost:
            rows.append(["generic questions without concepts (word F1)", "icpt − raw_references (the same question "
                         "through the adapted and the frozen language model)", format_difference(cost["generic_f1"])])
        if "raw_references_recognition" in cost:
            rows.append(["photos in context (weighted recognition)", "raw_references_adapted − raw_references",
                         format_difference(cost["raw_references_recognition"])])
        lines += _table(["Answers", "Difference", "Value [95 % CI], p"], rows) + [""]

    sweep = results.get("reference_sweep") or {}
    if sweep.get("methods"):
        counts = sweep["counts"]
        lines += ["## Accuracy vs number of reference images", "",
                  (f"{METRIC_HEADERS[sweep['metric']]} on {sweep['num_questions']} recognition questions, each concept "
                   "keeping at most k references (drawn with the seed)."), ""]
        header = ["Method"] + [f"k = {k}" for k in counts]
        rows = [[name] + [format_value(by_count[str(k)]) for k in counts] for name, by_count in sweep["methods"].items()]
        lines += _table(header, rows) + [""]
    elif sweep.get("note"):
        lines += ["## Accuracy vs number of reference images", "", sweep["note"], ""]

    if results.get("plots"):
        lines += ["## Plots", ""]
        lines += [f"![{name.replace('_', ' ')}]({plots_prefix}{file})" for name, file in results["plots"].items()]
        lines += [""]
    return "\n".join(lines)
