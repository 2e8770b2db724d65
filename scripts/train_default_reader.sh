#!/usr/bin/env bash
# Trains the embedded default's reader adapter: a LoRA adapter on the backbone's language model, trained
# jointly with a frozen-reader projector (which it starts from), so that the model learns to read the rows.
# The same stage, from the same start or from the frozen-reader ablation projectors, gives every ablation
# of the final recipe (each differs from the method in one part only):
#   $OUT/icpt                      icpt/default/ablations/icpt_frozen_reader + adapter -> icpt/default/projector
#   $OUT/icpt_with_decoupling      frozen_reader/icpt_with_decoupling (lambda_dec = 0.1) + adapter
#   $OUT/icpt_with_separation      frozen_reader/icpt_with_separation (lambda_sep = 1) + adapter
#   $OUT/icpt_no_identity_targets  frozen_reader/icpt_no_identity_targets (no identity targets) + adapter
#   $OUT/icpt_adaptive_length      icpt_frozen_reader, 2..8 rows by visual complexity instead of 8 + adapter
# (ablations install as icpt/default/ablations/<name>; the frozen-reader starts are trained by
# scripts/train_default_projectors.sh and ship under icpt/default/ablations/frozen_reader/).
# Episodes: the questions of TASKS on training identities (environment set A; a task listed twice is drawn
# twice as often), each asking about the concepts its question names, as users ask, with SWAPPED_TWINS swapped
# twins per positive recognition episode; plus GENERIC_SHARE generic questions without
# concepts (describe an object or a scene, the backbone's own pretraining formats), so the adapter keeps
# the answers that need no concept (docs/default_model.md measures what it costs them).
#
#   bash scripts/train_default_reader.sh     # 5 runs of 2200 steps, two at a time with one thread each
#                                            # (30-55 minutes per run on this 2-core CPU); resumable
#   RUNS="icpt_with_separation" bash scripts/train_default_reader.sh   # some of them
#   PROJECTORS=outputs/default/projectors bash scripts/train_default_reader.sh   # from freshly trained frozen-reader
#                                            # projectors (scripts/train_default.sh runs both stages in one go)
#   STEPS=10 NUM_EPISODES=64 OUT=/tmp/r INSTALL=0 bash scripts/train_default_reader.sh   # a quick check
#   START=shipped BACKBONE=... STEPS=600 RUNS="icpt icpt_frozen_reader ..." bash scripts/train_default_reader.sh
#                                            # continue the shipped checkpoints on a continued backbone
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
STEPS=${STEPS:-2200}
# 16,000 episodes, each seen about 2.2 times: the reader then tells the asked identity from the others in view as
# sharply as the photos do (4,800 seen 3.7 times fitted them better and read held-out ones worse; docs/default_model.md)
NUM_EPISODES=${NUM_EPISODES:-16000}
GENERIC_SHARE=${GENERIC_SHARE:-0.2}
# recognition on 3 of 8 episodes, each other task of the evaluation on 1 of 8: for a backbone that answers them (stage 4
# of the backbone pretraining); the shipped checkpoint was trained with TASKS="recognition attribute" on one that does not
TASKS=${TASKS:-recognition recognition recognition attribute presence caption text_qa vqa}
RANK=${RANK:-16}
OUT=${OUT:-outputs/default_reader}
INSTALL=${INSTALL:-1}
THREADS=${THREADS:-1}  # one: two threads beside another job ran 10x slower here
PARALLEL=${PARALLEL:-2}  # runs at a time
# the slowest (L_dec's second pass over the photos) first, so that two runs at a time finish together
RUNS=${RUNS:-icpt_with_decoupling icpt icpt_with_separation icpt_no_identity_targets icpt_adaptive_length}
# frozen: each run starts from its frozen-reader projector (the recipe). shipped: each run continues its shipped
# checkpoint (after a continuation of the backbone; RUNS may then include icpt_frozen_reader, trained without adapter)
START=${START:-frozen}
if [[ "$START" != frozen && "$START" != shipped ]]; then echo "START must be frozen or shipped, not $START" >&2; exit 2; fi
if [[ "$START" = frozen && " $RUNS " == *" icpt_frozen_reader "* ]]; then
  echo "icpt_frozen_reader is trained by scripts/train_default_projectors.sh (or continued with START=shipped)" >&2; exit 2
fi
# swapped twins per positive recognition episode (icpt/training/swapped_twins.py; 0: none): with three, swapping a
# concept's photos changes 0.745 of the answers instead of 0.635 (as often as with the photos themselves in
# context) at the same accuracy (docs/default_model.md, "Several twins per positive")
SWAPPED_TWINS=${SWAPPED_TWINS:-3}
read -r -a extra <<< "--swapped_twins $SWAPPED_TWINS ${TRAIN_ARGS:-}"  # TRAIN_ARGS: more options of examples/train_icpt.py
BACKBONE=${BACKBONE:-icpt/default/backbone}
EPISODES=$OUT/episodes_${NUM_EPISODES}_generic_${GENERIC_SHARE}_$(echo "$TASKS" | tr ' ' '+')
mkdir -p "$OUT"

if [ ! -d "$EPISODES" ]; then
  echo "rendering $NUM_EPISODES training episodes ($GENERIC_SHARE of them generic) -> $EPISODES"
  $PY - "$BACKBONE" "$NUM_EPISODES" "$GENERIC_SHARE" "$EPISODES" $TASKS <<'EOF'
import multiprocessing
import sys
from pathlib import Path

from datasets import concatenate_datasets

from icpt.world.world import world_for
from icpt.world.tasks import build_episodes, generic_episodes

backbone, count, share, target = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), Path(sys.argv[4])
tasks = tuple(sys.argv[5:])
world = world_for(Path(backbone))
generic_count = int(round(count * share))
shards = 8  # fixed, so the episodes do not depend on how many processes render them
sizes = [(count - generic_count) // shards + (shard < (count - generic_count) % shards) for shard in range(shards)]
jobs = [(world, "train", size, shard, tasks) for shard, size in enumerate(sizes)]
with multiprocessing.get_context("fork").Pool(min(multiprocessing.cpu_count(), shards)) as pool:
    parts = pool.starmap(build_episodes, jobs)
parts.append(generic_episodes(world, "train", generic_count, seed=7))  # questions without concepts
concatenate_datasets(parts).shuffle(seed=0).flatten_indices().save_to_disk(str(target) + ".tmp")
Path(str(target) + ".tmp").rename(target)  # a complete folder or none
EOF
fi

FROZEN=icpt/default/ablations
# START=frozen: the frozen-reader projectors come from PROJECTORS, a run folder of scripts/train_default_projectors.sh
# (<PROJECTORS>/icpt, <PROJECTORS>/icpt_with_decoupling, ...), or by default from the shipped ones
PROJECTORS=${PROJECTORS:-}
start_of() {  # the frozen-reader projector a run starts from (START=shipped: the shipped checkpoint it continues)
  if [ "$START" = shipped ]; then
    case $1 in
      icpt) echo "icpt/default/projector" ;;
      *) echo "$FROZEN/$1" ;;
    esac
    return
  fi
  case $1 in
    icpt_adaptive_length) echo "$OUT/start_icpt_adaptive_length" ;;
    icpt) if [ -n "$PROJECTORS" ]; then echo "$PROJECTORS/icpt"; else echo "$FROZEN/icpt_frozen_reader"; fi ;;
    *) if [ -n "$PROJECTORS" ]; then echo "$PROJECTORS/$1"; else echo "$FROZEN/frozen_reader/$1"; fi ;;
  esac
}
if [[ "$START" = frozen && " $RUNS " == *" icpt_adaptive_length "* && ! -d "$OUT/start_icpt_adaptive_length" ]]; then
  # the method's frozen-reader projector with the length rule free to choose 2..8 rows (it was trained at 8)
  $PY - "$(start_of icpt)" "$OUT/start_icpt_adaptive_length" "$BACKBONE" <<'EOF'
import sys
from modeling_icpt import ICPTForConditionalGeneration
from processing_icpt import ICPTProcessor
source, target, backbone = sys.argv[1:]
model = ICPTForConditionalGeneration.from_pretrained(source, backbone=backbone)
model.config.min_prompt_length, model.config.adaptive_length = 2, True
model.save_pretrained(target)
ICPTProcessor.from_pretrained(source).save_pretrained(target)
EOF
fi

train() {
  local name=$1 start rank=$RANK
  start=$(start_of "$name")
  [ "$name" = icpt_frozen_reader ] && rank=0  # the projector alone, the language model frozen
  echo "training $name: reader adapter (rank $rank, $STEPS steps) from $start -> $OUT/$name (log: $OUT/$name.log)"
  OMP_NUM_THREADS=$THREADS $PY examples/train_icpt.py --model "$start" --backbone "$BACKBONE" --episodes "$EPISODES" \
    --reader_lora_rank "$rank" --max_steps "$STEPS" --per_device_train_batch_size 16 --learning_rate 6e-4 \
    --lr_scheduler_type cosine --warmup_steps 30 --logging_steps 20 --save_steps 100 --save_total_limit 1 --seed 0 \
    --report_to none --resume_from_checkpoint latest --output_dir "$OUT/$name" "${extra[@]}" \
    >> "$OUT/$name.log" 2>&1  # appended: a resumed run keeps the earlier sittings
}
failed=0
running=0
for run in $RUNS; do
  if [ "$running" -ge "$PARALLEL" ]; then  # the next run starts as soon as any one ends
    wait -n || failed=1
    running=$((running - 1))
  fi
  train "$run" &
  running=$((running + 1))
done
while [ "$running" -gt 0 ]; do wait -n || failed=1; running=$((running - 1)); done
if [ "$failed" = 1 ]; then echo "a training run failed: see the logs in $OUT" >&2; exit 1; fi

# the learning curve, every logged loss term, from the run's last checkpoint
PLOT=${PLOT:-$INSTALL}  # 1: draw the learning curve into docs/default_model_plots/
[[ "$PLOT" = 1 && " $RUNS " == *" icpt "* ]] && $PY - "$OUT/icpt" <<'EOF'
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
    values = [float(e.get(term, 0)) for e in history]
    if any(values):  # a term switched off logs 0 throughout
        axis.plot([e["step"] for e in history], values, label=term)
axis.set_xlabel("step")
axis.set_ylabel("training loss (mean of 20 steps)")
axis.set_title("Reader stage of scripts/train_default.sh (adapter + projector)", fontsize=10)
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
  $PY - "$OUT" $RUNS <<'EOF'
import sys
from pathlib import Path

from modeling_icpt import ICPTForConditionalGeneration
from processing_icpt import ICPTProcessor

out, runs = Path(sys.argv[1]), sys.argv[2:]
for name in runs:
    target = Path("icpt/default/projector" if name == "icpt" else f"icpt/default/ablations/{name}")
    ICPTForConditionalGeneration.from_pretrained(out / name).save_pretrained(target)
    ICPTProcessor.from_pretrained(out / name).save_pretrained(target)
    for code in target.glob("*.py"):  # the package carries the code; a copy would go stale
        code.unlink()
    print(f"installed {out / name} -> {target}")
EOF
fi
