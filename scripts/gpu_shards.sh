# Sourced by gpu_round.sh and gpu_eval_and_probe.sh: sharded evaluation of one adapter.
# Needs DATA, W, PY, DEVICE and `started` (for say) set by the caller.

say() { echo "[$(( $(date +%s) - started ))s] $*"; }
limit() { awk "BEGIN{print int($1*60+120)}"; }  # minutes of work -> seconds for timeout

data_of() {  # suite -> episodes file and extra eval flags
  case $1 in
    synthetic) echo "$DATA/syn_test.jsonl --gen-limit 5" ;;
    locomo) echo "$DATA/locomo.jsonl" ;;
    qa*) echo "$DATA/babi_test_$1.jsonl --gen-limit 2" ;;
  esac
}

start_shards() {  # adapter, minutes, "suite:N ...": N background processes per suite
  local adapter=$1 minutes=$2 suite n k
  mkdir -p "$W/eval"
  for spec in $3; do
    suite=${spec%%:*} n=${spec##*:}
    for k in $(seq 1 "$n"); do
      # shellcheck disable=SC2046  # data_of gives a file and flags
      timeout "$(limit "$minutes")" $PY -m agentmem.cli eval --data $(data_of "$suite") \
        --adapter "$adapter" --shard "$k/$n" --device "$DEVICE" --max-minutes "$minutes" \
        --out "$W/eval/$suite.$k" > "$W/eval/$suite.$k.log" 2>&1 &
    done
  done
}

merge_shards() {  # "suite:N ...": merge each suite's shards into $W/merged/<suite>, print them
  local suite n
  mkdir -p "$W/merged"
  for spec in $1; do
    suite=${spec%%:*} n=${spec##*:}
    # shellcheck disable=SC2046  # one folder per shard
    $PY -m agentmem.cli eval-merge $(seq -f "$W/eval/$suite.%g" 1 "$n") \
      --out "$W/merged/$suite" > "$W/merged/$suite.log" 2>&1 &
  done
  wait
  for spec in $1; do
    suite=${spec%%:*}
    say "$suite: $(tail -n 1 "$W/merged/$suite.log" | cut -c1-600)"
  done
}
