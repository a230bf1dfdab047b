#!/usr/bin/env bash
# The memory figures the "never spoil" bars need for one adapter, on this machine's CPU,
# resumable (a finished part is skipped on a rerun); reply harm is benchmarks/reply_harm.py's:
#   - memory+full-context (and memory-only) on the synthetic test split and bAbI qa1–qa5, merged
#     with the adapter-free baselines in runs/baselines/<suite> (full-context etc.; rebuilt as
#     docs/results/evals/README.md says, their summaries are there), plus the swap test on
#     bAbI qa1 memory-only.
# Usage: ADAPTER=dir DATA=dir-with-test-jsonl OUT=dir scripts/preservation_bars.sh
# DATA holds syn_test.jsonl and babi_test_qa{1..5}.jsonl, built by the commands of the shipped card.
set -euo pipefail
: "${ADAPTER:?adapter folder}" "${DATA:?folder of test episode files}" "${OUT:?output folder}"
PY=${PY:-.venv/bin/python}
THREADS=${THREADS:-2}
LIMIT=${LIMIT:-}  # the first N episodes of each file (merged with the baselines' same episodes)
BASE=runs/baselines
export OMP_NUM_THREADS=$THREADS
run() { [ -f "$1/results.json" ] && { echo "done: $1"; return; }; shift; "$PY" -m agentmem.cli "$@"; }

mkdir -p "$OUT"
mem() {  # suite file regimes [extra flags]
  local suite=$1 file=$2 regimes=$3; shift 3
  run "$OUT/mem-$suite" eval --data "$DATA/$file" --adapter "$ADAPTER" --device cpu \
      --regimes "$regimes" --no-generate ${LIMIT:+--limit "$LIMIT"} "$@" --out "$OUT/mem-$suite"
  [ -f "$OUT/card-$suite/results.json" ] || "$PY" -m agentmem.cli eval-merge "$BASE/$suite" \
      "$OUT/mem-$suite" ${LIMIT:+--common-episodes} --out "$OUT/card-$suite"
}
mem babi-qa1 babi_test_qa1.jsonl memory-only,memory+window,memory+full-context
mem synthetic syn_test.jsonl memory-only,memory+full-context --no-swap
for t in 2 3 4 5; do
  mem "babi-qa$t" "babi_test_qa$t.jsonl" memory-only,memory+full-context --no-swap
done
echo "all parts in $OUT"
