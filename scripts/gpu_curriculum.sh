#!/usr/bin/env bash
# One GPU sitting that carries the open-vocabulary candidate's one-fact recall towards the full
# synthetic split: a single `agentmem train` run from that candidate (--init-adapter) on a mixture
# of one-fact, two-fact and full synthetic training episodes, memory-only views for the first 60 %
# of the schedule, then half the views also show the history (to restore in-context use); then a
# short sharded evaluation on the synthetic test split (memory-only with the swap test,
# full-context vs memory+full-context, window vs memory+window) unless T_EVAL=0.
#
# Needs what scripts/gpu_round.sh needs (python3 with CUDA torch, transformers 5.x, agentmem and
# the default backbone importable). The episode files are built here by the project's generator
# (deterministic; their SHA-256 is printed). Knobs: OUT, T_TRAIN / T_EVAL (minutes), BATCH, LR,
# INIT (adapter to start from), TRAIN_EXTRA (more train flags, e.g. --bucket-turns), SHARDS
# (processes per evaluation), WORK, PY.
#
# The curriculum candidate's sitting (H200): T_TRAIN=7.0 T_EVAL=0, then the three evaluations
# below run by hand on the same machine (6, 6 and 12 shards). 179 steps × 128 took 6.4 min there:
# 2.2 s/step, about 20 write passes per step on this mixture (see --bucket-turns).
set -u
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false
OUT=${OUT:?output folder}
T_TRAIN=${T_TRAIN:-6.5}
T_EVAL=${T_EVAL:-1.5}
BATCH=${BATCH:-128}
LR=${LR:-2e-3}
INIT=${INIT:-candidates/smollm2-135m-instruct-open-vocab}
SHARDS=${SHARDS:-4}
W=${WORK:-/tmp/curriculum}
PY=${PY:-python3}
mkdir -p "$W/data" "$W/eval" "$OUT"
started=$(date +%s)
# shellcheck source=scripts/gpu_shards.sh
. "$(dirname "$0")/gpu_shards.sh"  # say

build() {  # name, generator flags
  local name=$1; shift
  $PY -m agentmem.data build --kind synthetic "$@" --out "$W/data/$name.jsonl" > "$W/data/$name.log"
}
build syn_big --split train --n 24000 --seed 21 --facts 1-3 --fillers 0-3 --sessions 1-2 --update-prob 0.25 &
build syn_mid --split train --n 8000 --seed 13 --facts 1-2 --fillers 0-1 --sessions 1 --update-prob 0.1 &
build syn_easy --split train --n 8000 --seed 12 --facts 1 --fillers 0 --sessions 1 --update-prob 0 &
build syn_test --split test --n 300 --seed 0 &
$PY -c "from agentmem.backbones import load_backbone; load_backbone()" || exit 1
wait
say "backbone and data ready"
(cd "$W/data" && sha256sum ./*.jsonl)

# shellcheck disable=SC2086  # TRAIN_EXTRA is a list of flags
timeout $(( ${T_TRAIN%.*} * 60 + 150 )) $PY -m agentmem.cli train \
  --data "$W/data/syn_big.jsonl" --data "$W/data/syn_mid.jsonl" --data "$W/data/syn_easy.jsonl" \
  --init-adapter "$INIT" --out "$W/run" --steps 4000 --memory-only-steps 2400 --context-views 0.5 \
  --batch-size "$BATCH" --lr "$LR" --warmup 0.03 --probe-every 20 --save-every 50 --seed 0 \
  --device cuda --max-minutes "$T_TRAIN" ${TRAIN_EXTRA:-} > "$W/train.log" 2>&1
say "trained (rc $?): $(tail -c 400 "$W/train.log" | tr '\r' '\n' | grep -v '^$' | tail -2 | head -1)"
tail -n 3 "$W/run/train_log.jsonl"
ADAPTER=$W/run/adapter
[ -d "$ADAPTER" ] || ADAPTER=$W/run/checkpoint
tar -C "$W" -cf "$OUT/run.tar" --exclude='*optimizer*' "${ADAPTER#"$W"/}" run/train_log.jsonl \
  run/loss.png train.log data/syn_big.log data/syn_mid.log data/syn_easy.log 2>/dev/null
say "packed $(du -h "$OUT/run.tar" | cut -f1)"
[ "$T_EVAL" = 0 ] && exit 0

evaluate() {  # name, flags: SHARDS processes on the synthetic test split
  local name=$1 k; shift
  for k in $(seq 1 "$SHARDS"); do
    timeout $(( ${T_EVAL%.*} * 60 + 75 )) $PY -m agentmem.cli eval --data "$W/data/syn_test.jsonl" \
      --adapter "$ADAPTER" --no-generate --shard "$k/$SHARDS" --device cuda --max-minutes "$T_EVAL" \
      --out "$W/eval/$name.$k" "$@" > "$W/eval/$name.$k.log" 2>&1 &
  done
}
evaluate mem --regimes memory-only
evaluate ctx --regimes full-context,memory+full-context --no-swap
evaluate win --regimes window,memory+window --no-swap
wait
for name in mem ctx win; do
  # shellcheck disable=SC2046  # one folder per shard
  $PY -m agentmem.cli eval-merge $(seq -f "$W/eval/$name.%g" 1 "$SHARDS") --out "$W/eval/$name" \
    > "$W/eval/$name.log" 2>&1
  say "$name: $(tail -n 1 "$W/eval/$name.log" | cut -c1-500)"
done
tar -C "$W" -czf "$OUT/eval.tar.gz" eval
say "done"
