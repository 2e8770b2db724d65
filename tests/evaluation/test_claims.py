"""The claims' verdicts (icpt/evaluation/claims.py) on hand-made numbers, shaped as results.json holds them."""

from icpt.evaluation.claims import MATCH_MARGIN, claims

METRIC = "recognition_weighted"


def difference(value, low, high, verdict, p_value=0.5):
    """A paired difference to `icpt` on weighted recognition, over every question."""
    return {"all": {METRIC: {"difference": value, "low": low, "high": high, "p_value": p_value, "verdict": verdict}}}


def tokens(mean, low, high):
    return {"mean": mean, "min": low, "max": high, "n": 10}


def results(raw_minus_icpt, fixed=None, **extra):
    methods = {
        "icpt": {"status": "ok", "prompt_tokens_per_concept": tokens(4.0, 2, 8), "difference": {}, "reader_lora_rank": 0},
        "raw_references": {"status": "ok", "prompt_tokens_per_concept": tokens(64.0, 64, 64),
                           "difference": difference(*raw_minus_icpt)},
    }
    if fixed is not None:
        methods["icpt_fixed_length"] = {"status": "ok", "reader_lora_rank": 0, "difference": difference(*fixed)}
    return {"methods": methods, **extra}


def verdicts(found):
    return {entry["claim"]: entry["verdict"] for entry in found}


def test_matching_raw_references_within_the_margin():
    # raw − icpt = +0.01 [−0.02, +0.03]: icpt at most 0.03 below, within the margin
    (match, *_) = claims(results((0.01, -0.02, 0.03, "same")))
    assert match["verdict"] == "supported" and f"at most {MATCH_MARGIN:.2f} below" in match["evidence"]
    assert "4.0 against 64.0 prompt tokens per concept" in match["evidence"]
    # raw − icpt = +0.20 [+0.10, +0.30]: icpt clearly below the photos
    (match, *_) = claims(results((0.20, 0.10, 0.30, "better")))
    assert match["verdict"] == "refuted" and "ICPT is below the photos in context" in match["evidence"]
    # raw − icpt = +0.05 [−0.01, +0.11]: possibly more than the margin below, possibly not below at all
    (match, *_) = claims(results((0.05, -0.01, 0.11, "same")))
    assert match["verdict"] == "cannot decide"


def test_an_ablation_helps_when_switching_it_off_is_significantly_worse():
    found = verdicts(claims(results((0.0, -0.01, 0.01, "same"), fixed=(-0.10, -0.15, -0.05, "worse", 0.001))))
    assert found["Adaptive prompt length (by visual complexity) helps"] == "supported"
    found = verdicts(claims(results((0.0, -0.01, 0.01, "same"), fixed=(0.10, 0.05, 0.15, "better", 0.001))))
    assert found["Adaptive prompt length (by visual complexity) helps"] == "refuted"
    found = claims(results((0.0, -0.01, 0.01, "same"), fixed=(0.01, -0.02, 0.04, "same")))
    assert found[1]["verdict"] == "cannot decide" and "no detectable difference" in found[1]["evidence"]


def test_ablations_that_did_not_run_cannot_decide():
    found = claims(results((0.0, -0.01, 0.01, "same")))
    assert [entry["verdict"] for entry in found] == ["supported", "cannot decide", "cannot decide", "cannot decide"]
    assert "icpt_no_decoupling did not run" in found[2]["evidence"]
    assert "icpt_no_separation did not run" in found[3]["evidence"]
    failed = {"methods": {"icpt": {"status": "failed"}}}
    assert [entry["verdict"] for entry in claims(failed)] == ["cannot decide"] * 4


def test_the_swap_test_against_its_target():
    def swap(low, high):
        changed = {"mean": (low + high) / 2, "low": low, "high": high, "n": 20}
        return {"target": 0.5, "methods": {"icpt": {"changed": changed, "yes_before": {"mean": 0.9},
                                                      "yes_after": {"mean": 0.3}}}}

    for (low, high), verdict in (((0.6, 0.9), "supported"), ((0.1, 0.4), "refuted"), ((0.3, 0.7), "cannot decide")):
        last = claims(results((0.0, -0.01, 0.01, "same"), swap_test=swap(low, high)))[-1]
        assert last["claim"].startswith("A concept's rows carry its identity: swapping its photos changes at least 50%")
        assert last["verdict"] == verdict and "of 20 positive answers" in last["evidence"]


def test_a_part_the_method_is_shipped_without_is_judged_by_its_with_row():
    # icpt trained without L_sep: icpt_with_separation switches it on; better with it = the part helps
    def with_separation(value, low, high, verdict):
        base = results((0.0, -0.01, 0.01, "same"))
        base["methods"]["icpt_with_separation"] = {
            "status": "ok", "reader_lora_rank": 0,
            "difference": {"look_alike": {METRIC: {"difference": value, "low": low, "high": high, "p_value": 0.01,
                                                   "verdict": verdict}}}}
        return {entry["claim"]: entry for entry in claims(base)}["Concept separation (L_sep) helps on look-alikes"]

    helps = with_separation(0.10, 0.05, 0.15, "better")
    assert helps["verdict"] == "supported" and "icpt_with_separation − icpt on look alike" in helps["evidence"]
    assert with_separation(-0.10, -0.15, -0.05, "worse")["verdict"] == "refuted"
    assert with_separation(0.01, -0.03, 0.05, "same")["verdict"] == "cannot decide"


def test_a_frozen_reader_run_without_icpt_claims_nothing_about_the_adapter():
    # `icpt eval --methods icpt_frozen_reader` (a diagnostic run of one frozen-reader projector) must not fail at the
    # claims after answering every question: without `icpt` there is no reader adapter to judge
    methods = {"icpt_frozen_reader": {"status": "ok", "reader_lora_rank": 0, "difference": {}}}
    found = claims({"methods": methods})
    assert [entry["verdict"] for entry in found] == ["cannot decide"] * 4
    assert not any("reader adapter" in entry["claim"] for entry in found)
