"""The methods (icpt/evaluation/methods.py): the reference photos each evaluation episode draws, and how a question
with options is answered."""

import dataclasses

import pytest
import torch
from datasets import load_from_disk
from transformers import AutoModelForImageTextToText

from helpers.evaluation import TINY, concept_dataset, world_dataset
from icpt.inference import option_log_likelihoods
from icpt.evaluation.methods import BackboneContext, ICPTMethod, NameOnlyMethod, eval_episodes
from modeling_icpt import ICPTForConditionalGeneration
from processing_icpt import ICPTProcessor


def test_reference_draws_depend_on_the_seed_and_the_concept_only():
    dataset = concept_dataset()
    capped = eval_episodes(dataset, num_references=2, seed=0)
    assert all(c.num_references == 2 for e in capped for c in e.concepts)
    # the same concept in three episodes keeps the same two references, so it is added once per seed
    assert len({e.concepts[0].key for e in capped}) == 1
    assert [c.key for e in eval_episodes(dataset, 2, seed=0) for c in e.concepts] == [c.key for e in capped for c in e.concepts]
    draws = {eval_episodes(dataset, 2, seed=s)[0].concepts[0].key for s in range(6)}
    assert len(draws) > 1
    assert all(c.num_references == 4 for e in eval_episodes(dataset) for c in e.concepts)
    with pytest.raises(ValueError, match="at least 1"):
        eval_episodes(dataset, num_references=0)


def test_a_question_with_options_gets_the_option_the_model_finds_most_likely(tiny_llava, tmp_path):
    vlm = AutoModelForImageTextToText.from_pretrained(tiny_llava).eval()
    processor = ICPTProcessor.from_backbone(tiny_llava)
    torch.manual_seed(0)
    model = ICPTForConditionalGeneration.from_backbone(str(tiny_llava), prompt_token_id=processor.prompt_token_id,
                                                       **TINY).eval()
    context = BackboneContext(vlm, processor, model)
    tokenizer = processor.tokenizer
    # options of one token each: their log-likelihoods are the prompt's next-token log-probabilities
    words = (tokenizer.decode([i]).strip() for i in range(len(tokenizer)))
    options = [w for w in words if w.isalpha() and tokenizer(w, add_special_tokens=False)["input_ids"]
               == [tokenizer.convert_tokens_to_ids(w)]][:2]
    assert len(options) == 2
    episodes = [e for e in eval_episodes(load_from_disk(str(world_dataset(tmp_path / "episodes"))))
                if e.task in ("vqa", "text_qa")]
    assert {e.task for e in episodes} == {"vqa", "text_qa"}
    for episode in episodes:
        episode = dataclasses.replace(episode, options=options, answer=options[0])
        for method in (NameOnlyMethod(context), ICPTMethod(context, model)):
            method.begin_seed(0)
            calls = []
            original = context.respond

            def spy(model_, inputs, episode_, **kwargs):
                calls.append((model_, inputs, kwargs))
                return original(model_, inputs, episode_, **kwargs)

            context.respond = spy
            answer = method.answer(episode)
            del context.respond
            (used, inputs, kwargs), = calls
            with torch.no_grad():
                next_token = used(**inputs, **kwargs).logits[0, -1].float().log_softmax(-1)
            ids = [tokenizer(option, add_special_tokens=False)["input_ids"][0] for option in options]
            expected = next_token[ids]
            torch.testing.assert_close(option_log_likelihoods(used, tokenizer, inputs, options, **kwargs), expected)
            assert answer == options[int(expected.argmax())]
