"""The cost benchmark (the library of `examples/benchmark_costs.py`): what ICPT costs next to test-time training, raw references in context and the plain backbone.

Measured in one run, on one backbone, every ratio against a baseline measured in the same run:

1. **seconds to add a concept**: one ICPT projector pass (references processed and encoded) vs
   Yo'LLaVA-style test-time training of 16 soft tokens (`icpt.training.prompt_fitting.train_concept_prompts`,
   the harness's own baseline, with its budget);
2. **prompt tokens per concept**: ICPT adaptive vs fixed length vs the image tokens of the raw
   reference photos (and test-time training's 16);
3. **`generate()` latency** with k = 1, 4, 16 concepts in context vs the plain backbone answering the
   same question (same query image, the same number of new tokens forced);
4. **peak memory** of that `generate()` (k = 4) vs the plain backbone: resident weights (the plain
   backbone does not hold the projector) plus the peak of what the call allocates (CUDA: the caching
   allocator's peak; CPU: the torch profiler's memory events).

Many concepts (issue 22), unless `--skip-many-concepts`:

5. **prompt selection**: a one-concept question with a 100-concept bank vs a one-concept bank (tokens, time);
6. **bank operations** from 100 to 100,000 concepts (`--bank-sizes`): construct, save, load (memory-mapped),
   select, add, remove, retrieve top-5, the processor and a whole question, and bytes per concept;
7. **search** among the largest bank's keys: the plain matrix product vs faiss and usearch (when installed);
8. **retrieval recall@1/@5** on held-out world scenes (the backbone's own world when its folder records one);
9. **batched `generate()`** at batch 32, a different concept per row vs one shared concept, and the
   reference-feature cache on the per-row `references=` route.

The targets are printed next to the measured ratios, met or not: adding a concept >= 1000x faster than
test-time training; mean adaptive prompt <= 8 tokens per concept (the accuracy half of that target --
within 2 points of raw references -- comes from `icpt eval`); latency with <= 4 concepts within 5 % of
the plain backbone; peak memory within 5 %; and issue 22's (`report.TARGETS`). `--markdown` writes the report as
docs/performance.md, with a plot of cost against bank size (`--plots`, default: performance_plots/ beside it).

The modules, in the order a run uses them:

- `arguments.py`: `CostArguments`, the settings (and the order of the report's settings);
- `backbones.py`: the backbone measured (a saved one, or a full-size configuration with random weights) and its
  projector: `load`;
- `measure.py`: the photos, the timing and memory probes, and measurements 1-4 (`measure`);
- `concepts.py`: the many-concepts measurements 5-9 (banks by size, search, recall, batched generation);
- `report.py`: the targets, the printed table and docs/performance.md with its plot;
- `run.py`: one run, `benchmark_costs(args)`.

```bash
# the embedded default on this CPU: the shipped projector (icpt/default/projector, with its reader adapter,
# on a backbone object of its own) unless --checkpoint is given
python examples/benchmark_costs.py --threads 1 --output outputs/costs.json --markdown docs/performance.md
python examples/benchmark_costs.py --backbone PATH --checkpoint PATH --fixed-checkpoint PATH
# a full-size backbone with random weights in bf16, for a GPU (refused without one)
python examples/benchmark_costs.py --config llava-1.5-7b --output outputs/costs-llava-7b.json
python examples/benchmark_costs.py --config qwen2.5-vl-7b
```
"""
