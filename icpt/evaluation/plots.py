"""Plots of the evaluation harness's results (PNG, matplotlib's Agg backend: no display needed).

- `plot_accuracy_vs_prompt_tokens`: one point per method, accuracy against prompt tokens per concept
  (log scale), with the 95 % bootstrap intervals as vertical error bars and the range of tokens over
  concepts as horizontal ones;
- `plot_accuracy_vs_references`: accuracy against the number of reference images per concept, one
  line per method.

Both read the `results.json` structure that `icpt.evaluation.harness.run_evaluation` returns.

Example:

```python
>>> from icpt.evaluation.plots import plot_accuracy_vs_prompt_tokens
>>> plot_accuracy_vs_prompt_tokens(results, "outputs/eval/accuracy_vs_prompt_tokens.png")  # doctest: +SKIP
```
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: the harness runs on machines without a display

import matplotlib.pyplot as plt  # noqa: E402

from .scoring import METRIC_HEADERS  # noqa: E402


def _error(value: dict, low: str = "low", high: str = "high") -> list[list[float]]:
    """Asymmetric error bar of an estimate (zero when there is no interval)."""
    if value.get(low) is None:
        return [[0.0], [0.0]]
    return [[value["mean"] - value[low]], [value[high] - value["mean"]]]


def _accuracy_axis(axes, metric: str) -> None:
    axes.set_ylim(0.0, 1.02)
    axes.set_ylabel(METRIC_HEADERS.get(metric, metric))
    if metric == "recognition_weighted":  # answering always yes (or always no) scores 0.5
        axes.axhline(0.5, color="grey", linestyle="--", linewidth=1, label="chance")


def _note(axes, text: str) -> None:
    axes.text(0.5, 0.5, text, ha="center", va="center", transform=axes.transAxes, wrap=True)


def plot_accuracy_vs_prompt_tokens(results: dict, path, metric: str = "recognition_weighted") -> Path:
    """Accuracy (`metric`, all episodes) against prompt tokens per concept, one point per method that ran."""
    figure, axes = plt.subplots(figsize=(6.4, 4.4))
    plotted = 0
    for index, (name, row) in enumerate(results["methods"].items()):
        if row["status"] != "ok":
            continue
        accuracy, tokens = row["results"]["all"][metric], row["prompt_tokens_per_concept"]
        if accuracy["mean"] is None or tokens["mean"] is None:
            continue
        axes.errorbar(
            [max(tokens["mean"], 0.5)], [accuracy["mean"]], yerr=_error(accuracy), xerr=_error(tokens, "min", "max"),
            fmt="o", capsize=3, color=f"C{index % 10}", label=name,
        )
        plotted += 1
    axes.set_xscale("log")
    axes.set_xlabel("prompt tokens per concept (log scale)")
    _accuracy_axis(axes, metric)
    axes.set_title("Accuracy vs prompt tokens per concept")
    if plotted:
        axes.legend(fontsize=7, loc="best")
    else:
        _note(axes, f"No method has a defined {metric} on these episodes.")
    axes.grid(alpha=0.3)
    return _save(figure, path)


def plot_accuracy_vs_references(results: dict, path) -> Path:
    """The reference sweep: accuracy against the number of reference images per concept, a line per method."""
    sweep = results.get("reference_sweep") or {}
    figure, axes = plt.subplots(figsize=(6.4, 4.4))
    counts = sweep.get("counts", [])
    order = list(results["methods"])  # a method keeps its colour across the plots
    for name, by_count in (sweep.get("methods") or {}).items():
        index = order.index(name) if name in order else len(order)
        points = [(k, by_count[str(k)]) for k in counts if by_count[str(k)]["mean"] is not None]
        if not points:
            continue
        errors = [[v["mean"] - v["low"] if v["low"] is not None else 0.0 for _, v in points],
                  [v["high"] - v["mean"] if v["high"] is not None else 0.0 for _, v in points]]
        axes.errorbar([k for k, _ in points], [v["mean"] for _, v in points], yerr=errors, marker="o",
                      capsize=3, color=f"C{index % 10}", label=name)
    metric = sweep.get("metric", "recognition_weighted")
    axes.set_xlabel("reference images per concept (at most)")
    _accuracy_axis(axes, metric)
    axes.set_title("Accuracy vs number of reference images")
    if counts:
        axes.set_xticks(counts)
    if any(label != "chance" for label in axes.get_legend_handles_labels()[1]):
        axes.legend(fontsize=7, loc="best")
    else:
        _note(axes, sweep.get("note") or "No reference sweep was run.")
    axes.grid(alpha=0.3)
    return _save(figure, path)


def _save(figure, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


__all__ = ["plot_accuracy_vs_prompt_tokens", "plot_accuracy_vs_references"]
