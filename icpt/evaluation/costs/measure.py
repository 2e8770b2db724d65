"""The cost benchmark's inputs (photos of held-out world identities), its timing and memory probes, and the costs of
a few concepts: adding one, prompt tokens, `generate()` latency with k concepts, peak memory (`measure`)."""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from icpt.training.prompt_fitting import TEST_TIME_TRAINING_ROWS, train_concept_prompts
from icpt.world.tasks import PRESENCE_QUESTION, RECOGNITION_QUESTION
from icpt.world.world import World
from modeling_icpt.reference_features import REFERENCE_FEATURE_CACHE, reference_features

from ..methods import BackboneContext

LATENCY_CONCEPTS = (1, 4, 16)


def concept_photos(num_concepts: int, num_references: int, image_side: int, seed: int):
    """Reference photos of `num_concepts` held-out world identities, a query photo, and `<c0>`.. labels."""
    world = World(seed=seed, num_identities=max(60, 6 * num_concepts))
    rng = np.random.default_rng(seed)
    environments = world.environment_set("A")
    identities = world.split("held_out")[:num_concepts]
    if len(identities) < num_concepts:
        raise ValueError(f"The benchmark world has only {len(identities)} held-out identities for {num_concepts} concepts.")

    def render(ids):
        image, _ = world.render(ids, environments[int(rng.integers(len(environments)))], rng)
        return image.resize((image_side, image_side), Image.BICUBIC) if image.size[0] != image_side else image

    labels = [f"<c{i}>" for i in range(num_concepts)]
    references = {label: [render([i]) for _ in range(num_references)] for label, i in zip(labels, identities)}
    query = render(identities[:2])
    return references, query


def synchronize(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def tensor_bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def transient_peak(fn, device) -> int:
    """Peak bytes that `fn()` allocates beyond what was allocated before it (CUDA allocator or CPU profiler)."""
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before
    # CPU: the profiler reports the running total of what is allocated while it records
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as profiler:
        fn()
    fd, path = tempfile.mkstemp(suffix=".json")
    os.close(fd)
    try:
        profiler.export_chrome_trace(path)
        events = json.loads(Path(path).read_text())["traceEvents"]
    finally:
        os.remove(path)
    totals = [event["args"]["Total Allocated"] for event in events
              if event.get("name") == "[memory]" and event.get("args", {}).get("Device Type") == 0]
    return max(totals, default=0)


def median_seconds(fn, repeats: int, device) -> float:
    values = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        values.append(time.perf_counter() - start)
    return statistics.median(values)


def question_naming(labels: list[str]) -> list[dict]:
    """A user turn with the query photo and a question that names every label: only the concepts a question names
    enter its prompt, so a latency with k concepts needs a question about k of them."""
    question = (RECOGNITION_QUESTION.format(name=labels[0]) if len(labels) == 1
                else PRESENCE_QUESTION.format(names=", ".join(labels)))
    return [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]


def measure(vlm, processor, model, fixed_model, references, query, args) -> dict:
    device = vlm.get_input_embeddings().weight.device
    context = BackboneContext(vlm, processor, model)
    labels = list(references)
    results = {}

    def encode(names):
        batch = processor.prepare_references({name: references[name] for name in names}).to(device)
        bank = model.encode_concepts(**batch)
        synchronize(device)
        return bank

    # 1. seconds to add a concept: photos never seen before (the feature cache would answer a repeated one)
    REFERENCE_FEATURE_CACHE.clear()
    encode(labels[-1:])  # warm-up
    icpt_seconds = []
    for name in labels[: args.add_repeats]:
        start = time.perf_counter()
        encode([name])
        icpt_seconds.append(time.perf_counter() - start)
    REFERENCE_FEATURE_CACHE.clear()
    start = time.perf_counter()
    encode(labels)  # every concept in one pass
    batched_seconds = (time.perf_counter() - start) / len(labels)
    # where one concept's time goes: the processor, the backbone's vision tower (which any use of the photos pays),
    # and the rest (the projector and the bank), each the median over the same photos, new to the cache every time
    def uncached(fn):
        def run():
            REFERENCE_FEATURE_CACHE.clear()
            fn()
        return median_seconds(run, args.add_repeats, device)

    batch = processor.prepare_references({labels[0]: references[labels[0]]}).to(device)
    tower_inputs = {key[len("reference_"):]: value for key, value in batch.items() if key.startswith("reference_")
                    and key != "reference_concept_index"}
    with torch.no_grad():
        breakdown = {
            "processor_seconds": uncached(lambda: processor.prepare_references({labels[0]: references[labels[0]]})),
            "vision_tower_seconds": uncached(lambda: reference_features(vlm, tower_inputs, model.config.vision_layers)),
            "encode_seconds": uncached(lambda: model.encode_concepts(**batch)),
        }
    REFERENCE_FEATURE_CACHE.clear()
    negatives = [references[name][0] for name in labels[1 : 1 + args.ttt_negatives]]
    start = time.perf_counter()
    _, losses = train_concept_prompts(model, processor, labels[0], references[labels[0]], negatives,
                                      steps=args.ttt_steps, learning_rate=args.ttt_learning_rate, seed=args.seed)
    synchronize(device)
    ttt_seconds = time.perf_counter() - start
    results["add_concept"] = {
        "icpt_seconds": statistics.median(icpt_seconds),
        "test_time_training_seconds": ttt_seconds,
        "test_time_training_steps": args.ttt_steps,
        "test_time_training_loss": [losses[0], losses[-1]],
        "icpt_seconds_per_concept_in_one_pass": batched_seconds,
        "concepts_in_one_pass": len(labels),
        "breakdown": breakdown,
        "length_can_change": bool(model.config.adaptive_length
                                  and model.config.min_prompt_length != model.config.max_prompt_length),
    }
    results["add_concept_speedup"] = ttt_seconds / statistics.median(icpt_seconds)
    results["add_concept_speedup_in_one_pass"] = ttt_seconds / batched_seconds

    # 2. prompt tokens per concept
    bank = encode(labels)
    fixed_bank = None
    if fixed_model is not None:
        batch = processor.prepare_references(references).to(device)
        fixed_bank = fixed_model.encode_concepts(**batch)
    raw_tokens = [context.image_tokens(references[name]) for name in labels]
    results["prompt_tokens_per_concept"] = {
        "adaptive": statistics.mean(bank.lengths.values()),
        "fixed": (statistics.mean(fixed_bank.lengths.values()) if fixed_bank is not None
                  else float(model.config.max_prompt_length)),
        "fixed_source": "fixed-length checkpoint" if fixed_bank is not None else "max_prompt_length of the projector",
        "raw_references": statistics.mean(raw_tokens),
        "raw_references_photos_per_concept": args.references,
        "test_time_training": TEST_TIME_TRAINING_ROWS,
    }
    results["adaptive_tokens_per_concept"] = results["prompt_tokens_per_concept"]["adaptive"]

    # 3. generate() latency: a question naming k concepts, against the plain backbone asked the same question (the
    # labels as plain text), the same number of new tokens
    generate_kwargs = {"max_new_tokens": args.new_tokens, "min_new_tokens": args.new_tokens, "do_sample": False}
    runs, banks, prompt_tokens = {}, {}, {}
    for k in LATENCY_CONCEPTS:
        if k > len(labels):
            continue
        question = question_naming(labels[:k])
        plain_inputs = context.backbone_inputs(question, [query])
        banks[k] = bank.select(labels[:k])
        inputs = processor(messages=[question], images=[[query]], concepts=banks[k]).to(device)
        prompt_tokens[f"plain_k{k}"] = int(plain_inputs["input_ids"].shape[1])
        prompt_tokens[f"k{k}"] = int(inputs["input_ids"].shape[1])
        runs[f"plain_k{k}"] = lambda plain_inputs=plain_inputs: vlm.generate(**plain_inputs, **generate_kwargs)
        runs[f"k{k}"] = (lambda inputs=inputs, k=k: model.generate(**inputs, concepts=banks[k], **generate_kwargs))
    # a reader adapter reads folded into the weights in eval mode; in train mode (as it trains) it stays beside them,
    # three products per adapted projection: the same 1-concept question that way shows what folding saves
    unfolded = "k1_adapter_unfolded" if model.config.reader_lora_rank and "k1" in runs else None
    if unfolded:
        runs[unfolded] = runs["k1"]

    def timed(name, run):
        if name == unfolded:
            model.train()  # the backbone's dropout stays off in train mode and the adapter has none
        synchronize(device)
        start = time.perf_counter()
        run()
        synchronize(device)
        elapsed = time.perf_counter() - start
        if name == unfolded:
            model.eval()
        return elapsed

    timings = {name: [] for name in runs}
    for _ in range(args.repeats):  # interleaved, so drift on a shared machine hits every variant alike
        for name, run in runs.items():
            timed(name, run)  # untimed first: each variant is timed warm, whatever ran before it
            timings[name].append(timed(name, run))
    latency = {name: statistics.median(values) for name, values in timings.items()}
    results["latency_seconds"] = latency
    results["latency_prompt_tokens"] = prompt_tokens
    for k in banks:
        results[f"latency_ratio_k{k}"] = latency[f"k{k}"] / latency[f"plain_k{k}"]
    if unfolded:
        results["latency_ratio_k1_adapter_unfolded"] = latency[unfolded] / latency["plain_k1"]

    # 4. peak memory: resident weights + what the call allocates at its peak. ICPT's weights are its whole model:
    # the backbone it wraps (with the reader adapter, when it has one) and the projector
    backbone_bytes = tensor_bytes(list(vlm.parameters()) + list(vlm.buffers()))
    projector_bytes = tensor_bytes(list(model.projector.parameters()) + list(model.projector.buffers()))
    icpt_bytes = tensor_bytes(list(model.parameters()) + list(model.buffers()))
    k = 4 if 4 in banks else max(banks)
    plain_peak = backbone_bytes + transient_peak(runs[f"plain_k{k}"], device)
    icpt_peak = icpt_bytes + tensor_bytes([banks[k].prompts]) + transient_peak(runs[f"k{k}"], device)
    results["peak_memory_bytes"] = {"plain": plain_peak, f"icpt_k{k}": icpt_peak,
                                    "backbone_weights": backbone_bytes, "projector_weights": projector_bytes,
                                    "adapter_weights": icpt_bytes - backbone_bytes - projector_bytes}
    results[f"peak_memory_ratio_k{k}"] = icpt_peak / plain_peak
    return results

