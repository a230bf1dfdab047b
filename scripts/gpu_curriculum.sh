#!/usr/bin/env bash
# One GPU sitting that carries an adapter's one-fact recall towards the full synthetic split: a
# single `agentmem train` run from it (--init-adapter) on a mixture of synthetic training episodes,
# memory-only views for the first MEMORY_ONLY / 4000 of the schedule, then half the views also
# show the history (to keep in-context use); then a short sharded evaluation on the synthetic test
# split (memory-only with the swap test, memory+full-context, memory+window) unless T_EVAL=0.
#
# Needs what scripts/gpu_round.sh needs (python3 with CUDA torch, transformers 5.x, agentmem and
# the default backbone importable). The episode files are built here by the project's generator
# (deterministic; their SHA-256 is printed; a file already there is kept). Knobs: OUT, T_TRAIN /
# T_EVAL (minutes), BATCH, LR, INIT (adapter to start from), MIX (curriculum: one-fact, two-fact
# and full episodes; selection: episodes shaped like the test split — two to four facts — for
# choosing the asked fact among several, plus the one-fact episodes), MEMORY_ONLY (memory-only
# steps of the nominal 4,000; --max-minutes shrinks both alike), TRAIN_EXTRA (more train flags,
# e.g. --bucket-turns), SHARDS (processes per evaluation), DEVICE (cuda), WORK, PY. The evaluation
# runs only the memory regimes: the adapter-free ones are summarised in
# docs/results/evals/smollm2-135m-instruct/baselines (rebuilt into runs/baselines) and joined with
# `agentmem eval-merge`.
#
# The curriculum candidate's sitting (H200): T_TRAIN=7.0 T_EVAL=0, then the evaluations run by
# hand on the same machine (6, 6 and 12 shards). 179 steps × 128 took 6.4 min there: 2.2 s/step,
# about 20 write passes per step on this mixture (see --bucket-turns). The multi-fact candidate's
# (H200): MIX=selection INIT=candidates/smollm2-135m-instruct-curriculum-gpu LR=3e-3
# MEMORY_ONLY=2600 TRAIN_EXTRA=--bucket-turns T_TRAIN=5.6 T_EVAL=1.4 SHARDS=5: 282 steps × 128,
# 1.18 s/step.
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
  [ -s "$W/data/$name.jsonl" ] && return
  $PY -m agentmem.data build --kind synthetic "$@" --out "$W/data/$name.jsonl" > "$W/data/$name.log"
}
case ${MIX:=curriculum} in
  curriculum)
    files="syn_big syn_mid syn_easy"
    build syn_big --split train --n 24000 --seed 21 --facts 1-3 --fillers 0-3 --sessions 1-2 --update-prob 0.25 &
    build syn_mid --split train --n 8000 --seed 13 --facts 1-2 --fillers 0-1 --sessions 1 --update-prob 0.1 & ;;
  selection)
    files="syn_sel syn_full syn_easy"
    build syn_sel --split train --n 24000 --seed 31 --facts 2-4 --fillers 0-1 --sessions 1 --update-prob 0 &
    build syn_full --split train --n 16000 --seed 32 & ;;  # the generator's defaults: the test split's shape
  *) echo "MIX must be curriculum or selection" >&2; exit 2 ;;
esac
build syn_easy --split train --n 8000 --seed 12 --facts 1 --fillers 0 --sessions 1 --update-prob 0 &
build syn_test --split test --n 300 --seed 0 &
$PY -c "from agentmem.backbones import load_backbone; load_backbone()" || exit 1
wait
say "backbone and data ready"
(cd "$W/data" && sha256sum ./*.jsonl)

data_flags=""
for f in $files; do data_flags="$data_flags --data $W/data/$f.jsonl"; done
# shellcheck disable=SC2086  # TRAIN_EXTRA and data_flags are lists of flags
timeout $(( ${T_TRAIN%.*} * 60 + 150 )) $PY -m agentmem.cli train $data_flags \
  --init-adapter "$INIT" --out "$W/run" --steps 4000 --memory-only-steps "${MEMORY_ONLY:-2400}" --context-views 0.5 \
  --batch-size "$BATCH" --lr "$LR" --warmup 0.03 --probe-every 20 --save-every 50 --seed 0 \
  --device "${DEVICE:=cuda}" --max-minutes "$T_TRAIN" ${TRAIN_EXTRA:-} > "$W/train.log" 2>&1
say "trained (rc $?): $(tail -c 400 "$W/train.log" | tr '\r' '\n' | grep -v '^$' | tail -2 | head -1)"
tail -n 3 "$W/run/train_log.jsonl"
ADAPTER=$W/run/adapter
[ -d "$ADAPTER" ] || ADAPTER=$W/run/checkpoint
tar -C "$W" -cf "$OUT/run.tar" --exclude='*optimizer*' "${ADAPTER#"$W"/}" run/train_log.jsonl \
  run/loss.png train.log data/*.log 2>/dev/null
say "packed $(du -h "$OUT/run.tar" | cut -f1)"
[ "$T_EVAL" = 0 ] && exit 0

evaluate() {  # name, flags: SHARDS processes on the synthetic test split
  local name=$1 k; shift
  for k in $(seq 1 "$SHARDS"); do
    timeout $(( ${T_EVAL%.*} * 60 + 75 )) $PY -m agentmem.cli eval --data "$W/data/syn_test.jsonl" \
      --adapter "$ADAPTER" --no-generate --shard "$k/$SHARDS" --device "$DEVICE" --max-minutes "$T_EVAL" \
      --out "$W/eval/$name.$k" "$@" > "$W/eval/$name.$k.log" 2>&1 &
  done
}
evaluate mem --regimes memory-only
evaluate ctx --regimes memory+full-context --no-swap
evaluate win --regimes memory+window --no-swap
wait
for name in mem ctx win; do
  # shellcheck disable=SC2046  # one folder per shard
  $PY -m agentmem.cli eval-merge $(seq -f "$W/eval/$name.%g" 1 "$SHARDS") --out "$W/eval/$name" \
    > "$W/eval/$name.log" 2>&1
  say "$name: $(tail -n 1 "$W/eval/$name.log" | cut -c1-500)"
done
tar -C "$W" -czf "$OUT/eval.tar.gz" eval
say "done"
