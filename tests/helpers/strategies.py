"""Strategies for the property-based tests (hypothesis) in processing_icpt/test_processing_icpt.py and
modeling_icpt/test_concept_bank.py: whatever a user hands the processor, `encode_concepts`, `generate` or
`ConceptBank.load`, the call either succeeds or raises `ICPTInputError` (the package's own input error, a
`ValueError`) -- never a `TypeError`, `IndexError`, `KeyError`, a bare `ValueError`, ... from deep inside.

Generated inputs: images of odd sizes (1x1, 4000x10, ...) and modes (grayscale, RGBA, 16-bit 'I;16',
32-bit, float, palette, 1-bit, CMYK), numpy arrays of odd shapes and dtypes, missing, unreadable and
truncated files, non-images; empty, very long, unicode, duplicate and non-string labels, labels that
collide with the tokenizer's special tokens; texts whose mentions and image placeholders do not match
the concepts and images given; malformed chat messages; bank files with wrong shapes, dtypes, lengths,
NaN rows, missing tensors or metadata, truncated or garbage bytes. 1,600 examples in all, the same ones
every run (`derandomize=True`), so a failure is reproducible; set `ICPT_HYPOTHESIS_SEARCH=1` to draw new ones."""

import functools
import json
import os

import numpy as np
import torch
from hypothesis import HealthCheck
from hypothesis import strategies as st
from PIL import Image

from modeling_icpt import ICPTInputError

SETTINGS = dict(deadline=None, database=None, derandomize=not os.environ.get("ICPT_HYPOTHESIS_SEARCH"),
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
SIDES = (1, 2, 3, 10, 31, 64, 333, 4000)
MODES = ("RGB", "L", "LA", "RGBA", "P", "1", "I;16", "I", "F", "CMYK")
IMAGE = "<image>"  # the tiny LLaVA's image placeholder


def pil_images():
    def build(size, mode, seed):
        width, height = size
        pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
        image = Image.fromarray(pixels)
        return image.convert(mode) if mode != "I;16" else image.convert("L").convert("I;16")

    sizes = st.tuples(st.sampled_from(SIDES), st.sampled_from(SIDES)).filter(lambda s: s[0] * s[1] <= 40_000)
    return st.builds(build, sizes, st.sampled_from(MODES), st.integers(0, 2**16))


def arrays():
    shapes = st.sampled_from([(5, 7), (5, 7, 3), (5, 7, 4), (5, 7, 1), (5, 7, 2), (0, 4, 3), (4, 0), (1, 1),
                              (3,), (2, 3, 4, 3), (10, 4000), (4000, 10, 3)])
    dtypes = st.sampled_from([np.uint8, np.uint16, np.int32, np.float32, np.float64, np.bool_])

    def build(shape, dtype, fill):
        if fill == "nan":
            return np.full(shape, np.nan, dtype=np.float64)
        if fill == "inf":
            return np.full(shape, np.inf, dtype=np.float32)
        return np.random.default_rng(len(shape)).integers(0, 300, shape).astype(dtype)

    return st.builds(build, shapes, dtypes, st.sampled_from(["random", "random", "nan", "inf"]))


def odd_objects():
    return st.sampled_from([None, 0, 3.5, "", b"\x89PNG", [], {}, object(), torch.zeros(3, 4, 4)])


def mostly(usual, unusual, one_in: int):
    """`unusual` about once in `one_in` draws, else `usual`: most calls then get deep enough to encode."""
    # the middle value, not 0: hypothesis draws the simplest value, 0, far more often than 1 in `one_in`
    return st.integers(0, one_in - 1).flatmap(lambda i: unusual if i == one_in // 2 else usual)


@functools.cache  # strategies are built once: rebuilding them per draw costs more than the calls under test
def images(files):
    return mostly(pil_images(), st.one_of(arrays(), st.sampled_from(files), odd_objects()), 5)


GOOD_LABELS = ["<bo>", "<kiki>", "<my-mug>", "<Ωmega>", "<猫>", "<😀>", "<a_b.c>", "<" + "a" * 5000 + ">"]


@functools.cache
def labels(processor):
    special = sorted(set(processor.tokenizer.all_special_tokens) | set(processor.tokenizer.get_added_vocab()))
    unusual = st.one_of(
        st.sampled_from(special),  # collide with the tokenizer's own tokens, <icpt> included
        st.text(min_size=0, max_size=12),
        st.text(min_size=1, max_size=8).map(lambda t: f"<{t}>"),
        st.sampled_from(["", "<>", "bo", "<bo", "<b o>", "<<bo>>", "<bo>\n", " <bo>"]),
        st.sampled_from([None, 7, ("<bo>",), b"<bo>"]),
    )
    return mostly(st.sampled_from(GOOD_LABELS), unusual, 5)


@st.composite
def image_lists(draw, files):
    count = draw(st.integers(1, 3))
    kind = draw(st.sampled_from(["list", "list", "list", "any length", "not a list"]))
    if kind == "list":
        return draw(st.lists(images(files), min_size=count, max_size=count))
    if kind == "any length":
        return draw(st.lists(images(files), min_size=0, max_size=4))
    return draw(images(files))


@st.composite
def concept_items(draw, processor, files):
    """One concept in the episode format, sometimes with masks (aligned or not), sometimes malformed."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.sampled_from([{"name": "<bo>"}, {"references": []}, "<bo>", None]))
    refs = draw(image_lists(files))
    item = {"name": draw(labels(processor)), "references": refs}
    masks = draw(st.sampled_from(["none", "aligned", "aligned", "any"]))
    if masks == "aligned" and isinstance(refs, list):
        item["masks"] = draw(st.lists(images(files), min_size=len(refs), max_size=len(refs)))
    elif masks == "any":
        item["masks"] = draw(st.one_of(st.none(), st.lists(images(files), max_size=3), odd_objects()))
    return item


@functools.cache
def references(processor, files):
    as_dict = st.dictionaries(labels(processor), image_lists(files), min_size=1, max_size=3)
    as_list = st.lists(concept_items(processor, files), min_size=1, max_size=3)
    unusual = st.one_of(st.just({}), st.just([]), odd_objects())
    return mostly(st.one_of(as_dict, as_list), unusual, 10)


@functools.cache
def sentences(processor):
    special = sorted(set(processor.tokenizer.all_special_tokens) | set(processor.tokenizer.get_added_vocab()))
    usual = st.sampled_from(["Is", "<bo>", "<kiki>", "here?", "next to", "猫 😀", "", "\n"])
    unusual = st.one_of(usual, st.sampled_from(["<mia>", processor.prompt_token]), st.sampled_from(special),
                        st.text(max_size=6))
    sentence = mostly(st.lists(usual, max_size=8), st.lists(unusual, max_size=8), 5).map(" ".join)
    return mostly(sentence, sentence.map(lambda t: t * 300), 8)  # sometimes thousands of tokens


def must_succeed_or_raise_input_error(call):
    try:
        return call()
    except ICPTInputError:
        return None


@st.composite
def conversations(draw, processor, files):
    """A chat (system, user with image parts and text, assistant, ...) and its images; sometimes malformed."""
    if draw(st.integers(0, 4)) == 0:
        part = st.one_of(st.builds(lambda t: {"type": "text", "text": t}, sentences(processor)),
                         st.just({"type": "image"}), st.sampled_from([{"type": "text"}, {"text": 3}, {}, "plain", None]))
        message = st.one_of(
            st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "system", "robot", ""]),
                                   "content": st.one_of(st.lists(part, max_size=3), sentences(processor), st.none())}),
            st.sampled_from([{}, {"role": "user"}, {"content": "hi"}, "hello", None]))
        return draw(st.lists(message, max_size=3)), draw(st.lists(images(files), max_size=2))
    count = draw(st.integers(0, 2))
    user = {"role": "user", "content": [{"type": "image"}] * count
            + [{"type": "text", "text": draw(sentences(processor))}]}
    if draw(st.booleans()):
        user = {"role": "user", "content": draw(sentences(processor))} if count == 0 else user
    turns = [user]
    if draw(st.booleans()):
        turns = [{"role": "system", "content": draw(sentences(processor))}] + turns
    if draw(st.booleans()):
        turns += [{"role": "assistant", "content": [{"type": "text", "text": draw(sentences(processor))}]},
                  {"role": "user", "content": draw(sentences(processor))}]
    return turns, draw(st.lists(images(files), min_size=count, max_size=count))


# ---------------------------------------------------------------- bank files


@st.composite
def bank_files(draw):
    """(tensors, metadata) of a concept bank file, each part sometimes wrong: every kind a bank can be broken."""
    count = draw(mostly(st.integers(1, 3), st.just(0), 8))
    rows, width = draw(mostly(st.integers(1, 5), st.just(0), 8)), draw(mostly(st.sampled_from([4, 8]), st.just(0), 8))
    dtype = draw(mostly(st.sampled_from([torch.float32, torch.float16]), st.sampled_from([torch.int64, torch.bool, torch.uint8]), 8))

    def tensor(shape, kind=dtype):
        values = torch.randn(*shape) * 3
        fill = draw(mostly(st.just("finite"), st.sampled_from(["nan", "inf"]), 16))
        if fill != "finite" and values.numel():
            values.view(-1)[0] = float(fill)
        return values.to(kind) if kind.is_floating_point or fill == "finite" else values.nan_to_num().to(kind)

    def off_by_one(n):
        return draw(mostly(st.just(n), st.integers(0, 4), 16))

    tensors = {
        "prompts": tensor((off_by_one(count), rows, width)),
        "lengths": torch.tensor(draw(st.lists(mostly(st.integers(1, max(rows, 1)), st.integers(-3, 7), 8),
                                              min_size=(n := off_by_one(count)), max_size=n)), dtype=torch.int64),
        "complexity": tensor((off_by_one(count),)),
        "descriptors": tensor((off_by_one(count), off_by_one(width))),
    }
    if draw(st.integers(0, 19)) == 10:
        del tensors[draw(st.sampled_from(sorted(tensors)))]
    if draw(st.integers(0, 19)) == 10:
        tensors["prompts"] = tensor((count, rows))  # a dimension short
    labels = draw(st.lists(mostly(st.sampled_from(GOOD_LABELS[:4]), st.sampled_from(["bo", "", "<a b>"]), 8),
                           min_size=count, max_size=count, unique=True))
    labels = draw(mostly(st.just(json.dumps(labels)), st.sampled_from(
        ["", "not json", "{}", "[1, 2]", json.dumps(["<bo>", "<bo>", "<kiki>"]), "null"]), 6))
    metadata = {"format": draw(mostly(st.just("icpt-concept-bank"), st.sampled_from(["", "something-else"]), 8)),
                "labels": labels, "backbone_fingerprint": draw(st.sampled_from(["", "0123456789abcdef"]))}
    if draw(st.integers(0, 19)) == 10:
        del metadata[draw(st.sampled_from(sorted(metadata)))]
    return {k: v.contiguous() for k, v in tensors.items()}, metadata
