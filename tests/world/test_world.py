"""The generated world (icpt/world/world.py): determinism, splits, look-alikes, masks, occluders."""

import numpy as np
import pytest
from scipy.ndimage import binary_dilation

from icpt.world.tasks import build_episodes
from icpt.world.world import ATTRIBUTES, LOOK_ALIKE_DETAILS, World


def test_same_seed_gives_same_world_and_pixels():
    first, second = World(seed=7, num_identities=60), World(seed=7, num_identities=60)
    assert first.identities == second.identities
    assert first.split("held_out") == second.split("held_out")
    assert [env.name for env in first.environment_set("B")] == [env.name for env in second.environment_set("B")]
    for environment in first.environments:
        image_a, masks_a = first.render([1, 2, 3], environment.name, np.random.default_rng(11))
        image_b, masks_b = second.render([1, 2, 3], environment.name, np.random.default_rng(11))
        np.testing.assert_array_equal(np.asarray(image_a), np.asarray(image_b))
        for identity_id in masks_a:
            np.testing.assert_array_equal(masks_a[identity_id], masks_b[identity_id])
    episodes_a = build_episodes(first, "train", num_episodes=6, seed=2)
    episodes_b = build_episodes(second, "train", num_episodes=6, seed=2)
    assert episodes_a.to_dict() == episodes_b.to_dict()


def test_another_seed_gives_another_world():
    assert World(seed=0, num_identities=60).identities != World(seed=1, num_identities=60).identities


def test_identity_and_environment_splits_are_disjoint(world):
    train, held_out = set(world.split("train")), set(world.split("held_out"))
    assert train and held_out and not train & held_out
    assert train | held_out == set(range(len(world.identities)))
    assert abs(len(held_out) - 0.2 * len(world.identities)) <= 1
    for a, b in world.look_alike_pairs:  # a pair is never split across training and held-out
        assert (a in held_out) == (b in held_out)
    set_a, set_b = world.environment_set("A"), world.environment_set("B")
    assert set_a and set_b and not {e.name for e in set_a} & {e.name for e in set_b}
    for kind in ("photo", "texture"):  # both sets hold photos and textures
        assert any(e.kind == kind for e in set_a) and any(e.kind == kind for e in set_b)


def test_identities_are_unique_and_look_alikes_differ_in_exactly_one_detail(world):
    attribute_sets = [tuple(identity.attributes.values()) for identity in world.identities]
    assert len(set(attribute_sets)) == len(attribute_sets)
    assert len(world.look_alike_pairs) == int(0.3 * len(world.identities)) // 2
    for a, b in world.look_alike_pairs:
        first, second = world.identities[a].attributes, world.identities[b].attributes
        differing = [name for name in ATTRIBUTES if first[name] != second[name]]
        assert len(differing) == 1 and differing[0] in LOOK_ALIKE_DETAILS
        assert world.identities[a].description != world.identities[b].description
        assert world.look_alike_of[a] == b and world.look_alike_of[b] == a


def test_extra_training_identities_keep_the_splits_and_stay_away_from_held_out_identities():
    # Many held-out identities, so that about one random identity in seven is within one detail of
    # one of them: the check below fails if extras are not kept away from them.
    kwargs = dict(seed=5, num_identities=5000, held_out_fraction=0.8)
    base = World(**kwargs)
    extended = World(**kwargs, extra_training_identities=300)
    assert extended.identities[:5000] == base.identities
    assert extended.split("held_out") == base.split("held_out")
    assert extended.split("train") == base.split("train") + list(range(5000, 5300))
    keys = [tuple(identity.attributes.values()) for identity in extended.identities]
    assert len(set(keys)) == len(keys)
    held_out = np.array([keys[i] for i in base.split("held_out")])
    for i in range(5000, 5300):
        assert (held_out != np.array(keys[i])).sum(axis=1).min() >= 2, f"extra identity {i} is near a held-out one"
    extra_pairs = [pair for pair in extended.look_alike_pairs if pair[0] >= 5000]
    assert len(extra_pairs) == 150 and extended.look_alike_pairs[: len(base.look_alike_pairs)] == base.look_alike_pairs
    for a, b in extra_pairs:
        first, second = extended.identities[a].attributes, extended.identities[b].attributes
        differing = [name for name in ATTRIBUTES if first[name] != second[name]]
        assert len(differing) == 1 and differing[0] in LOOK_ALIKE_DETAILS
        assert extended.look_alike_of[a] == b
    with pytest.raises(ValueError, match="extra_training_identities must be 0 or more"):
        World(seed=5, num_identities=20, extra_training_identities=-2)


def test_masks_cover_exactly_the_object(world):
    for seed in range(12):
        environment = world.environments[seed % len(world.environments)]
        identity_ids = [seed, seed + 20, seed + 40][: 1 + seed % 3]
        image, masks = world.render(
            identity_ids, environment, np.random.default_rng(seed), num_distractors=0, occlusion=False
        )
        empty, no_masks = world.render(
            [], environment, np.random.default_rng(seed), num_distractors=0, occlusion=False
        )
        assert no_masks == {} and sorted(masks) == sorted(identity_ids)
        change = np.abs(np.asarray(image, np.int16) - np.asarray(empty, np.int16)).max(axis=2)
        union = np.zeros(change.shape, bool)
        for mask in masks.values():
            assert mask.sum() > 40  # a visible object, not a speck
            assert not (union & mask).any()  # masks of different identities do not overlap
            union |= mask
        # What the identities changed lies in their masks, up to the faint anti-aliased rim of thin
        # parts, and almost every masked pixel differs from the empty scene.
        outside = ~binary_dilation(union, iterations=1)
        assert change[outside].max() <= 64
        assert (change[outside] > 16).sum() <= 0.03 * union.sum()
        assert (change[union] > 0).mean() >= 0.9


def test_occluders_hide_part_of_the_object(world):
    hidden_fractions = []
    for seed in range(20):
        environment = world.environments[seed % len(world.environments)]
        full = world.render([seed], environment, np.random.default_rng(seed), num_distractors=0, occlusion=False)[1][
            seed
        ]
        hidden = world.render([seed], environment, np.random.default_rng(seed), num_distractors=0, occlusion=True)[1][
            seed
        ]
        assert not (hidden & ~full).any()
        hidden_fractions.append(1 - hidden.sum() / full.sum())
    assert 0.02 < np.median(hidden_fractions) and max(hidden_fractions) < 0.35  # partial, never most of it
