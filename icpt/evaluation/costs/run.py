"""One run of the cost benchmark: `benchmark_costs(args)` loads the backbone, measures, prints the table and writes
the JSON and docs/performance.md."""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict
from pathlib import Path

import torch

from .arguments import CostArguments, as_options
from .backbones import load
from .concepts import measure_banks, measure_batched, measure_recall, measure_search_libraries
from .measure import concept_photos, measure
from .report import check_targets, format_table, plot_bank_sizes, write_markdown

def benchmark_costs(args: CostArguments, command: str | None = None) -> dict:
    """Measures, prints the table of ratios and targets, writes `args.output` (JSON) and `args.markdown` (with its
    plot) when set, and returns the report. `command`: the command line to record (default: one built from `args`)."""
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.num_layers is not None and not args.config:
        raise ValueError("--num-layers applies to --config only.")
    if args.backbone and args.config:
        raise ValueError("--backbone and --config exclude each other: a saved backbone, or a full-size configuration.")
    labels = [f"<c{i}>" for i in range(args.num_concepts)]
    vlm, processor, model, fixed_model, description, image_side, checkpoint = load(args, labels)
    references, query = concept_photos(args.num_concepts, args.references, image_side, args.seed)
    load_before = os.getloadavg()[0]
    started = time.time()
    device = vlm.get_input_embeddings().weight.device
    with torch.no_grad():
        results = measure(vlm, processor, model, fixed_model, references, query, args)
        if not args.skip_many_concepts:
            bank = model.encode_concepts(**processor.prepare_references(references).to(device))
            results.update(measure_banks(processor, model, bank, query, args))
            results["search"] = measure_search_libraries(max(args.bank_sizes), bank.keys.shape[1], args)
            results.update(measure_batched(processor, model, bank, query, references, args))
            results["retrieval_recall"] = measure_recall(processor, model, args, image_side)
    report = {
        "backbone": description,
        "checkpoint": checkpoint or "a fresh projector",
        "reader_lora_rank": model.config.reader_lora_rank,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)",
        "settings": {key: value for key, value in asdict(args).items() if key != "output"},
        "command": command or "python examples/benchmark_costs.py " + " ".join(as_options(args)),
        "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started)),
        "minutes": (time.time() - started) / 60,
        "load_average": [load_before, os.getloadavg()[0]],
        "results": results,
        "targets": check_targets(results),
    }
    print(f"ICPT cost benchmark -- {report['backbone']} on {report['device']}\n")
    print(format_table(report))
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(report, indent=2) + "\n")
        print(f"\nWrote {args.output}")
    if args.markdown:
        plot = plot_bank_sizes(report, Path(args.plots or Path(args.markdown).parent / "performance_plots"))
        write_markdown(report, Path(args.markdown), plot)
        print(f"Wrote {args.markdown}" + (f" and {plot}" if plot else ""))
    return report

