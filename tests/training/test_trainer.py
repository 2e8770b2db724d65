"""The episode collator and the Trainer's metrics (icpt/training/trainer.py)."""

import torch

from helpers.episodes import make_episodes
from icpt.training.trainer import EpisodeCollator, drawn_prompt_lengths
from modeling_icpt import ICPTForConditionalGeneration


def test_labels_cover_only_the_answer(setup):
    _, processor = setup
    episodes = make_episodes(4)
    batch = EpisodeCollator(processor, 1, 4)([episodes[i] for i in range(4)])
    for b in range(4):
        answer = batch["labels"][b][batch["labels"][b] != -100]
        text = processor.decode(answer)
        assert text.strip().startswith(episodes[b]["answer"]), text
        ids = batch["input_ids"][b]
        assert not (batch["labels"][b][ids == processor.prompt_token_id] != -100).any()
        assert not (batch["labels"][b][batch["attention_mask"][b] == 0] != -100).any()


def test_drawn_lengths_are_deterministic_and_cover_the_range():
    episodes = make_episodes(8)
    draws = [drawn_prompt_lengths(e, 1, 4, seed=0) for e in episodes]
    assert draws == [drawn_prompt_lengths(e, 1, 4, seed=0) for e in episodes]
    values = {v for d in draws for v in d.values()}
    assert values <= {1, 2, 3, 4} and len(values) >= 2


def test_regularizers_are_reported_and_backgrounds_are_used(setup):
    path, processor = setup
    model = ICPTForConditionalGeneration.from_backbone(path, max_prompt_length=4, projector_layers=1)
    episodes = make_episodes(4, masks=True)
    assert "reference_background_pixel_values" not in EpisodeCollator(processor, 1, 4)([episodes[i] for i in range(4)])
    batch = EpisodeCollator(processor, 1, 4, background_views=True)([episodes[i] for i in range(4)])
    assert "reference_background_pixel_values" in batch
    out = model(**batch)
    for name in ("lm_loss", "decoupling_loss", "separation_loss"):
        assert torch.isfinite(getattr(out, name)), name
    config = model.config
    expected = out.lm_loss + config.decoupling_weight * out.decoupling_loss + config.separation_weight * out.separation_loss
    torch.testing.assert_close(out.loss, expected)
    off = ICPTForConditionalGeneration.from_backbone(path, max_prompt_length=4, projector_layers=1,
                                                     decoupling_weight=0.0, separation_weight=0.0)
    out_off = off(**batch)
    torch.testing.assert_close(out_off.loss, out_off.lm_loss)
