"""Loading the project's metrics (icpt/metrics/__init__.py): offline from their folders, unknown names refused."""

from pathlib import Path

import evaluate
import pytest

import icpt.metrics
from icpt.metrics import METRIC_NAMES, load_metric


# ------------------------------------------------------------------------------------------ loading


@pytest.mark.parametrize("name", METRIC_NAMES)
def test_each_metric_loads_offline_from_its_absolute_path(name):
    folder = Path(icpt.metrics.__file__).resolve().parent / name
    metric = evaluate.load(str(folder), keep_in_memory=True)
    assert isinstance(metric, evaluate.Metric)
    assert metric.name == name


def test_load_metric_rejects_an_unknown_name():
    with pytest.raises(ValueError, match="option_match"):
        load_metric("accuracy")
