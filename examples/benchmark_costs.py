"""Cost benchmark: what ICPT costs next to test-time training, raw references in context and the plain backbone.

Measured in one run, on one backbone, every ratio against a baseline measured in the same run:

1. **seconds to add a concept**: one ICPT projector pass (references processed and encoded) vs
   Yo'LLaVA-style test-time training of 16 soft tokens (`icpt.evaluation_methods.train_concept_prompts`,
   the harness's own baseline, with its budget);
2. **prompt tokens per concept**: ICPT adaptive vs fixed length vs the image tokens of the raw
   reference photos (and test-time training's 16);
3. **`generate()` latency** with k = 1, 4, 16 concepts in context vs the plain backbone answering the
   same question (same query image, the same number of new tokens forced);
4. **peak memory** of that `generate()` (k = 4) vs the plain backbone: resident weights (the plain
   backbone does not hold the projector) plus the peak of what the call allocates (CUDA: the caching
   allocator's peak; CPU: the torch profiler's memory events).

The targets are printed next to the measured ratios, met or not: adding a concept >= 1000x faster than
test-time training; mean adaptive prompt <= 8 tokens per concept (the accuracy half of that target --
within 2 points of raw references -- comes from `icpt eval`); latency with <= 4 concepts within 5 % of
the plain backbone; peak memory within 5 %.

```bash
# the embedded default backbone on this CPU (a fresh projector unless --checkpoint is given; the
# timings and lengths do not depend on its training, the length rule reads the references)
python examples/benchmark_costs.py --output outputs/costs.json
python examples/benchmark_costs.py --backbone PATH --checkpoint PATH --fixed-checkpoint PATH
# a full-size backbone with random weights in bf16, for a GPU (refused without one)
python examples/benchmark_costs.py --config llava-1.5-7b --output outputs/costs-llava-7b.json
python examples/benchmark_costs.py --config qwen2.5-vl-7b
```
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # run from a checkout without installing the package
    sys.path.insert(0, str(REPO_ROOT))

from icpt.evaluation_methods import (  # noqa: E402
    TEST_TIME_TRAINING_LEARNING_RATE,
    TEST_TIME_TRAINING_ROWS,
    TEST_TIME_TRAINING_STEPS,
    BackboneContext,
    train_concept_prompts,
)
from icpt.world_tasks import RECOGNITION_QUESTION  # noqa: E402

DEFAULT_BACKBONE = REPO_ROOT / "icpt" / "default" / "backbone"
FULL_SIZE_CONFIGS = ("llava-1.5-7b", "qwen2.5-vl-7b")
LATENCY_CONCEPTS = (1, 4, 16)
# (measured quantity, comparison, threshold): what the project promises.
TARGETS = {
    "add_concept_speedup": (">=", 1000.0),
    "adaptive_tokens_per_concept": ("<=", 8.0),
    "latency_ratio_k1": ("<=", 1.05),
    "latency_ratio_k4": ("<=", 1.05),
    "peak_memory_ratio_k4": ("<=", 1.05),
}


# --------------------------------------------------------------------------------------------- backbones


def _local_tokenizer(specials: dict, extra: list, chat_template: str, labels: list[str]):
    """A word-level tokenizer built here (no download): the benchmark's words, its labels and the family's tokens."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = sorted(set(RECOGNITION_QUESTION.replace("{name}", "").lower().replace("?", " ? ").replace(".", " . ").split()))
    named = {k: v for k, v in specials.items() if k in ("bos_token", "eos_token", "pad_token", "unk_token")}
    model_specific = {k: v for k, v in specials.items() if k not in named}
    tokens = list(dict.fromkeys([*named.values(), *model_specific.values(), *extra, *labels, *words, "\n", ":"]))
    backend = Tokenizer(models.WordLevel({token: i for i, token in enumerate(tokens)}, unk_token=named["unk_token"]))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(r"<[^<>\s]+>|<\|[^|]+\|>|\w+|[^\w\s]|\n"), behavior="isolated")
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, chat_template=chat_template, extra_special_tokens=model_specific, **named
    )


_CONTENT = (
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}IMAGE{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
)


def full_size_backbone(name: str, labels: list[str], num_layers: int | None = None):
    """A full-size configuration (random weights, not yet built), its processor and a local tokenizer.

    `num_layers` keeps every width and cuts the depth of both towers (smoke tests on a CPU).
    Returns `(config, icpt_processor, image_side)`.
    """
    from transformers import (
        CLIPImageProcessorPil,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaProcessor,
        Qwen2_5_VLConfig,
        Qwen2VLImageProcessorPil,
    )

    from processing_icpt import ICPTProcessor
    from processing_icpt.backbone_processing import backbone_processor_config, build_backbone_processor

    if name == "llava-1.5-7b":
        template = (
            "{% for message in messages %}{% if message['role'] == 'user' %}USER: "
            + _CONTENT.replace("IMAGE", "<image>\n")
            + " {% else %}ASSISTANT: " + _CONTENT.replace("IMAGE", "<image>\n") + "</s>{% endif %}{% endfor %}"
            "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
        )
        specials = {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>",
                    "image_token": "<image>"}
        tokenizer = _local_tokenizer(specials, ["USER", "ASSISTANT"], template, labels)
        vision = CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=num_layers or 24,
                                  num_attention_heads=16, image_size=336, patch_size=14, projection_dim=768)
        text = LlamaConfig(vocab_size=32064, hidden_size=4096, intermediate_size=11008,
                           num_hidden_layers=num_layers or 32, num_attention_heads=32, num_key_value_heads=32,
                           max_position_embeddings=4096, rms_norm_eps=1e-5, pad_token_id=tokenizer.pad_token_id,
                           eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id)
        config = LlavaConfig(vision_config=vision, text_config=text,
                             image_token_index=tokenizer.convert_tokens_to_ids("<image>"), image_seq_length=576,
                             vision_feature_layer=-2, vision_feature_select_strategy="default",
                             projector_hidden_act="gelu")
        image_processor = CLIPImageProcessorPil(size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336})
        backbone_processor = LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=14,
                                            vision_feature_select_strategy="default", num_additional_image_tokens=1,
                                            chat_template=template)
        settings = backbone_processor_config(backbone_processor)
        image_side = 336
    elif name == "qwen2.5-vl-7b":
        template = (
            "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
            + _CONTENT.replace("IMAGE", "<|vision_start|><|image_pad|><|vision_end|>")
            + "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
        )
        specials = {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "unk_token": "<|unk|>",
                    "image_token": "<|image_pad|>", "video_token": "<|video_pad|>",
                    "vision_bos_token": "<|vision_start|>", "vision_eos_token": "<|vision_end|>"}
        tokenizer = _local_tokenizer(specials, ["<|im_start|>", "user", "assistant"], template, labels)
        ids = {name: tokenizer.convert_tokens_to_ids(token) for name, token in (
            ("image_token_id", "<|image_pad|>"), ("video_token_id", "<|video_pad|>"),
            ("vision_start_token_id", "<|vision_start|>"), ("vision_end_token_id", "<|vision_end|>"))}
        text = {"vocab_size": 152064, "hidden_size": 3584, "intermediate_size": 18944,
                "num_hidden_layers": num_layers or 28, "num_attention_heads": 28, "num_key_value_heads": 4,
                "max_position_embeddings": 128000, "rms_norm_eps": 1e-6, "tie_word_embeddings": False,
                "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]},
                "pad_token_id": tokenizer.pad_token_id, "eos_token_id": tokenizer.eos_token_id}
        depth = num_layers or 32
        vision = {"depth": depth, "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16,
                  "out_hidden_size": 3584, "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2,
                  "window_size": 112, "fullatt_block_indexes": [i for i in (7, 15, 23, 31) if i < depth] or [depth - 1]}
        config = Qwen2_5_VLConfig(vision_config=vision, text_config=text, **ids)
        image_processor = Qwen2VLImageProcessorPil(patch_size=14, merge_size=2, temporal_patch_size=2)
        settings = {"processor_class": "Qwen2_5_VLProcessor"}
        backbone_processor = build_backbone_processor(image_processor, tokenizer, settings, chat_template=template)
        settings = backbone_processor_config(backbone_processor)
        image_side = 448
    else:
        raise ValueError(f"Unknown --config {name!r}: choose among {', '.join(FULL_SIZE_CONFIGS)}.")
    processor = ICPTProcessor(image_processor=image_processor, tokenizer=tokenizer, chat_template=template,
                              backbone_processor_config=settings)
    return config, processor, image_side


def count_parameters(config) -> int:
    """Parameters of the model a config describes, counted on the meta device (nothing allocated)."""
    from transformers import AutoModelForImageTextToText

    with torch.device("meta"):
        model = AutoModelForImageTextToText.from_config(config)
    return sum(p.numel() for p in model.parameters())


def load(args, labels: list[str]):
    """`(vlm, processor, model, fixed_model, description, image_side)` for the chosen backbone."""
    from transformers import AutoModelForImageTextToText

    from modeling_icpt import ICPTForConditionalGeneration
    from processing_icpt import ICPTProcessor

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.config:
        config, processor, image_side = full_size_backbone(args.config, labels, args.num_layers)
        if device == "cpu" and args.num_layers is None:
            billions = count_parameters(config) / 1e9
            raise SystemExit(
                f"--config {args.config} describes a {billions:.2f} B-parameter backbone ({2 * billions:.0f} GB of "
                "weights in bf16): measure it on a GPU. On this machine no GPU is visible, so nothing was allocated. "
                "Omit --config to measure the embedded default on the CPU (or pass --num-layers 1 for a smoke test "
                "of the full-width path)."
            )
        dtype = torch.bfloat16 if device != "cpu" else torch.float32
        torch.manual_seed(args.seed)
        with torch.device(device):
            vlm = AutoModelForImageTextToText.from_config(config, dtype=dtype)
        vlm.eval()
        model = ICPTForConditionalGeneration.from_backbone(vlm, prompt_token_id=processor.prompt_token_id)
        description = f"{args.config} configuration, random weights, {str(dtype).replace('torch.', '')}" + (
            f", {args.num_layers} layer(s) per tower" if args.num_layers else "")
        return vlm, processor, model, None, description, image_side
    backbone = Path(args.backbone or DEFAULT_BACKBONE)
    if not (backbone / "config.json").is_file():
        raise FileNotFoundError(
            f"No backbone at {backbone}: pass --backbone PATH, or train the embedded default with "
            "`python examples/pretrain_world_backbone.py`."
        )
    vlm = AutoModelForImageTextToText.from_pretrained(backbone).to(device).eval()
    processor = ICPTProcessor.from_backbone(backbone)
    if args.checkpoint:
        model = ICPTForConditionalGeneration.from_pretrained(args.checkpoint, backbone=vlm)
    else:
        torch.manual_seed(args.seed)
        model = ICPTForConditionalGeneration.from_backbone(vlm, prompt_token_id=processor.prompt_token_id)
    fixed = ICPTForConditionalGeneration.from_pretrained(args.fixed_checkpoint, backbone=vlm) if args.fixed_checkpoint else None
    side = getattr(vlm.config, "vision_config", None)
    image_side = getattr(side, "image_size", None) or 64
    if isinstance(image_side, (list, tuple)):
        image_side = image_side[0]
    return vlm, processor, model.eval(), fixed, str(backbone), int(image_side)


# --------------------------------------------------------------------------------------------- inputs


def concept_photos(num_concepts: int, num_references: int, image_side: int, seed: int):
    """Reference photos of `num_concepts` held-out world identities, a query photo, and `<c0>`.. labels."""
    from PIL import Image

    from icpt.world import World

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


def _synchronize(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def transient_peak(fn, device) -> int:
    """Peak bytes that `fn()` allocates beyond what was allocated before it (CUDA allocator or CPU profiler)."""
    if device.type == "cuda":
        _synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        _synchronize(device)
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


# --------------------------------------------------------------------------------------------- measuring


def measure(vlm, processor, model, fixed_model, references, query, args) -> dict:
    device = vlm.get_input_embeddings().weight.device
    context = BackboneContext(vlm, processor, model)
    labels = list(references)
    question = RECOGNITION_QUESTION.format(name=labels[0])
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
    results = {}

    def encode(names):
        batch = processor.prepare_references({name: references[name] for name in names}).to(device)
        bank = model.encode_concepts(**batch)
        _synchronize(device)
        return bank

    # 1. seconds to add a concept
    encode(labels[:1])  # warm-up
    icpt_seconds = []
    for name in labels[: args.add_repeats]:
        start = time.perf_counter()
        encode([name])
        icpt_seconds.append(time.perf_counter() - start)
    negatives = [references[name][0] for name in labels[1 : 1 + args.ttt_negatives]]
    start = time.perf_counter()
    _, losses = train_concept_prompts(model, processor, labels[0], references[labels[0]], negatives,
                                      steps=args.ttt_steps, learning_rate=args.ttt_learning_rate, seed=args.seed)
    _synchronize(device)
    ttt_seconds = time.perf_counter() - start
    results["add_concept"] = {
        "icpt_seconds": statistics.median(icpt_seconds),
        "test_time_training_seconds": ttt_seconds,
        "test_time_training_steps": args.ttt_steps,
        "test_time_training_loss": [losses[0], losses[-1]],
    }
    results["add_concept_speedup"] = ttt_seconds / statistics.median(icpt_seconds)

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

    # 3. generate() latency, the same question and the same number of new tokens
    plain_question = messages
    plain_inputs = context.backbone_inputs(plain_question, [query])
    generate_kwargs = {"max_new_tokens": args.new_tokens, "min_new_tokens": args.new_tokens, "do_sample": False}
    runs = {"plain": lambda: vlm.generate(**plain_inputs, **generate_kwargs)}
    banks = {}
    for k in LATENCY_CONCEPTS:
        if k > len(labels):
            continue
        banks[k] = bank.select(labels[:k])
        inputs = processor(messages=[messages], images=[[query]], concepts=banks[k]).to(device)
        runs[f"k{k}"] = (lambda inputs=inputs, k=k: model.generate(**inputs, concepts=banks[k], **generate_kwargs))
    timings = {name: [] for name in runs}
    for run in runs.values():  # warm-up
        run()
    for _ in range(args.repeats):  # interleaved, so drift on a shared machine hits every variant alike
        for name, run in runs.items():
            _synchronize(device)
            start = time.perf_counter()
            run()
            _synchronize(device)
            timings[name].append(time.perf_counter() - start)
    latency = {name: statistics.median(values) for name, values in timings.items()}
    results["latency_seconds"] = latency
    for k in banks:
        results[f"latency_ratio_k{k}"] = latency[f"k{k}"] / latency["plain"]

    # 4. peak memory: resident weights + what the call allocates at its peak
    backbone_bytes = _bytes(list(vlm.parameters()) + list(vlm.buffers()))
    projector_bytes = _bytes(list(model.projector.parameters()) + list(model.projector.buffers()))
    k = 4 if 4 in banks else max(banks)
    plain_peak = backbone_bytes + transient_peak(runs["plain"], device)
    icpt_peak = backbone_bytes + projector_bytes + _bytes([banks[k].prompts]) + transient_peak(runs[f"k{k}"], device)
    results["peak_memory_bytes"] = {"plain": plain_peak, f"icpt_k{k}": icpt_peak,
                                    "backbone_weights": backbone_bytes, "projector_weights": projector_bytes}
    results[f"peak_memory_ratio_k{k}"] = icpt_peak / plain_peak
    return results


def check_targets(results: dict) -> dict:
    """`{name: {"measured", "target", "met"}}` for every target whose quantity was measured."""
    report = {}
    for name, (comparison, threshold) in TARGETS.items():
        if name not in results:
            continue
        value = results[name]
        met = value >= threshold if comparison == ">=" else value <= threshold
        report[name] = {"measured": value, "target": f"{comparison} {threshold:g}", "met": bool(met)}
    return report


def format_table(report: dict) -> str:
    r = report["results"]
    add, tokens, latency = r["add_concept"], r["prompt_tokens_per_concept"], r["latency_seconds"]
    targets = report["targets"]

    def target(name):
        if name not in targets:
            return "", ""
        return targets[name]["target"], "yes" if targets[name]["met"] else "NO"

    rows = [
        ("add a concept: ICPT forward (s)", f"{add['icpt_seconds']:.4f}", "", "", ""),
        (f"add a concept: test-time training, {add['test_time_training_steps']} steps (s)",
         f"{add['test_time_training_seconds']:.3f}", "", "", ""),
        ("  speed-up (TTT / ICPT)", f"{r['add_concept_speedup']:.1f}x", *target("add_concept_speedup"), ""),
        ("prompt tokens / concept: ICPT adaptive (mean)", f"{tokens['adaptive']:.2f}",
         *target("adaptive_tokens_per_concept"), ""),
        (f"prompt tokens / concept: fixed ({tokens['fixed_source']})", f"{tokens['fixed']:.2f}", "", "", ""),
        (f"prompt tokens / concept: raw references ({tokens['raw_references_photos_per_concept']} photos)",
         f"{tokens['raw_references']:.1f}", "", "", ""),
        ("  raw references / adaptive", f"{tokens['raw_references'] / tokens['adaptive']:.1f}x", "", "", ""),
        ("prompt tokens / concept: test-time training", f"{tokens['test_time_training']}", "", "", ""),
        ("generate(): plain backbone (s)", f"{latency['plain']:.4f}", "", "", ""),
    ]
    for k in LATENCY_CONCEPTS:
        if f"latency_ratio_k{k}" in r:
            rows.append((f"generate(): ICPT, k = {k} concepts (s)", f"{latency[f'k{k}']:.4f}", "", "", ""))
            rows.append((f"  ratio to plain, k = {k}", f"{r[f'latency_ratio_k{k}']:.3f}",
                         *target(f"latency_ratio_k{k}"), ""))
    memory = r["peak_memory_bytes"]
    icpt_key = next(key for key in memory if key.startswith("icpt_"))
    ratio_key = f"peak_memory_ratio_{icpt_key[len('icpt_'):]}"
    rows += [
        ("peak memory: plain backbone (MB)", f"{memory['plain'] / 2**20:.1f}", "", "", ""),
        (f"peak memory: ICPT, {icpt_key[len('icpt_'):]} (MB)", f"{memory[icpt_key] / 2**20:.1f}", "", "", ""),
        ("  ratio to plain", f"{r[ratio_key]:.3f}", *target(ratio_key), ""),
    ]
    width = max(len(row[0]) for row in rows)
    lines = [f"{'quantity':<{width}} | {'measured':>10} | {'target':>9} | met",
             f"{'-' * width}-|-{'-' * 10}-|-{'-' * 9}-|----"]
    lines += [f"{name:<{width}} | {value:>10} | {goal:>9} | {met}" for name, value, goal, met, _ in rows]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--backbone", help=f"a saved backbone folder (default: the embedded default, {DEFAULT_BACKBONE})")
    source.add_argument("--config", choices=FULL_SIZE_CONFIGS,
                        help="a full-size configuration with random weights in bf16 (needs a GPU)")
    parser.add_argument("--checkpoint", help="an ICPT projector checkpoint (default: a fresh projector)")
    parser.add_argument("--fixed-checkpoint", help="the fixed-length ablation's checkpoint, for its token count")
    parser.add_argument("--num-layers", type=int, default=None,
                        help="with --config: keep the widths, use this many layers per tower (a smoke test)")
    parser.add_argument("--num-concepts", type=int, default=16, help="concepts encoded (k goes up to 16)")
    parser.add_argument("--references", type=int, default=3, help="reference photos per concept")
    parser.add_argument("--add-repeats", type=int, default=5, help="concepts timed for the ICPT forward")
    parser.add_argument("--ttt-steps", type=int, default=TEST_TIME_TRAINING_STEPS,
                        help="test-time-training steps (the harness's default)")
    parser.add_argument("--ttt-learning-rate", type=float, default=TEST_TIME_TRAINING_LEARNING_RATE,
                        help="relative to the size of an embedding entry (the harness's default)")
    parser.add_argument("--ttt-negatives", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=16, help="tokens every generate() call produces")
    parser.add_argument("--repeats", type=int, default=5, help="timed generate() calls per variant (median)")
    parser.add_argument("--device", default=None, help="default: cuda when available")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", help="write the measurements here as JSON")
    return parser


def main(argv=None) -> dict:
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.num_layers is not None and not args.config:
        raise SystemExit("--num-layers applies to --config only.")
    labels = [f"<c{i}>" for i in range(args.num_concepts)]
    vlm, processor, model, fixed_model, description, image_side = load(args, labels)
    references, query = concept_photos(args.num_concepts, args.references, image_side, args.seed)
    with torch.no_grad():
        results = measure(vlm, processor, model, fixed_model, references, query, args)
    device = vlm.get_input_embeddings().weight.device
    report = {
        "backbone": description,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)",
        "settings": {key: value for key, value in vars(args).items() if key != "output"},
        "results": results,
        "targets": check_targets(results),
    }
    print(f"ICPT cost benchmark -- {report['backbone']} on {report['device']}\n")
    print(format_table(report))
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(report, indent=2) + "\n")
        print(f"\nWrote {args.output}")
    return report


if __name__ == "__main__":
    main()
