"""The cost benchmark's inputs and probes (icpt/evaluation/costs/measure.py): the photos of held-out identities, the
median timer, bytes of tensors, and the peak of what a call allocates on the CPU."""

import torch

from icpt.evaluation.costs.measure import concept_photos, median_seconds, tensor_bytes, transient_peak


def test_concept_photos_are_reproducible_and_sized():
    references, query = concept_photos(3, 2, 32, seed=0)
    assert list(references) == ["<c0>", "<c1>", "<c2>"]
    assert all(len(photos) == 2 and all(p.size == (32, 32) for p in photos) for photos in references.values())
    assert query.size == (32, 32)
    again, _ = concept_photos(3, 2, 32, seed=0)
    assert again["<c1>"][0].tobytes() == references["<c1>"][0].tobytes()


def test_tensor_bytes_and_the_median_timer():
    assert tensor_bytes([torch.zeros(10, dtype=torch.float32), torch.zeros(3, 2, dtype=torch.bfloat16)]) == 40 + 12
    calls = []
    seconds = median_seconds(lambda: calls.append(1), 5, torch.device("cpu"))
    assert len(calls) == 5 and 0 <= seconds < 1


def test_the_cpu_peak_counts_what_the_call_allocates():
    cpu = torch.device("cpu")
    small = transient_peak(lambda: torch.ones(1_000), cpu)
    large = transient_peak(lambda: torch.ones(4_000_000), cpu)  # 16 MB
    assert large >= 16_000_000 > small
