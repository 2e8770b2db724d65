"""Scores of the evaluation harness: per seed with the project's `evaluate` metrics, then over seeds.

`score_episodes` turns one method's answers on one seed's episodes into flat metrics (`METRICS`);
`aggregate` gives their mean and 95 % interval over seeds; `render_markdown` writes the tables.

Example:

```python
>>> from icpt.evaluation_scoring import aggregate
>>> aggregate([0.5, None, 0.7])["mean"]  # seeds where a metric is undefined are left out
0.6
```
"""

from __future__ import annotations

from collections import defaultdict

from .metrics import load_metric, mean_and_interval, normalize_answer

# Flat metric names, in table order.
METRICS = (
    "recognition_positive",  # Yo'LLaVA protocol: share of photos of the concept answered yes
    "recognition_negative",  # share of photos of other concepts answered no
    "recognition_weighted",  # 0.5 * positive + 0.5 * negative
    "vqa",  # two-option visual questions, exact match
    "text_qa",  # two-option text-only questions, exact match
    "attribute",  # short-answer questions, exact match after normalization
    "presence",  # "which of them are here?", the set of names must match
    "single_concept",  # accuracy of the scored image questions whose image shows at most one concept
    "multi_concept",  # ... whose image shows several (tag `multi_concept`)
    "caption_recall",  # share of the present concepts' names a caption mentions
)
# Subsets of the episodes reported separately ("all" is every episode).
SPLITS = ("all", "environment_shift", "look_alike")
# Image tasks with one right answer: they make up the single- vs multi-concept accuracy.
SCORED_IMAGE_TASKS = ("recognition", "vqa", "presence", "attribute")


class Scorer:
    """Loads the project's metrics once and scores episodes with them."""

    def __init__(self):
        self.recognition = load_metric("recognition", keep_in_memory=True)
        self.option_match = load_metric("option_match", keep_in_memory=True)
        self.caption_recall = load_metric("caption_recall", keep_in_memory=True)

    def score(self, episodes: list, predictions: list[str]) -> dict:
        """Every metric of `METRICS` on every split of `SPLITS`: `{split: {metric: value or None}}`,
        plus `per_concept` (recognition per target concept, all episodes)."""
        scores = {}
        for split in SPLITS:
            chosen = [i for i, e in enumerate(episodes) if split == "all" or split in e.tags]
            scores[split] = self._score_subset([episodes[i] for i in chosen], [predictions[i] for i in chosen])
        scores["per_concept"] = self._per_concept(episodes, predictions)
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
        for task in ("attribute", "presence"):
            pairs = by_task[task]
            if pairs:
                out = self.option_match.compute(
                    predictions=[canonical_prediction(e, p) for e, p in pairs],
                    references=[canonical_answer(e) for e, _ in pairs],
                )
                result[task] = out["accuracy"]
        scored = [(e, p) for e, p in zip(episodes, predictions) if e.task in SCORED_IMAGE_TASKS and e.image_value]
        if scored:
            out = self.option_match.compute(
                predictions=[canonical_prediction(e, p) for e, p in scored],
                references=[canonical_answer(e) for e, _ in scored],
                groups=["multi_concept" if "multi_concept" in e.tags else "single_concept" for e, _ in scored],
            )
            for group, row in out["per_group"].items():
                result[group] = row["accuracy"]
        captions = by_task["caption"]
        if captions:
            out = self.caption_recall.compute(
                predictions=[p for _, p in captions], references=[e.present for e, _ in captions]
            )
            result["caption_recall"] = out["recall"]
        return result

    def _per_concept(self, episodes, predictions) -> dict:
        pairs = [(e, p) for e, p in zip(episodes, predictions) if e.task == "recognition" and e.target]
        if not pairs:
            return {}
        out = self.recognition.compute(
            predictions=[p for _, p in pairs], references=[_is_yes(e.answer) for e, _ in pairs],
            groups=[e.target for e, _ in pairs],
        )
        return {
            name: {
                "recognition_positive": row["positive_accuracy"],
                "recognition_negative": row["negative_accuracy"],
                "recognition_weighted": row["weighted_accuracy"],
            }
            for name, row in out["per_group"].items()
        }


def _is_yes(answer: str) -> bool:
    return normalize_answer(answer).split()[:1] == ["yes"]


def _names(text: str) -> str:
    """A list of names, normalized and sorted ("<b>, <a>" and "a and b" both give "a b"); "none" if empty."""
    parts = [normalize_answer(part) for part in text.replace(" and ", ",").split(",")]
    parts = sorted(part for part in parts if part and part not in ("none", "nothing"))
    return " ".join(parts) or "none"


def canonical_answer(episode) -> str:
    """The reference answer in the form `canonical_prediction` gives, so exact match scores every task."""
    if episode.task == "recognition":
        return "yes" if _is_yes(episode.answer) else "no"
    if episode.task == "presence":
        return _names(episode.answer)
    return normalize_answer(episode.answer)


def canonical_prediction(episode, prediction: str) -> str:
    """A prediction read by its task's rule: yes/no by the first word (as the recognition metric reads it),
    presence as a set of names, options by the option-match rules, anything else normalized."""
    if episode.task == "recognition":
        words = normalize_answer(prediction).split()
        return words[0] if words and words[0] in ("yes", "no") else ""
    if episode.task == "presence":
        return _names(prediction)
    if episode.task in ("vqa", "text_qa") and episode.options:
        from .metrics.option_match.option_match import pick_option

        picked = pick_option(prediction, episode.options)
        return normalize_answer(episode.options[picked]) if picked is not None else ""
    return normalize_answer(prediction)


# --------------------------------------------------------------------------------------------- over seeds


def aggregate(values: list) -> dict:
    """Mean and 95 % interval (Student's t) over the seeds where the value is defined.

    Returns `{"mean", "low", "high", "per_seed", "num_seeds"}`; `mean` is None when no seed defines
    the value, `low`/`high` are None with fewer than two.
    """
    defined = [float(v) for v in values if v is not None]
    if not defined:
        return {"mean": None, "low": None, "high": None, "per_seed": list(values), "num_seeds": 0}
    mean, low, high = mean_and_interval(defined)
    return {"mean": mean, "low": low, "high": high, "per_seed": list(values), "num_seeds": len(defined)}


def aggregate_scores(per_seed: list[dict]) -> dict:
    """`{split: {metric: aggregate}}` and `per_concept: {name: {metric: aggregate}}` from `Scorer.score` outputs."""
    results = {
        split: {metric: aggregate([scores[split][metric] for scores in per_seed]) for metric in METRICS}
        for split in SPLITS
    }
    names = sorted({name for scores in per_seed for name in scores["per_concept"]})
    results["per_concept"] = {
        name: {
            metric: aggregate([scores["per_concept"].get(name, {}).get(metric) for scores in per_seed])
            for metric in ("recognition_positive", "recognition_negative", "recognition_weighted")
        }
        for name in names
    }
    return results


# --------------------------------------------------------------------------------------------- markdown

METRIC_HEADERS = {
    "recognition_positive": "Recog. pos.",
    "recognition_negative": "Recog. neg.",
    "recognition_weighted": "Recog. weighted",
    "vqa": "VQA",
    "text_qa": "Text QA",
    "attribute": "Attribute",
    "presence": "Presence",
    "single_concept": "Single-concept img.",
    "multi_concept": "Multi-concept img.",
    "caption_recall": "Caption recall",
}


def format_value(value: dict | None, digits: int = 3) -> str:
    """`0.720 [0.670, 0.770]`, `0.720` (one seed) or `–` (undefined)."""
    if not value or value.get("mean") is None:
        return "–"
    text = f"{value['mean']:.{digits}f}"
    if value.get("low") is not None:
        text += f" [{value['low']:.{digits}f}, {value['high']:.{digits}f}]"
    return text


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def render_markdown(results: dict, plots_prefix: str = "") -> str:
    """The results as markdown: the main table, the splits, the reference sweep, per-concept recognition, plots."""
    methods = results["methods"]
    used = [m for m in METRICS if any(row["status"] == "ok" and row["results"]["all"][m]["mean"] is not None
                                      for row in methods.values())]
    lines = [
        "## Main results",
        "",
        (f"Data: {results['data']['description']}. Seeds: {', '.join(map(str, results['seeds']))} "
         f"({results['seed_varies']}). Cells: mean [95 % interval over seeds]."),
        "",
    ]
    header = ["Method", "Prompt tokens / concept", "Seconds / concept"] + [METRIC_HEADERS[m] for m in used]
    rows, notes = [], []
    for name, row in methods.items():
        if row["status"] != "ok":
            rows.append([name, "skipped"] + ["–"] * (len(header) - 2))
            notes.append(f"- `{name}` skipped: {row['note']}")
            continue
        rows.append([name, format_value(row["prompt_tokens_per_concept"], 1), format_value(row["seconds_per_concept"], 4)]
                    + [format_value(row["results"]["all"][m]) for m in used])
        if row.get("note"):
            notes.append(f"- `{name}`: {row['note']}")
    lines += _table(header, rows) + [""] + notes + ([""] if notes else [])

    lines += ["## Splits", "", "Every metric again on the episodes of each split (cells: mean [95 % interval]).", ""]
    ok = [name for name, row in methods.items() if row["status"] == "ok"]
    for split, title, meaning in (
        ("environment_shift", "Environment shift", "queries from environments that no reference shows"),
        ("look_alike", "Look-alike", "a look-alike of the target, differing in one detail, is in the question's scene"),
    ):
        defined = [m for m in METRICS if any(methods[name]["results"][split][m]["mean"] is not None for name in ok)]
        lines += [f"### {title}", "", f"{title}: {meaning}.", ""]
        if not defined:
            lines += ["No episode of this split.", ""]
            continue
        rows = [[name] + [format_value(methods[name]["results"][split][m]) for m in defined] for name in ok]
        lines += _table(["Method"] + [METRIC_HEADERS[m] for m in defined], rows) + [""]

    sweep = results.get("reference_sweep") or {}
    if sweep.get("methods"):
        counts = sweep["counts"]
        lines += ["## Accuracy vs number of reference images", "",
                  (f"{METRIC_HEADERS[sweep['metric']]} on the recognition episodes, each concept keeping at most k "
                   f"references (drawn with the seed)."), ""]
        header = ["Method"] + [f"k = {k}" for k in counts]
        rows = [[name] + [format_value(by_count[str(k)]) for k in counts] for name, by_count in sweep["methods"].items()]
        lines += _table(header, rows) + [""]
    elif sweep.get("note"):
        lines += ["## Accuracy vs number of reference images", "", sweep["note"], ""]

    # a concept's weighted accuracy needs both photos of it and photos of others asked about it
    concept_names = sorted({concept for m in ok for concept, row in methods[m]["per_concept"].items()
                            if row["recognition_weighted"]["mean"] is not None})
    if concept_names:
        lines += ["## Recognition per concept (weighted)", ""]
        if len(concept_names) <= 50:
            rows = [[concept] + [format_value(methods[m]["per_concept"].get(concept, {}).get("recognition_weighted"))
                                 for m in ok] for concept in concept_names]
            lines += _table(["Concept"] + ok, rows) + [""]
        else:
            lines += [f"{len(concept_names)} concepts: see `per_concept` in results.json.", ""]

    if results.get("plots"):
        lines += ["## Plots", ""]
        lines += [f"![{name.replace('_', ' ')}]({plots_prefix}{file})" for name, file in results["plots"].items()]
        lines += [""]
    return "\n".join(lines)
