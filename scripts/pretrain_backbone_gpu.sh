#!/usr/bin/env bash
# One accelerator run of examples/pretrain_world_backbone.py (the same script the CPU runs), for
# a machine with a CUDA GPU and many cores: batches are built by worker processes. Writes the
# exported backbone to $BACKBONE_OUT and copies the log, the run's results and the backbone (as a
# tar split into parts) to $OUT when that is set. Extra arguments go to the script.
#   bash scripts/pretrain_backbone_gpu.sh --patch-size 8 --max-minutes 7
# --max-minutes bounds the training; the final evaluation, export and copies take about a minute
# more, so a wall-clock limit around this script must leave that (a run killed by an outer `timeout`
# before the export returns nothing).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
WORK=${WORK:-/tmp/world_backbone_gpu}
BACKBONE_OUT=${BACKBONE_OUT:-/tmp/world_backbone_gpu_export}
WORKERS=${WORKERS:-$(( $(nproc) - 1 ))}
export PYTHONUNBUFFERED=1
args=(--work-dir "$WORK" --output-dir "$BACKBONE_OUT" --device cuda --workers "$WORKERS" --threads 4
      --checkpoint-minutes 2 "$@")
status=0
$PY examples/pretrain_world_backbone.py "${args[@]}" || status=$?
if [ ! -f "$BACKBONE_OUT/model.safetensors" ] && [ -f "$WORK/checkpoint.pt" ]; then
  echo "time budget spent before the last stage ended: exporting the checkpoint as it is"
  $PY examples/pretrain_world_backbone.py "${args[@]}" --export-now || status=$?
fi
if [ -n "${OUT:-}" ]; then
  cp "$WORK/log.txt" "$OUT/log.txt" || true
  if [ -d "$BACKBONE_OUT" ]; then
    cp "$BACKBONE_OUT/training_results.json" "$OUT/" || true
    tar -C "$(dirname "$BACKBONE_OUT")" -cf - "$(basename "$BACKBONE_OUT")" | split -b 15M - "$OUT/backbone.tar.part-"
  fi
fi
exit $status
