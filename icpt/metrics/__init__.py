"""The project's evaluation metrics, as local `evaluate` modules (Hub metrics cannot load offline).

Each metric lives in its own folder, `icpt/metrics/<name>/<name>.py`, and loads with
`evaluate.load(<absolute path of the folder>)`; `load_metric(name)` resolves that path.

- `recognition`: positive, negative and weighted (0.5 * pos + 0.5 * neg) accuracy of yes/no answers;
- `option_match`: exact match on multiple-choice questions, by option text or option letter;
- `name_accuracy`: per concept asked, whether a presence list or a caption names it exactly when it is present;
- `word_f1`: SQuAD word F1 of free answers (the generic questions without concepts).

Example:

```python
>>> from icpt.metrics import load_metric, mean_and_interval
>>> recognition = load_metric("recognition")
>>> recognition.compute(predictions=["Yes", "No"], references=[True, False])["weighted_accuracy"]
1.0
>>> mean_and_interval([0.9])
(0.9, None, None)
```
"""

from pathlib import Path

import evaluate

from .intervals import mean_and_interval
from .normalization import normalize_answer


METRIC_NAMES = ("recognition", "option_match", "name_accuracy", "word_f1")


def load_metric(name: str, **kwargs) -> evaluate.EvaluationModule:
    """Load one of the project's metrics (see `METRIC_NAMES`) from its local folder.

    `kwargs` go to `evaluate.load` (e.g. `keep_in_memory=True`, `experiment_id=...`).
    """
    if name not in METRIC_NAMES:
        raise ValueError(f"Unknown metric {name!r}: the project's metrics are {', '.join(METRIC_NAMES)}.")
    return evaluate.load(str(Path(__file__).resolve().parent / name), **kwargs)


__all__ = ["METRIC_NAMES", "load_metric", "mean_and_interval", "normalize_answer"]
