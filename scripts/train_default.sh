#!/usr/bin/env bash
# Trains the embedded default's shipped projector and reader adapter, and every ablation of the recipe, from
# the shipped backbone, in one go, bit for bit (133 min on session 34's 2-core CPU, 96 min before the swapped twins on
# session 26's faster one, about 2 h 45 min on the slower machines of earlier sittings; docs/default_model.md,
# "One script"). Three
# phases, each resumable (rerun the same command after an interruption):
#   1. scripts/train_default_projectors.sh: identity targets for TARGET_IDENTITIES training identities (TARGET_STEPS each), then four
#      frozen-reader projectors (the method; its ablations with L_dec, with L_sep, without identity targets), PROJECTOR_STEPS each;
#   2. scripts/train_default_reader.sh: each of them, and the method's with 2..8 rows, trained on with a LoRA
#      reader adapter on the language model, READER_STEPS each;
#   3. install (INSTALL=1): the method -> icpt/default/projector, the four reader ablations ->
#      icpt/default/ablations/<name>, the method's frozen-reader projector -> icpt/default/ablations/icpt_frozen_reader,
#      the other frozen-reader projectors -> icpt/default/ablations/frozen_reader/<name>.
# Two runs at a time with one thread each (the fastest use of 2 cores here). Each run's log, with its progress
# bar and every loss term, is in $OUT/projectors/<name>.log and $OUT/readers/<name>.log; the phases' wall
# times of this sitting (a resumed run counts only its own) go to $OUT/timings.json.
#
#   bash scripts/train_default.sh          # the shipped checkpoints, bit for bit (docs/default_model.md, "One script")
#   READER_STEPS=1100 READER_EPISODES=4800 bash scripts/train_default.sh
#                                          # the previous recipe: 105 min on an earlier, slower machine
#   BACKBONE=/path/to/export OUT=outputs/pilot INSTALL=0 bash scripts/train_default.sh   # the recipe on another backbone
#   PROJECTOR_STEPS=5 READER_STEPS=5 TARGET_IDENTITIES=2 NUM_EPISODES=64 OUT=/tmp/d INSTALL=0 \
#       bash scripts/train_default.sh                               # a quick check of the plumbing
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=${OUT:-outputs/default}
INSTALL=${INSTALL:-1}
# another backbone (both phases take BACKBONE): a pilot of the recipe on it, in its own OUT; what ships is trained on
# icpt/default/backbone, so such a run installs nothing
BACKBONE=${BACKBONE:-icpt/default/backbone}
if [ "$INSTALL" = 1 ] && [ "$BACKBONE" != icpt/default/backbone ]; then
  echo "BACKBONE=$BACKBONE is a pilot: add INSTALL=0 (what ships is trained on icpt/default/backbone)" >&2; exit 2
fi
export BACKBONE
TARGET_IDENTITIES=${TARGET_IDENTITIES:-120}
TARGET_STEPS=${TARGET_STEPS:-30}  # per identity: on the frozen backbone the loss falls 1.42 -> 0.32 in 30 steps (mean of 120)
PROJECTOR_STEPS=${PROJECTOR_STEPS:-250}
READER_STEPS=${READER_STEPS:-2200}
NUM_EPISODES=${NUM_EPISODES:-}  # both phases' episode counts (their own defaults when empty: 6,000 and 16,000)
READER_EPISODES=${READER_EPISODES:-$NUM_EPISODES}  # the reader phase's alone
mkdir -p "$OUT"
started=$(date +%s)
timings=()
phase() {  # name, then the command; records its wall time
  local name=$1 began; shift
  began=$(date +%s)
  echo "[$(date +%H:%M:%S)] $name"
  "$@"
  timings+=("\"$name\": $(( $(date +%s) - began ))")
}
episodes=()
[ -n "$NUM_EPISODES" ] && episodes=(NUM_EPISODES="$NUM_EPISODES")
reader_episodes=()
[ -n "$READER_EPISODES" ] && reader_episodes=(NUM_EPISODES="$READER_EPISODES")

phase projectors env "${episodes[@]}" OUT="$OUT/projectors" TARGET_IDENTITIES="$TARGET_IDENTITIES" \
  TARGET_STEPS="$TARGET_STEPS" STEPS="$PROJECTOR_STEPS" bash scripts/train_default_projectors.sh
# the default backbone answers recognition and attribute questions about labels (not the other formats), so the
# reader learns on those, plus generic questions without concepts so that it keeps those answers
phase readers env "${reader_episodes[@]}" PROJECTORS="$OUT/projectors" OUT="$OUT/readers" STEPS="$READER_STEPS" \
  TASKS="recognition attribute" INSTALL=0 PLOT="$INSTALL" bash scripts/train_default_reader.sh

if [ "$INSTALL" = 1 ]; then
  phase install $PY - "$OUT" <<'EOF'
import os
import sys
from pathlib import Path

from modeling_icpt import ICPTForConditionalGeneration
from processing_icpt import ICPTProcessor

out = Path(sys.argv[1])
installs = {out / "readers/icpt": "icpt/default/projector", out / "projectors/icpt": "icpt/default/ablations/icpt_frozen_reader"}
for name in ("icpt_with_decoupling", "icpt_with_separation", "icpt_no_identity_targets", "icpt_adaptive_length"):
    installs[out / "readers" / name] = f"icpt/default/ablations/{name}"
for name in ("icpt_with_decoupling", "icpt_with_separation", "icpt_no_identity_targets"):
    installs[out / "projectors" / name] = f"icpt/default/ablations/frozen_reader/{name}"
for source, target in installs.items():
    model = ICPTForConditionalGeneration.from_pretrained(source, backbone="icpt/default/backbone")
    # shipped checkpoints name the backbone relative to their own folder, so the package can move
    model.config.base_model_name_or_path = os.path.relpath("icpt/default/backbone", target)
    model.save_pretrained(target)
    ICPTProcessor.from_pretrained(source).save_pretrained(target)
    for code in Path(target).glob("*.py"):  # the package carries the code; a copy would go stale
        code.unlink()
    print(f"installed {source} -> {target}")
EOF
fi

total=$(( $(date +%s) - started ))
timings+=("\"total\": $total")
(IFS=,; echo "{${timings[*]}}") > "$OUT/timings.json"
echo "[$(date +%H:%M:%S)] done in $((total / 60)) min $((total % 60)) s (phases: $OUT/timings.json)"
