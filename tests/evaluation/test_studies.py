"""The studies of what a concept's rows carry (icpt.evaluation.studies), on the embedded default."""

import pytest
import torch

from icpt.commands.arguments import ArgumentParser
from icpt.evaluation.studies import (
    READINGS,
    HeldOutIdentitiesArguments,
    PerIdentityRowsArguments,
    PooledTokensArguments,
    ReferenceSensitivityArguments,
    held_out_identities,
    per_identity_rows,
    pooled_image_tokens,
    pooled_rows,
    reference_sensitivity,
)
from icpt.inference import DEFAULT_MODEL


def test_pooled_rows_average_photos_then_grid_cells():
    tokens = torch.arange(2 * 16 * 3, dtype=torch.float).reshape(2, 16, 3)  # 2 photos, a 4 x 4 grid, width 3
    mean = tokens.mean(0)
    torch.testing.assert_close(pooled_rows(tokens, 1), mean.mean(0, keepdim=True))
    four = pooled_rows(tokens, 4)
    torch.testing.assert_close(four[0], mean[[0, 1, 4, 5]].mean(0))  # the top-left 2 x 2 cell
    torch.testing.assert_close(pooled_rows(tokens, 16), mean)


def test_pooled_rows_per_reference_keep_one_block_per_photo():
    tokens = torch.arange(2 * 16 * 3, dtype=torch.float).reshape(2, 16, 3)  # 2 photos, a 4 x 4 grid, width 3
    one = pooled_rows(tokens, 1, "per-reference")
    torch.testing.assert_close(one, tokens.mean(1))  # one row per photo, not their average
    four = pooled_rows(tokens, 4, "per-reference")
    assert four.shape == (8, 3)
    torch.testing.assert_close(four[4], tokens[1, [0, 1, 4, 5]].mean(0))  # the second photo's top-left cell
    torch.testing.assert_close(pooled_rows(tokens, 16, "per-reference"), tokens.reshape(32, 3))


def test_pooled_image_tokens_runs_on_the_embedded_default(capsys):
    assert pooled_image_tokens(PooledTokensArguments(episodes=2, rows=[1, 4])) == 0
    printed = capsys.readouterr().out
    assert printed.count("pooled rows per concept: weighted") == 2 and "2 held-out recognition episodes" in printed
    assert "every concept of the episode" in printed


def test_pooled_image_tokens_per_reference_target_only_without_look_alikes(capsys):
    assert pooled_image_tokens(PooledTokensArguments(episodes=6, rows=[4], layout="per-reference", target_only=True,
                                                     skip_look_alikes=True)) == 0
    printed = capsys.readouterr().out
    kept = int(printed.split(" held-out recognition episodes")[0].split()[-1])
    assert kept == 4  # the 6 episodes drawn with the default seed hold 2 look-alike ones
    assert "the asked concept only" in printed and "pooled rows per reference photo: weighted" in printed


def test_per_identity_rows_runs_on_the_embedded_default(capsys):
    for relabel in (False, True):
        weighted = per_identity_rows(PerIdentityRowsArguments(rows=2, steps=2, identities=3, train_scenes=2,
                                                              test_scenes=1, relabel=relabel))
        printed = capsys.readouterr().out
        assert list(weighted) == list(READINGS)
        for reading, value in weighted.items():
            assert min(abs(6 * value - k) for k in range(7)) < 1e-9  # 3 identities x one scene with, one without
            assert f"read under {reading}: weighted {value:.3f}" in printed
        fitted = "under a new label each step" if relabel else "under <w1>"
        assert f"2 rows trained per identity (2 steps on 4 scenes, {fitted})" in printed and "training loss" in printed
    with pytest.raises(ValueError, match="--identities must be at least 3"):
        per_identity_rows(PerIdentityRowsArguments(identities=2))


def test_held_out_identities_runs_on_the_embedded_default(capsys):
    results = held_out_identities(HeldOutIdentitiesArguments(identities=2, scenes=1, episodes=2))
    printed = capsys.readouterr().out
    score = results[str(DEFAULT_MODEL)]
    assert score["identity_protocol"] in (0.0, 0.25, 0.5, 0.75, 1.0)  # 2 identities x one scene with, one without
    assert f"identity protocol {score['identity_protocol']:.3f}" in printed and "2 identities x 2 scenes" in printed
    assert "2 episodes" in printed
    with pytest.raises(ValueError, match="--identities must lie in"):
        held_out_identities(HeldOutIdentitiesArguments(identities=0, episodes=0))


def test_reference_sensitivity_runs_on_the_embedded_default(capsys):
    unchanged = reference_sensitivity(ReferenceSensitivityArguments(episodes=3))
    printed = capsys.readouterr().out
    assert 0 <= unchanged <= 3 and f"{unchanged}/3 recognition answers unchanged" in printed
    assert "with own photos" in printed and "with swapped photos" in printed
    reference_sensitivity(ReferenceSensitivityArguments(episodes=2, task="attribute"))
    assert "exact-match attribute accuracy with own photos" in capsys.readouterr().out
    with pytest.raises(ValueError, match="at least 2 episodes"):
        reference_sensitivity(ReferenceSensitivityArguments(episodes=1))


@pytest.mark.parametrize("arguments, line, expected", [
    (PooledTokensArguments, "--episodes 60 --rows 1 4 16 64", {"episodes": 60, "rows": [1, 4, 16, 64]}),
    (PooledTokensArguments, "--episodes 150 --layout per-reference --target-only --skip-look-alikes",
     {"layout": "per-reference", "target_only": True, "skip_look_alikes": True}),
    (PooledTokensArguments, "--projector p --backbone b --task attribute --rows 4 16 --episodes 60",
     {"projector": "p", "backbone": "b", "task": "attribute", "rows": [4, 16]}),
    (PerIdentityRowsArguments, "--rows 8 --steps 60 --identities 8 --relabel",
     {"rows": 8, "steps": 60, "identities": 8, "relabel": True}),
    (PerIdentityRowsArguments, "--train-scenes 2 --test-scenes 1 --seed 3", {"train_scenes": 2, "test_scenes": 1}),
    (HeldOutIdentitiesArguments, "--projector icpt/default/projector icpt/default/ablations/icpt_no_identity_targets "
     "--episodes 0", {"projector": ["icpt/default/projector", "icpt/default/ablations/icpt_no_identity_targets"],
                      "episodes": 0}),
    (ReferenceSensitivityArguments, "--projector icpt/default/ablations/icpt_no_identity_targets --task attribute",
     {"projector": "icpt/default/ablations/icpt_no_identity_targets", "task": "attribute"}),
])
def test_the_documented_command_lines_parse(arguments, line, expected):
    (args,) = ArgumentParser(arguments).parse(line.split())
    assert {name: getattr(args, name) for name in expected} == expected
    with pytest.raises(SystemExit):
        ArgumentParser(arguments).parse(line.split() + ["--no-such-option"])
