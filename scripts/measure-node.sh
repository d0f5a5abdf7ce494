#!/usr/bin/env bash
# Runs a local devnet and samples each node's resident memory and CPU use at a fixed interval.
#
#   scripts/measure-node.sh [--nodes N] [--block-time T] [--duration SECONDS] [--interval SECONDS]
#                           [--timed PATH]
#
# Defaults: 5 nodes, block time 1s, 600 s, a sample every 60 s, ./target/release/timed.
# Each row: node, VmRSS (MiB, from /proc/PID/status), CPU % of one core over the last interval
# (utime + stime from /proc/PID/stat), and the node's height. A summary per node follows: peak RSS,
# mean CPU over the whole run.
set -euo pipefail

nodes=5
block_time=1s
duration=600
interval=60
timed=./target/release/timed
while [ $# -gt 0 ]; do
  case "$1" in
    --nodes) nodes=$2; shift 2 ;;
    --block-time) block_time=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --interval) interval=$2; shift 2 ;;
    --timed) timed=$2; shift 2 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "measure-node.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
[ -x "$timed" ] || { echo "measure-node.sh: $timed not found; run cargo build --release -p timed" >&2; exit 1; }

dir=$(mktemp -d /tmp/timed-measure.XXXXXX)
hz=$(getconf CLK_TCK)
"$timed" devnet --nodes "$nodes" --block-time "$block_time" --duration "$((duration + 30))s" \
  --report --data-dir "$dir" > "$dir/devnet.out" 2>&1 &
devnet=$!
trap 'kill -TERM $devnet 2>/dev/null || true; wait $devnet 2>/dev/null || true; rm -rf "$dir"' EXIT

# The nodes are the devnet's children; wait until all are up and serving.
pids=()
for _ in $(seq 1 100); do
  mapfile -t pids < <(pgrep -P "$devnet" || true)
  [ "${#pids[@]}" -ge "$nodes" ] && break
  sleep 0.2
done
[ "${#pids[@]}" -ge "$nodes" ] || { echo "measure-node.sh: the devnet did not start; see $dir/devnet.out" >&2; cat "$dir/devnet.out" >&2; exit 1; }

name_of() { tr '\0' ' ' < "/proc/$1/cmdline" | sed -E 's/.*--validator-id ([^ ]+).*/\1/'; }
port_of() { tr '\0' ' ' < "/proc/$1/cmdline" | sed -E 's/.*--port ([0-9]+).*/\1/'; }
ticks_of() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_of() { awk '/^VmRSS:/ {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }
height_of() {
  curl -s --max-time 2 "http://127.0.0.1:$(port_of "$1")/status" 2>/dev/null \
    | sed -nE 's/.*"height":([0-9]+).*/\1/p' || true
}

declare -A first_ticks last_ticks peak
start=$(date +%s.%N)
for p in "${pids[@]}"; do first_ticks[$p]=$(ticks_of "$p"); last_ticks[$p]=${first_ticks[$p]}; peak[$p]=0; done
echo "measure-node: $nodes nodes, block time $block_time, ${duration} s, a sample every ${interval} s; $(nproc) cores"
printf '%-8s %-12s %10s %8s %8s\n' "t (s)" node "RSS (MiB)" "CPU %" height
elapsed=0
while [ "$elapsed" -lt "$duration" ]; do
  sleep "$interval"
  elapsed=$((elapsed + interval))
  for p in "${pids[@]}"; do
    [ -d "/proc/$p" ] || { echo "measure-node.sh: node $p exited; see $dir" >&2; exit 1; }
    t=$(ticks_of "$p")
    cpu=$(awk -v a="${last_ticks[$p]}" -v b="$t" -v hz="$hz" -v s="$interval" 'BEGIN {printf "%.2f", (b - a) / hz / s * 100}')
    last_ticks[$p]=$t
    rss=$(rss_of "$p")
    awk -v r="$rss" -v m="${peak[$p]}" 'BEGIN {exit !(r > m)}' && peak[$p]=$rss
    printf '%-8s %-12s %10s %8s %8s\n' "$elapsed" "$(name_of "$p")" "$rss" "$cpu" "$(height_of "$p")"
  done
done
total=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN {print b - a}')
echo "summary (whole run, ${total%.*} s):"
printf '%-12s %14s %14s\n' node "peak RSS (MiB)" "mean CPU %"
for p in "${pids[@]}"; do
  cpu=$(awk -v a="${first_ticks[$p]}" -v b="$(ticks_of "$p")" -v hz="$hz" -v s="$total" 'BEGIN {printf "%.2f", (b - a) / hz / s * 100}')
  printf '%-12s %14s %14s\n' "$(name_of "$p")" "${peak[$p]}" "$cpu"
done
