#!/usr/bin/env bash
# A GPU sitting that (a) evaluates an existing adapter in shards side by side and (b) meanwhile
# trains probe adapters on one task, memory-only views only, then measures their memory-only
# recall on that task's test split. Used for the second sitting of the shipped adapter (see its
# card): the shipped adapter's bAbI evaluation to ≥ 200 episodes per task, and whether memory-only
# recall of bAbI qa1 appears with 10× the steps a CPU can give.
#
# Needs what scripts/gpu_round.sh needs. Knobs: DATA, OUT, DEVICE (cuda), ADAPTER (the adapter to
# evaluate), SHARDS ("suite:N ..."), T_EVAL (minutes), PROBES ("name:flags;name:flags"), PROBE_DATA
# (train file), PROBE_TEST (test file), T_PROBE (training minutes), T_PROBE_EVAL, BATCH.
set -u
DATA=${DATA:?episode folder}
OUT=${OUT:?output folder}
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false
DEVICE=${DEVICE:-cuda}
ADAPTER=${ADAPTER:-agentmem/adapters_shipped/smollm2-135m-instruct}
SHARDS=${SHARDS:-qa1:2 qa2:3 qa3:5 qa5:2 locomo:2}
T_EVAL=${T_EVAL:-7.0}
PROBES=${PROBES:-qa1_r8:--rank 8;qa1_r32:--rank 32}
PROBE_DATA=${PROBE_DATA:-$DATA/babi_train_qa1.jsonl}
PROBE_TEST=${PROBE_TEST:-$DATA/babi_test_qa1.jsonl}
T_PROBE=${T_PROBE:-5.0}
T_PROBE_EVAL=${T_PROBE_EVAL:-1.5}
BATCH=${BATCH:-32}
W=${WORK:-/tmp/sitting}
PY=${PY:-python3}
mkdir -p "$W/merged" "$OUT"
started=$(date +%s)
# shellcheck source=scripts/gpu_shards.sh
. "$(dirname "$0")/gpu_shards.sh"

$PY -c "from agentmem.backbones import load_backbone; load_backbone()" || exit 1
say "backbone ready; evaluating $ADAPTER ($SHARDS, $T_EVAL min), probes for $T_PROBE min"

start_shards "$ADAPTER" "$T_EVAL" "$SHARDS"

probe() {  # name, flags: train memory-only on PROBE_DATA, then evaluate on PROBE_TEST
  local name=$1 flags=$2
  # shellcheck disable=SC2086  # flags is a list
  timeout "$(limit "$T_PROBE")" $PY -m agentmem.cli train --data "$PROBE_DATA" --out "$W/$name" \
    --steps 100000 --memory-only-steps 100000 --batch-size "$BATCH" --lr 2e-3 --warmup 0.05 \
    --write-mode message --save-every 100 --seed 0 --device "$DEVICE" --max-minutes "$T_PROBE" \
    $flags > "$W/$name.train.log" 2>&1
  tar -C "$W" -cf "$OUT/$name.tar" "$name/adapter" "$name/train_log.jsonl" "$name/loss.png"
  say "$name trained: $(tail -c 300 "$W/$name.train.log" | tr '\r' '\n' | tail -2 | head -1)"
  timeout "$(limit "$T_PROBE_EVAL")" $PY -m agentmem.cli eval --data "$PROBE_TEST" \
    --adapter "$W/$name/adapter" --regimes no-memory,window,memory-only,memory+window \
    --no-generate --device "$DEVICE" --max-minutes "$T_PROBE_EVAL" --out "$W/merged/probe-$name" \
    > "$W/merged/probe-$name.log" 2>&1
  say "$name: $(tail -n 1 "$W/merged/probe-$name.log" | cut -c1-400)"
}
IFS=';' read -ra specs <<< "$PROBES"
for spec in "${specs[@]}"; do
  probe "${spec%%:*}" "${spec#*:}" &
done
wait
merge_shards "$SHARDS"
tar -C "$W" -czf "$OUT/evals.tar.gz" eval merged
say "done"
