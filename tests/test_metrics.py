"""The project's metrics on hand-made predictions whose scores are worked out by hand."""

import math
from pathlib import Path

import evaluate
import pytest

import icpt.metrics
from icpt.metrics import METRIC_NAMES, load_metric, mean_and_interval, normalize_answer
from icpt.metrics.intervals import student_t_quantile


@pytest.fixture(scope="module")
def recognition():
    return load_metric("recognition", keep_in_memory=True)


@pytest.fixture(scope="module")
def option_match():
    return load_metric("option_match", keep_in_memory=True)


@pytest.fixture(scope="module")
def caption_recall():
    return load_metric("caption_recall", keep_in_memory=True)


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


def test_normalize_answer_is_squad_normalization():
    assert normalize_answer("  The Shiba-Inu!") == "shibainu"
    assert normalize_answer("An apple, a pear.") == "apple pear"
    assert normalize_answer("") == ""


# --------------------------------------------------------------------------------------- recognition


def test_recognition_known_values(recognition):
    # positives: yes (right), "Yes, it is." (right), No (wrong) -> 2/3
    # negatives: "no." (right), Yes (wrong), maybe (wrong, unparsed) -> 1/3
    results = recognition.compute(
        predictions=["Yes", "Yes, it is.", "No", "no.", "Yes", "maybe"],
        references=[True, True, True, False, False, False],
    )
    assert results["positive_accuracy"] == pytest.approx(2 / 3)
    assert results["negative_accuracy"] == pytest.approx(1 / 3)
    assert results["weighted_accuracy"] == pytest.approx(0.5)
    assert (results["num_positives"], results["num_negatives"], results["num_unparsed"]) == (3, 3, 1)
    assert results["note"] == ""


def test_recognition_weights_positives_and_negatives_equally(recognition):
    # 1 positive right, 9 negatives of which 3 right: plain accuracy 0.4, weighted 0.5 * 1 + 0.5 * 1/3
    results = recognition.compute(predictions=["yes"] + ["no"] * 3 + ["yes"] * 6, references=[True] + [False] * 9)
    assert results["weighted_accuracy"] == pytest.approx(0.5 + 0.5 / 3)


def test_recognition_reads_only_the_first_word(recognition):
    predictions = ["YES!", "yes it is <bo>", "The answer is yes", "Yeah", "", "  no  ", "No, it is not.", "Not really"]
    references = [True, True, True, True, True, False, False, False]
    results = recognition.compute(predictions=predictions, references=references)
    assert results["positive_accuracy"] == pytest.approx(2 / 5)
    assert results["negative_accuracy"] == pytest.approx(2 / 3)
    assert results["num_unparsed"] == 4  # "The answer is yes", "Yeah", "", "Not really"


def test_recognition_all_right_and_all_wrong(recognition):
    references = [True, False, True, False]
    right = recognition.compute(predictions=["Yes", "No", "yes.", "no"], references=references)
    wrong = recognition.compute(predictions=["No", "Yes", "no", "yes"], references=references)
    assert (right["positive_accuracy"], right["negative_accuracy"], right["weighted_accuracy"]) == (1.0, 1.0, 1.0)
    assert (wrong["positive_accuracy"], wrong["negative_accuracy"], wrong["weighted_accuracy"]) == (0.0, 0.0, 0.0)


def test_recognition_empty_answers_are_wrong_for_both(recognition):
    results = recognition.compute(predictions=["", ""], references=[True, False])
    assert results["weighted_accuracy"] == 0.0
    assert results["num_unparsed"] == 2


def test_recognition_without_examples_says_so(recognition):
    results = recognition.compute(predictions=[], references=[])
    assert results["positive_accuracy"] is None and results["negative_accuracy"] is None
    assert results["weighted_accuracy"] is None
    assert "no positive and no negative examples" in results["note"]


def test_recognition_without_negatives_or_positives_is_undefined_not_nan(recognition):
    only_positives = recognition.compute(predictions=["yes", "no"], references=[True, True])
    assert only_positives["positive_accuracy"] == 0.5
    assert only_positives["negative_accuracy"] is None and only_positives["weighted_accuracy"] is None
    assert "no negative examples" in only_positives["note"]
    only_negatives = recognition.compute(predictions=["no"], references=[False])
    assert only_negatives["negative_accuracy"] == 1.0 and only_negatives["positive_accuracy"] is None
    assert "no positive examples" in only_negatives["note"]


def test_recognition_per_group_and_macro_average(recognition):
    results = recognition.compute(
        predictions=["yes", "no", "yes", "yes", "no", "no"],
        references=[True, False, True, False, True, False],
        groups=["<bo>", "<bo>", "<mia>", "<mia>", "<kiki>", "<kiki>"],
    )
    per_group = results["per_group"]
    assert per_group["<bo>"]["weighted_accuracy"] == 1.0
    assert (per_group["<mia>"]["positive_accuracy"], per_group["<mia>"]["negative_accuracy"]) == (1.0, 0.0)
    assert (per_group["<kiki>"]["positive_accuracy"], per_group["<kiki>"]["negative_accuracy"]) == (0.0, 1.0)
    # a tie: <mia> and <kiki> fail on opposite sides and score the same
    assert per_group["<mia>"]["weighted_accuracy"] == per_group["<kiki>"]["weighted_accuracy"] == 0.5
    assert results["macro_weighted_accuracy"] == pytest.approx((1.0 + 0.5 + 0.5) / 3)
    assert results["weighted_accuracy"] == pytest.approx(0.5 * 2 / 3 + 0.5 * 2 / 3)


def test_recognition_macro_average_skips_undefined_groups(recognition):
    results = recognition.compute(
        predictions=["yes", "no", "yes"], references=[True, False, True], groups=["<bo>", "<bo>", "<mia>"]
    )
    assert results["per_group"]["<mia>"]["weighted_accuracy"] is None
    assert results["macro_weighted_accuracy"] == 1.0


def test_recognition_rejects_groups_of_the_wrong_length(recognition):
    with pytest.raises(ValueError, match="one group name per prediction"):
        recognition.compute(predictions=["yes", "no"], references=[True, False], groups=["<bo>"])


# -------------------------------------------------------------------------------------- option_match


def test_option_match_reads_letters_and_texts(option_match):
    options = [["Cat", "Dog"]] * 9
    predictions = ["B", "(b)", "B.", "b)", "B: Dog", "(B) dog", "the dog.", "A dog", "DOG!"]
    results = option_match.compute(predictions=predictions, references=["Dog"] * 9, options=options)
    assert results["accuracy"] == 1.0
    assert (results["num_examples"], results["num_correct"], results["num_unmatched"]) == (9, 9, 0)


def test_option_match_all_wrong_and_unmatched(option_match):
    options = [["Cat", "Dog"]] * 7
    # "A", "Cat": the wrong option; "C": out of range; "(A) Dog": letter and text disagree;
    # "Dog or cat": names both; "": empty; "Horse": neither
    predictions = ["A", "Cat", "C", "(A) Dog", "Dog or cat", "", "Horse"]
    results = option_match.compute(predictions=predictions, references=["Dog"] * 7, options=options)
    assert results["accuracy"] == 0.0
    assert results["num_unmatched"] == 5


def test_option_match_without_options_compares_text_only(option_match):
    results = option_match.compute(predictions=["The Dog", "A", "cat"], references=["dog", "Dog", "Dog"])
    assert results["accuracy"] == pytest.approx(1 / 3)
    assert results["num_unmatched"] == 0


def test_option_match_equal_options_are_one_answer(option_match):
    # Yo'LLaVA's text-only file offers {"A": "No", "B": "No"} twice
    results = option_match.compute(
        predictions=["A", "B", "no", "yes"], references=["No"] * 4, options=[["No", "No"]] * 4
    )
    assert results["accuracy"] == 0.75
    assert results["num_unmatched"] == 1


def test_option_match_empty_predictions(option_match):
    empty = option_match.compute(predictions=[], references=[])
    assert empty["accuracy"] is None and empty["num_examples"] == 0
    assert "no examples" in empty["note"]
    blank = option_match.compute(predictions=["", " "], references=["Dog", "Cat"], options=[["Dog", "Cat"]] * 2)
    assert blank["accuracy"] == 0.0 and blank["num_unmatched"] == 2


def test_option_match_per_group(option_match):
    results = option_match.compute(
        predictions=["A", "B", "A", "A"],
        references=["Red", "Blue", "Blue", "Red"],
        options=[["Red", "Blue"], ["Red", "Blue"], ["Red", "Blue"], ["Blue", "Red"]],
        groups=["single", "single", "multi", "multi"],
    )
    assert results["per_group"]["single"]["accuracy"] == 1.0
    assert results["per_group"]["multi"]["accuracy"] == 0.0
    assert results["accuracy"] == 0.5


def test_option_match_rejects_a_reference_outside_its_options(option_match):
    with pytest.raises(ValueError, match="not one of its options"):
        option_match.compute(predictions=["A"], references=["Horse"], options=[["Cat", "Dog"]])


def test_option_match_rejects_options_of_the_wrong_length(option_match):
    with pytest.raises(ValueError, match="one entry of `options` per prediction"):
        option_match.compute(predictions=["A", "B"], references=["Cat", "Dog"], options=[["Cat", "Dog"]])


# ------------------------------------------------------------------------------------ caption_recall


def test_caption_recall_known_values(caption_recall):
    results = caption_recall.compute(
        predictions=[
            "<bo> and <mia> on a sofa.",  # both, with brackets
            "Bo naps while mia's toy lies nearby.",  # both, bare, any case, possessive
            "A dog on a boat near Kiki.",  # "boat" is not "bo": 1 of 3
            "An empty room.",  # none
        ],
        references=[["<bo>", "<mia>"], ["bo", "<mia>"], ["<bo>", "<mia>", "<kiki>"], ["<bo>"]],
    )
    assert results["per_caption"] == pytest.approx([1.0, 1.0, 1 / 3, 0.0])
    assert results["recall"] == pytest.approx((1.0 + 1.0 + 1 / 3 + 0.0) / 4)
    assert (results["num_captions"], results["num_without_names"]) == (4, 0)


def test_caption_recall_all_right_and_all_wrong(caption_recall):
    references = [["<bo>"], ["<bo>", "<mia>"]]
    assert caption_recall.compute(predictions=["<bo>.", "mia, bo"], references=references)["recall"] == 1.0
    assert caption_recall.compute(predictions=["a dog", "two dogs"], references=references)["recall"] == 0.0


def test_caption_recall_empty(caption_recall):
    empty = caption_recall.compute(predictions=[], references=[])
    assert empty["recall"] is None and empty["per_caption"] == []
    assert "recall is undefined" in empty["note"]
    blank = caption_recall.compute(predictions=[""], references=[["<bo>"]])
    assert blank["recall"] == 0.0


def test_caption_recall_skips_captions_without_names(caption_recall):
    results = caption_recall.compute(predictions=["<bo> sleeps", "a street"], references=[["<bo>"], []])
    assert results["per_caption"] == [1.0, None]
    assert results["recall"] == 1.0 and results["num_without_names"] == 1


def test_caption_recall_per_group(caption_recall):
    results = caption_recall.compute(
        predictions=["<bo>", "<bo> and a cat", "<bo> and <mia>"],
        references=[["<bo>"], ["<bo>", "<mia>"], ["<bo>", "<mia>"]],
        groups=["single", "multi", "multi"],
    )
    assert results["per_group"]["single"]["recall"] == 1.0
    assert results["per_group"]["multi"]["recall"] == pytest.approx(0.75)


# --------------------------------------------------------------------------------- mean_and_interval


@pytest.mark.parametrize(
    "degrees_of_freedom, quantile",
    # two-sided 95 % critical values of Student's t, from any statistics table
    [(1, 12.7062), (2, 4.3027), (4, 2.7764), (9, 2.2622), (29, 2.0452), (1000, 1.9623)],
)
def test_student_t_quantile_matches_the_table(degrees_of_freedom, quantile):
    assert student_t_quantile(0.975, degrees_of_freedom) == pytest.approx(quantile, abs=1e-4)


def test_mean_and_interval_over_three_seeds():
    mean, low, high = mean_and_interval([1.0, 2.0, 3.0])
    half_width = 4.302653 * 1.0 / math.sqrt(3)  # t(0.975, 2) * s / sqrt(n), s = 1
    assert mean == 2.0
    assert low == pytest.approx(2.0 - half_width, abs=1e-5)
    assert high == pytest.approx(2.0 + half_width, abs=1e-5)


def test_mean_and_interval_one_seed_has_no_bounds():
    assert mean_and_interval([0.7]) == (0.7, None, None)


def test_mean_and_interval_of_equal_values_has_zero_width():
    assert mean_and_interval([0.5, 0.5, 0.5]) == (0.5, 0.5, 0.5)


def test_mean_and_interval_rejects_empty_and_nan():
    with pytest.raises(ValueError, match="at least one value"):
        mean_and_interval([])
    with pytest.raises(ValueError, match="NaN"):
        mean_and_interval([0.5, float("nan")])


# ------------------------------------------------------------------------------------ word_f1


def test_word_f1_known_values():
    word_f1 = load_metric("word_f1", keep_in_memory=True)
    results = word_f1.compute(
        predictions=["A red mug.", "a red round mug", "a dog", "", ""],
        references=["the red mug", "a red mug with dots", "a cat", "", "a cat"],
    )
    # "red round mug" vs "red mug with dots": 2 shared, precision 2/3, recall 2/4 -> F1 4/7
    assert results["per_answer"] == pytest.approx([1.0, 4 / 7, 0.0, 1.0, 0.0])
    assert results["f1"] == pytest.approx((1.0 + 4 / 7 + 0.0 + 1.0 + 0.0) / 5)
    assert results["num_answers"] == 5
