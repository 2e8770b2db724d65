"""Pretraining of ICPT's embedded default backbone: a small LLaVA on the generated world, on a CPU or a GPU.

No pretrained vision encoder exists offline, so ICPT ships its own small vision-language model.
It is a standard transformers `LlavaForConditionalGeneration` (CLIP vision tower + Llama language
model, built from config) with its own WordPiece tokenizer, a CLIP image processor and a
`LlavaProcessor`, so `AutoModelForImageTextToText` / `AutoProcessor` load it offline.

It is trained on *generic* world tasks only -- describing objects and scenes, and comparing images
given in context ("Is the object of the first images also in the last one?") -- on training
identities in environment set A. It never sees ICPT prompts, concept labels, held-out identities or
environment set B. Three stages (see docs/default_model.md for the measurements behind them):

1. **contrastive**: only the vision tower (+ a small head, dropped afterwards) learns
   identity-discriminative features with a supervised-contrastive loss: renders of the same
   identity in different environments are positives, look-alike pairs sit in every batch;
2. **comparison**: the tower is frozen, the connector and the language model learn the
   same/different question (25 % look-alike negatives from the start) and, every third step,
   object and scene descriptions;
3. **questions**: the whole model (the tower at a lower learning rate) learns named questions --
   reference images in a preamble ("the object is <image> <image>."), then a query scene and the
   recognition or attribute question of an ICPT episode about "the object" -- mixed with comparison
   and descriptions. This is the layout in which ICPT later puts a concept's prompt vectors, so the
   language model already reads a preamble as "what the name stands for".

A fourth stage, **formats** (``--format-steps``, off by default; for a continuation), teaches the
evaluation's answer formats with the concepts' photos in context under their labels.

Training is resumable (atomic checkpoints every few minutes, ``--resume``) and keeps to a
``--max-minutes`` budget, so it can run in the background across sittings:

```bash
python examples/pretrain_world_backbone.py --threads 2 --max-minutes 60            # first sitting
python examples/pretrain_world_backbone.py --threads 2 --max-minutes 60 --resume   # later ones
```

``--init-from FOLDER`` starts from a backbone this script exported and trains only stage 3 on it (for
``--question-steps`` more steps, with this run's settings), e.g. to try another look-alike share in
stage 3 without repeating stages 1 and 2; the card counts the source's training time too.
``--language-model-from FOLDER`` is the other way round: stage 1 trains a new tower, and stage 2 starts the
connector and the language model from the export's instead of random weights, so that a new tower does not cost
the language model's stages from scratch. It applies when stage 2 begins, so a run stopped after stage 1 can take
it with ``--resume``.

On a GPU (``--device cuda``, the default when one is present) the batches, not the model, are the
bottleneck: ``--workers N`` builds them in N processes. Each batch is drawn from its own random stream
per (stage, step), so the batches are the same with any number of workers and after a resume.
``scripts/pretrain_backbone_gpu.sh`` is the run that trained the shipped backbone (patch 8).

When the last stage ends, the model is measured on held-out identities (with the raw reference
images in context) and saved with a model card to ``--output-dir`` (the script's default:
``icpt/default/backbone``).

The modules: `arguments` (`PretrainArguments`, the settings), `modeling` (tokenizer, processor,
model), `batches` (token ids and pixels, one random stream per step, worker processes),
`contrastive` (stage 1's loss and heads), `evaluation` (what is measured), `card` (the model
card), `run` (`pretrain(args)`: the stages, checkpoints, export).

```python
from icpt.world.pretraining.arguments import PretrainArguments
from icpt.world.pretraining.run import pretrain

pretrain(PretrainArguments(work_dir="outputs/bb", output_dir="outputs/bb/export", max_minutes=30))
```
"""
