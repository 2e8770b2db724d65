"""The cost benchmark's many-concepts measurements (issue 22): prompt selection and every bank operation by bank size,
search among the largest bank's keys (the matrix product vs faiss and usearch), retrieval recall on held-out scenes,
batched `generate()` and the reference-feature cache."""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from icpt.inference import DEFAULT_BACKBONE
from icpt.world.tasks import RECOGNITION_QUESTION
from icpt.world.world import World
from modeling_icpt import ConceptBank
from modeling_icpt.concept_retrieval import image_keys, top_k
from modeling_icpt.reference_features import REFERENCE_FEATURE_CACHE, reference_features

from .measure import median_seconds, tensor_bytes

try:  # optional: the search comparison measures faiss when it is installed
    import faiss
except ImportError:
    faiss = None
try:  # optional: the search comparison measures usearch when it is installed
    import usearch
    from usearch.index import Index
except ImportError:
    usearch = None

def sized_bank(bank: ConceptBank, size: int, seed: int = 0) -> dict:
    """
    The tensors of a bank of `size` concepts: `bank`'s own concepts first, then made-up ones (`<s0>`, ...) that
    repeat its rows and lengths with random unit retrieval keys. What a bank costs depends on its size and shapes,
    not on the values of its rows, so encoding 100,000 photos is not needed to measure it.
    """
    generator = torch.Generator().manual_seed(seed)
    index = torch.arange(size) % len(bank)
    keys = torch.nn.functional.normalize(torch.randn(size, bank.keys.shape[1], generator=generator), dim=-1)
    keys[: min(size, len(bank))] = bank.keys[: min(size, len(bank))].float()
    labels = bank.labels[:size] + [f"<s{i}>" for i in range(max(0, size - len(bank)))]
    return {"labels": labels, "prompts": bank.prompts[index].clone(), "lengths": bank._lengths[index].clone(),
            "complexity": bank.complexity[index].clone(), "descriptors": bank.descriptors[index].clone(),
            "base_model_name_or_path": bank.base_model_name_or_path,
            "backbone_fingerprint": bank.backbone_fingerprint, "keys": keys.to(bank.keys.dtype)}


def measure_banks(processor, model, bank, query, args) -> dict:
    """Prompt selection (a 100-concept bank vs one concept), and every bank operation from 100 to 100,000 concepts."""
    device = model.vlm.get_input_embeddings().weight.device
    label = bank.labels[0]
    messages = [{"role": "user", "content": [{"type": "image"},
                                             {"type": "text", "text": RECOGNITION_QUESTION.format(name=label)}]}]
    generate_kwargs = {"max_new_tokens": args.new_tokens, "min_new_tokens": args.new_tokens, "do_sample": False}

    def ask(concepts):
        inputs = processor(messages=[messages], images=[[query]], concepts=concepts).to(device)
        model.generate(**inputs, concepts=concepts, **generate_kwargs)
        return inputs["input_ids"].shape[1]

    def ask_ratio(concepts, single):
        """(tokens, seconds) of a one-concept question with `concepts`, against the one-concept bank, interleaved."""
        ask(concepts), ask(single)  # warm-up
        times = {"bank": [], "single": []}
        for _ in range(args.repeats):
            for name, b in (("bank", concepts), ("single", single)):
                times[name].append(median_seconds(lambda b=b: ask(b), 1, device))
        return ask(concepts), ask(single), statistics.median(times["bank"]), statistics.median(times["single"])

    results = {}
    single = bank.select([label])
    hundred = ConceptBank(**sized_bank(bank, 100, args.seed))
    tokens, single_tokens, seconds, single_seconds = ask_ratio(hundred, single)
    results["prompt_selection"] = {"bank_concepts": len(hundred), "prompt_tokens": tokens,
                                   "prompt_tokens_one_concept_bank": single_tokens,
                                   "question_seconds": seconds, "question_seconds_one_concept_bank": single_seconds}
    results["prompt_tokens_ratio_bank100"] = tokens / single_tokens
    results["question_time_ratio_bank100"] = seconds / single_seconds

    # the query photo's key, once: the retrieval time is the bank's search alone
    retrieval_inputs = processor.prepare_retrieval([query]).to(device)
    features = reference_features(model.vlm, {k[len("retrieval_"):]: v for k, v in retrieval_inputs.items()
                                              if k != "retrieval_sample_index"}, model.config.vision_layers)
    query_key = image_keys(features, model.config.vision_hidden_size)
    sizes, rows = [size for size in args.bank_sizes if size >= len(bank)], []
    folder = Path(tempfile.mkdtemp(prefix="icpt-banks-"))
    try:
        for size in sizes:
            tensors = sized_bank(bank, size, args.seed)
            row = {"concepts": size}
            start = time.perf_counter()
            built = ConceptBank(**tensors)
            row["construct_seconds"] = time.perf_counter() - start
            path = folder / f"bank-{size}.safetensors"
            start = time.perf_counter()
            built.save(path)
            row["save_seconds"] = time.perf_counter() - start
            del built, tensors
            start = time.perf_counter()
            loaded = ConceptBank.load(path)
            row["load_seconds"] = time.perf_counter() - start
            row["file_bytes_per_concept"] = path.stat().st_size / size
            storage = (loaded.prompts, loaded._lengths, loaded.complexity, loaded.descriptors, loaded.keys)
            row["tensor_bytes_per_concept"] = tensor_bytes(storage) / size
            row["select_seconds"] = median_seconds(lambda: loaded.select([label]), 21, device)
            row["retrieve_seconds"] = median_seconds(lambda: loaded.retrieve(query_key, 5), 21, device)
            row["processor_seconds"] = median_seconds(
                lambda: processor(messages=[messages], images=[[query]], concepts=loaded), 5, device)
            tokens, single_tokens, seconds, single_seconds = ask_ratio(loaded, single)
            row["question_tokens_ratio"] = tokens / single_tokens
            row["question_seconds"], row["question_time_ratio"] = seconds, seconds / single_seconds
            # 100 concepts added one by one, then removed one by one (the loaded bank grows once, by half its size)
            new = [ConceptBank([f"<new{i}>"], single.prompts, single._lengths, single.complexity, single.descriptors,
                               single.base_model_name_or_path, single.backbone_fingerprint, single.keys)
                   for i in range(args.bank_changes)]
            adds = []
            for one in new:
                start = time.perf_counter()
                loaded.add(one)
                adds.append(time.perf_counter() - start)
            removes = []
            for one in new:
                start = time.perf_counter()
                loaded.remove(one.labels[0])
                removes.append(time.perf_counter() - start)
            row["add_seconds_median"], row["add_seconds_max"] = statistics.median(adds), max(adds)
            row["remove_seconds_median"], row["remove_seconds_max"] = statistics.median(removes), max(removes)
            rows.append(row)
            for name in ("construct", "load", "select", "retrieve"):
                results[f"{name}_seconds_{size}"] = row[f"{name}_seconds"]
            del loaded
            path.unlink()
    finally:
        for leftover in folder.iterdir():
            leftover.unlink()
        folder.rmdir()
    results["bank_sizes"] = rows
    return results


def measure_search_libraries(size: int, width: int, args) -> dict:
    """Top-5 search among `size` random unit keys: the plain matrix product against faiss and usearch (if installed)."""
    generator = torch.Generator().manual_seed(args.seed)
    keys = torch.nn.functional.normalize(torch.randn(size, width, generator=generator), dim=-1)
    # a query photo lies near one concept's key (cosine about 0.8), as in the recall measurement below
    queries = torch.nn.functional.normalize(keys[:50] + 0.075 * torch.randn(50, width, generator=generator), dim=-1)
    exact = top_k(keys, queries, 5)[1]
    cpu = torch.device("cpu")
    results = {"concepts": size, "width": width, "methods": {}}
    for dtype in (torch.float16, torch.float32):
        stored = keys.to(dtype)
        name = f"matrix product ({str(dtype).replace('torch.', '')} keys)"
        results["methods"][name] = {
            "build_seconds": 0.0,
            "query_seconds": median_seconds(lambda stored=stored: top_k(stored, queries[:1], 5), 21, cpu),
            "recall_of_exact_top5": float(np.mean([len(set(top_k(stored, queries[i:i + 1], 5)[1][0].tolist())
                                                      & set(exact[i].tolist())) / 5 for i in range(len(queries))])),
        }
    if faiss is not None:
        faiss.omp_set_num_threads(torch.get_num_threads())
        data = keys.numpy().astype("float32")
        for name, make in (("faiss IndexFlatIP (exact)", lambda: faiss.IndexFlatIP(width)),
                           ("faiss HNSW32 (approximate)", lambda: faiss.IndexHNSWFlat(width, 32, faiss.METRIC_INNER_PRODUCT))):
            start = time.perf_counter()
            index = make()
            index.add(data)
            build = time.perf_counter() - start
            found = index.search(queries.numpy(), 5)[1]
            results["methods"][name] = {
                "build_seconds": build,
                "query_seconds": median_seconds(lambda index=index: index.search(queries[:1].numpy(), 5), 21, cpu),
                "recall_of_exact_top5": float(np.mean([len(set(found[i].tolist()) & set(exact[i].tolist())) / 5
                                                       for i in range(len(queries))])),
                "version": faiss.__version__,
            }
    else:
        results["methods"]["faiss"] = {"missing": "pip install faiss-cpu"}
    if usearch is not None:
        threads = torch.get_num_threads()
        start = time.perf_counter()
        index = Index(ndim=width, metric="cos", dtype="f16")
        index.add(np.arange(size), keys.numpy(), threads=threads)
        build = time.perf_counter() - start
        found = index.search(queries.numpy(), 5, threads=threads).keys
        results["methods"]["usearch HNSW f16 (approximate)"] = {
            "build_seconds": build,
            "query_seconds": median_seconds(lambda: index.search(queries[0].numpy(), 5, threads=threads), 21, cpu),
            "recall_of_exact_top5": float(np.mean([len(set(found[i].tolist()) & set(exact[i].tolist())) / 5
                                                   for i in range(len(queries))])),
            "version": usearch.__version__,
        }
    else:
        results["methods"]["usearch"] = {"missing": "pip install usearch"}
    return results


def retrieval_world(backbone):
    """The world the backbone was trained on when its folder records one (its held-out identities are new to it)."""
    settings = Path(backbone) / "world.json" if backbone else None
    if settings is not None and settings.is_file():
        return World(**json.loads(settings.read_text())), "the backbone's own world (world.json), held-out identities"
    return World(seed=0, num_identities=200), "World(seed=0, num_identities=200), held-out identities"


def measure_recall(processor, model, args, image_side: int) -> dict:
    """Recall@1 / @5 of retrieval on held-out world scenes: references in environments of set A, queries new renders."""
    world, source = retrieval_world(args.backbone or (None if args.config else DEFAULT_BACKBONE))
    rng = np.random.default_rng([args.seed, 22])
    identities = world.split("held_out")[: args.retrieval_concepts]

    def render(ids, environments):
        # the world's own scenes: random pose, lighting, 0-2 distractor objects, sometimes occluders
        image, _ = world.render(ids, environments[int(rng.integers(len(environments)))], rng)
        return image.resize((image_side, image_side), Image.BICUBIC) if image.size[0] != image_side else image

    set_a, set_b = world.environment_set("A"), world.environment_set("B")
    labels = [f"<r{i}>" for i in range(len(identities))]
    references = {label: [render([i], set_a) for _ in range(args.references)] for label, i in zip(labels, identities)}
    REFERENCE_FEATURE_CACHE.clear()
    bank = ConceptBank.encode(model, processor, references, batch_size=32)
    picks = rng.integers(len(identities), size=args.retrieval_queries).tolist()
    pairs = [rng.choice(len(identities), size=2, replace=False).tolist() for _ in range(args.retrieval_queries // 2)]
    scenes = {
        "one concept, environments of the references (A)": [([p], render([identities[p]], set_a)) for p in picks],
        "one concept, new environments (B)": [([p], render([identities[p]], set_b)) for p in picks],
        "two concepts, environments A": [(pair, render([identities[i] for i in pair], set_a)) for pair in pairs],
    }
    results = {"world": source, "concepts": len(labels), "references_per_concept": args.references, "scenes": {}}
    for name, queries in scenes.items():
        retrieved = model.retrieve_concepts(bank, top_k=5, **processor.prepare_retrieval([q for _, q in queries]))
        ranks = [[bank.index(label) for label in row] for row in retrieved]
        truth = [[bank.index(labels[i]) for i in present] for present, _ in queries]
        results["scenes"][name] = {
            "queries": len(queries),
            # @1: the first concept retrieved is one of those present; @5: the share of those present in the first 5
            "recall_at_1": float(np.mean([r[0] in t for r, t in zip(ranks, truth)])),
            "recall_at_5": float(np.mean([len(set(r[:5]) & set(t)) / len(t) for r, t in zip(ranks, truth)])),
        }
    return results


def measure_batched(processor, model, bank, query, references, args) -> dict:
    """Tokens per second of `generate` at batch `args.batch_rows`: one shared concept vs a different one per row."""
    device = model.vlm.get_input_embeddings().weight.device
    rows = args.batch_rows
    generate_kwargs = {"max_new_tokens": args.new_tokens, "min_new_tokens": args.new_tokens, "do_sample": False}

    def conversation(label):
        return [{"role": "user", "content": [{"type": "image"},
                                             {"type": "text", "text": RECOGNITION_QUESTION.format(name=label)}]}]

    def batch(labels):
        inputs = processor(messages=[conversation(label) for label in labels], images=[[query]] * rows,
                           concepts=bank, padding_side="left").to(device)
        return lambda: model.generate(**inputs, concepts=bank, **generate_kwargs)

    shared = batch([bank.labels[0]] * rows)
    different = batch([bank.labels[i % len(bank)] for i in range(rows)])
    shared(), different()  # warm-up
    times = {"shared": [], "different": []}
    for _ in range(args.repeats):
        times["shared"].append(median_seconds(shared, 1, device))
        times["different"].append(median_seconds(different, 1, device))
    tokens = rows * args.new_tokens
    results = {"rows": rows, "new_tokens_per_row": args.new_tokens, "distinct_concepts": min(rows, len(bank)),
               "shared_tokens_per_second": tokens / statistics.median(times["shared"]),
               "different_tokens_per_second": tokens / statistics.median(times["different"])}
    # the per-row `references=` route: photos encoded inside the call; a repeated call finds their features cached
    labels = list(references)[: min(4, len(references))]
    per_row = [{label: references[label]} for label in labels]
    inputs = processor(messages=[conversation(label) for label in labels], images=[[query]] * len(labels),
                       references=per_row, padding_side="left").to(device)
    REFERENCE_FEATURE_CACHE.clear()
    first = median_seconds(lambda: model.generate(**inputs, **generate_kwargs), 1, device)
    repeated = median_seconds(lambda: model.generate(**inputs, **generate_kwargs), args.repeats, device)
    # encoding alone: the same photos again, the tower's features come from the cache
    encode_inputs = processor.prepare_references({label: references[label] for label in labels}).to(device)
    REFERENCE_FEATURE_CACHE.clear()
    encode_first = median_seconds(lambda: model.encode_concepts(**encode_inputs), 1, device)
    encode_repeated = median_seconds(lambda: model.encode_concepts(**encode_inputs), args.repeats, device)
    results["references_route"] = {"rows": len(labels), "first_call_seconds": first, "repeated_call_seconds": repeated,
                                   "encode_first_seconds": encode_first, "encode_repeated_seconds": encode_repeated}
    return {"batched_generation": results,
            "batched_throughput_ratio": results["different_tokens_per_second"] / results["shared_tokens_per_second"],
            "reference_cache_speedup": first / repeated, "reference_cache_encode_speedup": encode_first / encode_repeated}

