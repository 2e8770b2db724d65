"""The cost benchmark's many-concepts helpers (icpt/evaluation/costs/concepts.py): a bank of any size made from a few
encoded concepts, and the world the recall is measured on."""

import json

import torch

from icpt.evaluation.costs.concepts import retrieval_world, sized_bank
from modeling_icpt import ConceptBank


def small_bank() -> ConceptBank:
    torch.manual_seed(0)
    keys = torch.nn.functional.normalize(torch.randn(3, 8), dim=-1).half()
    return ConceptBank(["<a>", "<b>", "<c>"], torch.randn(3, 4, 8), torch.tensor([4, 2, 3]), torch.rand(3),
                       torch.randn(3, 8), "some/backbone", "f" * 16, keys)


def test_a_sized_bank_repeats_the_concepts_rows_under_new_labels():
    bank = small_bank()
    big = ConceptBank(**sized_bank(bank, 7, seed=1))
    assert big.labels == ["<a>", "<b>", "<c>", "<s0>", "<s1>", "<s2>", "<s3>"]
    assert torch.equal(big.prompts[3], bank.prompts[0]) and torch.equal(big.prompts[5], bank.prompts[2])
    assert [big.lengths[label] for label in ("<s0>", "<s1>", "<s2>")] == [4, 2, 3]
    assert torch.equal(big.keys[:3], bank.keys) and big.keys.dtype == bank.keys.dtype
    assert torch.allclose(big.keys.float().norm(dim=-1), torch.ones(7), atol=1e-2)  # made-up keys are unit vectors
    assert big.backbone_fingerprint == bank.backbone_fingerprint
    assert torch.equal(ConceptBank(**sized_bank(bank, 7, seed=1)).keys, big.keys)  # the same for the same seed
    assert ConceptBank(**sized_bank(bank, 2)).labels == ["<a>", "<b>"]


def test_recall_uses_the_backbone_s_own_world_when_its_folder_records_one(tmp_path):
    (tmp_path / "world.json").write_text(json.dumps({"seed": 3, "num_identities": 70}))
    world, source = retrieval_world(tmp_path)
    assert (world.seed, len(world.identities)) == (3, 70) and "the backbone's own world" in source
    world, source = retrieval_world(None)
    assert source.startswith("World(seed=0, num_identities=200)")
    assert retrieval_world(tmp_path / "elsewhere")[1] == source
