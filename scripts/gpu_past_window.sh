#!/usr/bin/env bash
# One resumable sitting for memory that carries facts past the window (docs/results.md, "Memory
# past the window"): from the shipped adapter, read-free user-turn writes with cached write
# features, context distillation, memory+window and context views, and the preservation term; then
# the synthetic test split's memory regimes beside window, the fact-position split and reply harm.
#
# Rerun the same command to resume: `agentmem train` continues from OUT/run/checkpoint, each eval
# folder that already has results.json is skipped. Knobs: OUT (required), STEPS (3000), BATCH (32),
# LR (5e-4), N_SYN (20000 synthetic train episodes), N_BABI (2000 bAbI qa1 stories; BABI=path to
# bAbI's en/ folder, empty: none), DEVICE (cuda), T_TRAIN (minutes for this sitting; empty: no
# limit), PY (python with agentmem installed).
set -eu
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
OUT=${OUT:?output folder}
STEPS=${STEPS:-3000}; BATCH=${BATCH:-32}; LR=${LR:-5e-4}; N_SYN=${N_SYN:-20000}
N_BABI=${N_BABI:-2000}; BABI=${BABI:-}; DEVICE=${DEVICE:-cuda}; T_TRAIN=${T_TRAIN:-}; PY=${PY:-python3}
mkdir -p "$OUT/data"
data() { [ -s "$2" ] || "$PY" -m agentmem.data build "${@:3}" --out "$2"; sha256sum "$2"; }
data syn "$OUT/data/syn_train.jsonl" --kind synthetic --split train --n "$N_SYN" --seed 1
data syn "$OUT/data/syn_test.jsonl" --kind synthetic --split test --n 300 --seed 0
DATA=(--data "$OUT/data/syn_train.jsonl")
if [ -n "$BABI" ]; then
  data babi "$OUT/data/babi_train_qa1.jsonl" --kind babi --split train --src "$BABI" --tasks qa1 --n "$N_BABI"
  DATA+=(--data "$OUT/data/babi_train_qa1.jsonl")
fi
SHIPPED=$("$PY" -c "from agentmem.model.adapters import shipped_adapter as s; print(s('smollm2-135m-instruct'))")
"$PY" -m agentmem.cli train "${DATA[@]}" --out "$OUT/run" --init-adapter "$SHIPPED" \
  --write-mode message --write-policy user --no-write-reads --cache-writes \
  --distill-weight 1 --window-views 0.5 --context-views 0.25 --preserve-weight 3 \
  --steps "$STEPS" --batch-size "$BATCH" --lr "$LR" --warmup 0.05 --probe-every 0 \
  --save-every 50 --device "$DEVICE" ${T_TRAIN:+--max-minutes "$T_TRAIN"}
[ -d "$OUT/run/adapter" ] || { echo "sitting over before the schedule ended: rerun to resume"; exit 0; }
evaluate() { [ -s "$1/results.json" ] || "$PY" -m agentmem.cli eval --device "$DEVICE" --out "$@"; }
evaluate "$OUT/eval/syn" --data "$OUT/data/syn_test.jsonl" --adapter "$OUT/run/adapter" \
  --regimes window,full-context,memory-only,memory+window,memory+full-context --no-generate
evaluate "$OUT/eval/harm" --suite reply-harm --adapter "$OUT/run/adapter"
"$PY" scripts/fact_window.py --data "$OUT/data/syn_test.jsonl" "$OUT/eval/syn"
