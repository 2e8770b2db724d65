#!/usr/bin/env bash
# Trains the embedded default's frozen-reader projector and its three ablations into $OUT, the first stage of
# scripts/train_default.sh (which runs both stages and installs what ships):
#   $OUT/icpt                         the method: identity targets, no L_dec, no L_sep
#   $OUT/icpt_with_decoupling         with L_dec (lambda_dec = DECOUPLING_WEIGHT)
#   $OUT/icpt_with_separation         with L_sep (lambda_sep = SEPARATION_WEIGHT)
#   $OUT/icpt_no_identity_targets     no identity targets (lambda_id = 0)
# L_dec and L_sep are off in the method because their ablations showed no effect with the reader adapter
# (docs/method.md §6, docs/default_model.md); their rows switch them on, so the table keeps measuring them.
# Same episodes (training identities, environment set A), steps, batch and seed for all four, so the
# ablations differ from the method in one part only. Two runs at a time with one thread each: on a
# 2-core CPU that is faster than one run with two threads.
#
# The episodes are recognition and attribute questions: the formats the default backbone was
# pretrained to answer (named questions). Its language model never learned the other tasks' answer
# formats, and as it stays frozen their loss only adds noise (measured: see docs/default_model.md).
# 8 rows for every concept: rows regressed onto 8-row identity targets are read as the identity at
# full length but not cut to 4 (0.602 against 0.510, docs/default_model.md), so the length rule has
# nothing to choose and the fixed-length ablation is not trained.
#
# Runs at a time, threads per run and extra Trainer arguments are settable, e.g. for a bigger machine:
#   PARALLEL=4 THREADS=2 TRAIN_ARGS="--dataloader_num_workers 2" bash scripts/train_default_projectors.sh
# (measured once on an H100 with 16 cores: about 1 step/s per run, no faster than this CPU; the cause
# is not known yet, see docs/default_model.md).
#
#   bash scripts/train_default_projectors.sh   # targets (50-65 s per identity per core: ~1.5 h for 200
#                                              # on 2 cores), then 4 runs of 500 steps (53 min on 2 cores)
#   RUNS=icpt bash scripts/train_default_projectors.sh        # some of the four (the method only here)
#   BACKBONE=/path/to/export OUT=/tmp/p4800 RUNS=icpt bash scripts/train_default_projectors.sh   # on another backbone
#   STEPS=20 TARGET_IDENTITIES=4 OUT=/tmp/p bash scripts/train_default_projectors.sh   # a quick check
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
STEPS=${STEPS:-500}
NUM_EPISODES=${NUM_EPISODES:-6000}
TASKS=${TASKS:-recognition attribute}
OUT=${OUT:-outputs/default_projectors}
PARALLEL=${PARALLEL:-2}  # runs at a time
THREADS=${THREADS:-1}    # threads per run
RENDER_WORKERS=${RENDER_WORKERS:-$(nproc)}
TARGET_IDENTITIES=${TARGET_IDENTITIES:-200}  # training identities with target rows (the first N of a fixed order)
TARGET_WEIGHT=${TARGET_WEIGHT:-10}            # lambda_id
TARGET_STEPS=${TARGET_STEPS:-60}              # full-batch steps per identity's fit (time per identity scales with it)
# the rows' starting norm of the shipped targets: the image-token norm the previous default projector measured
TARGET_PROMPT_NORM=${TARGET_PROMPT_NORM:-17.810325622558594}
RUNS=${RUNS:-icpt icpt_no_identity_targets icpt_with_decoupling icpt_with_separation}  # some of them: RUNS=icpt
read -r -a extra <<< "${TRAIN_ARGS:-}"
BACKBONE=${BACKBONE:-icpt/default/backbone}  # another backbone: a pilot of the recipe on it (use a new OUT)
EPISODES=$OUT/episodes_train_${NUM_EPISODES}_${TASKS// /_}_8shards
TARGETS=$OUT/identity_targets_${TARGET_IDENTITIES}_steps${TARGET_STEPS}.safetensors
with_targets=(--identity_targets "$TARGETS" --identity_target_weight "$TARGET_WEIGHT")
# the weights the "with" ablations switch on (the values the recipe had while it used them); every run names
# both weights, so the library's defaults cannot change a run
DECOUPLING_WEIGHT=${DECOUPLING_WEIGHT:-0.1}
SEPARATION_WEIGHT=${SEPARATION_WEIGHT:-1.0}
flags() {  # the run's flags: how it differs from the method
  case $1 in
    icpt) echo "--decoupling_weight 0 --separation_weight 0 ${with_targets[*]}" ;;
    icpt_no_identity_targets) echo "--decoupling_weight 0 --separation_weight 0" ;;
    icpt_with_decoupling) echo "--decoupling_weight $DECOUPLING_WEIGHT --separation_weight 0 ${with_targets[*]}" ;;
    icpt_with_separation) echo "--decoupling_weight 0 --separation_weight $SEPARATION_WEIGHT ${with_targets[*]}" ;;
    *) echo "unknown run $1 (RUNS takes icpt icpt_no_identity_targets icpt_with_decoupling icpt_with_separation)" >&2
       return 1 ;;
  esac
}
for run in $RUNS; do flags "$run" > /dev/null || exit 2; done

mkdir -p "$OUT"

if [ ! -d "$EPISODES" ]; then
  echo "rendering $NUM_EPISODES training episodes -> $EPISODES"
  $PY - "$BACKBONE" "$NUM_EPISODES" "$EPISODES" "$RENDER_WORKERS" $TASKS <<'EOF'
import multiprocessing
import sys
from pathlib import Path
from datasets import concatenate_datasets
from icpt.world.world import world_for
from icpt.world.tasks import build_episodes
backbone, count, target, workers, tasks = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4]), tuple(sys.argv[5:])
world = world_for(Path(backbone))
shards = 8  # fixed, so the episodes do not depend on how many processes render them
sizes = [count // shards + (shard < count % shards) for shard in range(shards)]
jobs = [(world, "train", size, shard, tasks) for shard, size in enumerate(sizes)]
with multiprocessing.get_context("fork").Pool(min(workers, shards)) as pool:
    parts = pool.starmap(build_episodes, jobs)
concatenate_datasets(parts).save_to_disk(str(target) + ".tmp")
Path(str(target) + ".tmp").rename(target)  # a complete folder or none
EOF
fi

# Identity targets (icpt/training/identity_targets.py): rows fitted to each of TARGET_IDENTITIES training identities
# on the backbone alone (no projector, no reader adapter), under a new label at every step, which every run also regresses onto (weight
# TARGET_WEIGHT). 50-65 s per identity per core; PARALLEL processes share the
# work and resume where they stopped.
if [ ! -f "$TARGETS" ]; then
  echo "fitting identity targets for $TARGET_IDENTITIES training identities -> $TARGETS (logs: $OUT/targets_part*.log)"
  pids=()
  for part in $(seq 0 $((PARALLEL - 1))); do
    OMP_NUM_THREADS=$THREADS $PY examples/fit_identity_targets.py --backbone "$BACKBONE" --identities "$TARGET_IDENTITIES" \
      --prompt_norm "$TARGET_PROMPT_NORM" --steps "$TARGET_STEPS" --part "$part" --parts "$PARALLEL" --threads "$THREADS" --output "$OUT/targets_part$part.safetensors" \
      >> "$OUT/targets_part$part.log" 2>&1 &
    pids+=($!)
  done
  for pid in "${pids[@]}"; do wait "$pid" || { echo "fitting targets failed: see $OUT/targets_part*.log" >&2; exit 1; }; done
  $PY examples/fit_identity_targets.py --backbone "$BACKBONE" --identities "$TARGET_IDENTITIES" --output "$TARGETS" \
    --merge "$OUT"/targets_part*.safetensors
fi

common=(--backbone "$BACKBONE" --episodes "$EPISODES" --max_steps "$STEPS" --per_device_train_batch_size 16
        --learning_rate 1e-3 --lr_scheduler_type cosine --warmup_steps 50 --projector_hidden_size 128
        --min_prompt_length 8 --max_prompt_length 8
        --logging_steps 25 --save_steps 100 --save_total_limit 1 --seed 0 --report_to none
        --resume_from_checkpoint latest)
train() {
  local name=$1; shift
  echo "training $name ($STEPS steps) -> $OUT/$name (log: $OUT/$name.log)"
  OMP_NUM_THREADS=$THREADS $PY examples/train_icpt.py "${common[@]}" "${extra[@]}" --output_dir "$OUT/$name" "$@" \
    >> "$OUT/$name.log" 2>&1  # appended: a resumed run keeps the earlier sittings
}
# An interrupted run resumes; a run folder left by other settings is refused (its run_settings.json), so use
# a new OUT after changing the recipe.
pids=()
failed=0
for run in $RUNS; do
  # shellcheck disable=SC2046  # word splitting of the run's flags is intended
  train "$run" $(flags "$run") &
  pids+=($!)
  if [ "${#pids[@]}" -ge "$PARALLEL" ]; then
    for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
    pids=()
  fi
done
for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
if [ "$failed" = 1 ]; then echo "a training run failed: see the logs in $OUT" >&2; exit 1; fi
