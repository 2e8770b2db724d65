#!/usr/bin/env bash
# Trains the embedded default's reader adapter: a LoRA adapter on the backbone's language model, trained
# jointly with the shipped projector (which it starts from), so that the model learns to read the rows.
#   $OUT/icpt_reader          projector + adapter, one checkpoint (installed as icpt/default/projector;
#                             the frozen-reader projector it started from moves to
#                             icpt/default/ablations/icpt_frozen_reader)
# Episodes: recognition and attribute questions on training identities (environment set A), each asking
# about the concepts its question names, as users ask; plus GENERIC_SHARE generic questions without
# concepts (describe an object or a scene, the backbone's own pretraining formats), so the adapter keeps
# the answers that need no concept (docs/default_model.md measures what it costs them).
#
#   bash scripts/train_default_reader.sh     # 1200 steps, about 28 minutes on this CPU beside another job; resumable
#   STEPS=10 NUM_EPISODES=64 OUT=/tmp/r INSTALL=0 bash scripts/train_default_reader.sh   # a quick check
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
STEPS=${STEPS:-1200}
NUM_EPISODES=${NUM_EPISODES:-4800}
GENERIC_SHARE=${GENERIC_SHARE:-0.2}
RANK=${RANK:-16}
OUT=${OUT:-outputs/default_reader}
INSTALL=${INSTALL:-1}
THREADS=${THREADS:-1}  # one: two threads beside another job ran 10x slower here
read -r -a extra <<< "${TRAIN_ARGS:-}"
BACKBONE=icpt/default/backbone
START=${START:-icpt/default/projector}
EPISODES=$OUT/episodes_${NUM_EPISODES}_generic_${GENERIC_SHARE}
mkdir -p "$OUT"

if [ ! -d "$EPISODES" ]; then
  echo "rendering $NUM_EPISODES training episodes ($GENERIC_SHARE of them generic) -> $EPISODES"
  $PY - "$BACKBONE" "$NUM_EPISODES" "$GENERIC_SHARE" "$EPISODES" <<'EOF'
import multiprocessing
import sys
from pathlib import Path

from datasets import Dataset, concatenate_datasets

from icpt.demo import world_for
from icpt.episodes import EPISODE_FEATURES
from icpt.world_tasks import build_episodes, pretraining_dataset

backbone, count, share, target = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), Path(sys.argv[4])
world = world_for(Path(backbone))
generic_count = int(round(count * share))
shards = 8  # fixed, so the episodes do not depend on how many processes render them
sizes = [(count - generic_count) // shards + (shard < (count - generic_count) % shards) for shard in range(shards)]
jobs = [(world, "train", size, shard, ("recognition", "attribute")) for shard, size in enumerate(sizes)]
with multiprocessing.get_context("fork").Pool(min(multiprocessing.cpu_count(), shards)) as pool:
    parts = pool.starmap(build_episodes, jobs)
# generic questions as episodes without concepts: the query image is the example's last image
generic = pretraining_dataset(world, generic_count, seed=7, tasks=("describe_object", "describe_scene"))
rows = [{"concepts": [], "image": row["images"][-1], "question": row["question"], "answer": row["answer"],
         "task": row["task"], "target": "", "options": [], "present": [], "tags": []} for row in generic]
parts.append(Dataset.from_list(rows, features=EPISODE_FEATURES))
concatenate_datasets(parts).shuffle(seed=0).flatten_indices().save_to_disk(str(target) + ".tmp")
Path(str(target) + ".tmp").rename(target)  # a complete folder or none
EOF
fi

echo "training the reader adapter (rank $RANK, $STEPS steps) from $START -> $OUT/icpt_reader (log: $OUT/icpt_reader.log)"
OMP_NUM_THREADS=$THREADS $PY examples/train_icpt.py --model "$START" --backbone "$BACKBONE" --episodes "$EPISODES" \
  --reader_lora_rank "$RANK" --max_steps "$STEPS" --per_device_train_batch_size 16 --learning_rate 6e-4 \
  --lr_scheduler_type cosine --warmup_steps 30 --logging_steps 20 --save_steps 100 --save_total_limit 1 --seed 0 \
  --report_to none --resume_from_checkpoint latest --output_dir "$OUT/icpt_reader" "${extra[@]}" \
  >> "$OUT/icpt_reader.log" 2>&1  # appended: a resumed run keeps the earlier sittings

# the learning curve, every logged loss term, from the run's last checkpoint
$PY - "$OUT/icpt_reader" <<'EOF'
import json
import sys
from pathlib import Path

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt

run = Path(sys.argv[1])
state = sorted(run.glob("checkpoint-*/trainer_state.json"), key=lambda p: int(p.parent.name.split("-")[1]))[-1]
history = [entry for entry in json.loads(state.read_text())["log_history"] if "lm_loss" in entry]
figure, axis = plt.subplots(figsize=(6, 3.5))
for term in ("loss", "lm_loss", "decoupling_loss", "separation_loss"):
    axis.plot([e["step"] for e in history], [e[term] for e in history], label=term)
axis.set_xlabel("step")
axis.set_ylabel("training loss (mean of 20 steps)")
axis.set_title("Reader adapter + projector (scripts/train_default_reader.sh)")
axis.legend()
axis.grid(alpha=0.3)
figure.tight_layout()
target = Path("docs/default_model_plots/reader_adapter_training.png")
target.parent.mkdir(parents=True, exist_ok=True)
figure.savefig(target, dpi=100)
print(f"learning curve -> {target}")
EOF

if [ "$INSTALL" = 1 ]; then
  # Shipped checkpoints name the backbone relative to their own folder, so the package can move.
  $PY - "$OUT" "$START" <<'EOF'
import sys
from pathlib import Path

from modeling_icpt import ICPTForConditionalGeneration
from processing_icpt import ICPTProcessor

out, start = Path(sys.argv[1]), Path(sys.argv[2])
frozen = Path("icpt/default/ablations/icpt_frozen_reader")
def install(source, target):
    """Re-save a checkpoint into the package: it names the backbone relative to its new folder."""
    ICPTForConditionalGeneration.from_pretrained(source).save_pretrained(target)
    ICPTProcessor.from_pretrained(source).save_pretrained(target)
    for code in Path(target).glob("*.py"):  # the package carries the code; a copy would go stale
        code.unlink()
    print(f"installed {source} -> {target}")


if start.resolve() == Path("icpt/default/projector").resolve() and not frozen.exists():
    install(start, frozen)  # the projector the adapter started from: the frozen-reader ablation
install(out / "icpt_reader", "icpt/default/projector")
EOF
fi
