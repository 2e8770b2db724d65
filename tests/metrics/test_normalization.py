"""Answer normalization (icpt/metrics/normalization.py)."""

from icpt.metrics import normalize_answer


def test_normalize_answer_is_squad_normalization():
    assert normalize_answer("  The Shiba-Inu!") == "shibainu"
    assert normalize_answer("An apple, a pear.") == "apple pear"
    assert normalize_answer("") == ""
