"""The cost benchmark's targets and printed table (icpt/evaluation/costs/report.py) on hand-made numbers."""

from icpt.evaluation.costs.report import TARGET_NAMES, TARGETS, check_targets, format_table


def test_every_target_is_named_and_checked_only_where_measured():
    assert set(TARGET_NAMES) == set(TARGETS)
    found = check_targets({"add_concept_speedup": 1500.0, "adaptive_tokens_per_concept": 9.0,
                           "latency_ratio_k1": 1.05, "batched_throughput_ratio": 0.5, "not_a_target": 3.0})
    assert found == {
        "add_concept_speedup": {"measured": 1500.0, "target": ">= 1000", "met": True},
        "adaptive_tokens_per_concept": {"measured": 9.0, "target": "<= 8", "met": False},
        "latency_ratio_k1": {"measured": 1.05, "target": "<= 1.05", "met": True},  # the bound itself is met
        "batched_throughput_ratio": {"measured": 0.5, "target": ">= 0.8", "met": False},
    }


def test_the_table_shows_each_ratio_with_its_target():
    results = {
        "add_concept": {"icpt_seconds": 0.01, "test_time_training_seconds": 20.0, "test_time_training_steps": 30,
                        "concepts_in_one_pass": 16},
        "add_concept_speedup": 2000.0, "add_concept_speedup_in_one_pass": 8000.0,
        "prompt_tokens_per_concept": {"adaptive": 4.0, "fixed": 8.0, "fixed_source": "max_prompt_length of the projector",
                                      "raw_references": 192.0, "raw_references_photos_per_concept": 3,
                                      "test_time_training": 16},
        "adaptive_tokens_per_concept": 4.0,
        "latency_seconds": {"plain_k1": 0.5, "k1": 0.51, "plain_k4": 0.55, "k4": 0.66},
        "latency_ratio_k1": 1.02, "latency_ratio_k4": 1.2,
        "peak_memory_bytes": {"plain": 2**30, "icpt_k4": 2**30 + 2**20},
        "peak_memory_ratio_k4": 1.001,
        "select_seconds_10000": 0.0002,
    }
    table = format_table({"results": results, "targets": check_targets(results)})
    lines = table.splitlines()
    assert lines[0].split("|")[0].strip() == "quantity" and set(lines[1]) <= {"-", "|"}
    row = {line.split("|")[0].strip(): [cell.strip() for cell in line.split("|")[1:]] for line in lines[2:]}
    assert row["speed-up (TTT / ICPT)"] == ["2000.0x", ">= 1000", "yes"]
    assert row["raw references / adaptive"][0] == "48.0x"
    assert row["ratio to plain, k = 1"] == ["1.020", "<= 1.05", "yes"]
    assert row["ratio to plain, k = 4"] == ["1.200", "<= 1.05", "NO"]
    assert row["generate(): plain backbone, question naming 4 (s)"][0] == "0.5500"  # each k has its own baseline
    assert "ratio to plain, k = 16" not in row  # not measured
    assert row["peak memory: plain backbone (MB)"][0] == "1024.0"
    assert row[TARGET_NAMES["select_seconds_10000"]] == ["2.00e-04", "<= 0.001", "yes"]
    assert row["speed-up, 16 concepts in one pass (TTT / ICPT per concept)"][0] == "8000.0x"
