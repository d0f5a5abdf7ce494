#!/usr/bin/env bash
# Database size over an hour at 100 ms blocks (issue 15): three development validators on
# loopback; validator1 keeps the last 10,000 blocks (--retain-blocks 10000), validator2 and 3 keep
# everything. Every minute it appends to sizes.csv: minute, validator1's height and lowest kept
# height, and the size of validator1's and validator2's timed.redb.
#
#   cargo build --release -p timed
#   scripts/measure-pruning-hour.sh [WORKDIR] [MINUTES]     # defaults: /tmp/pruning-hour, 62
#
# Ports 7201-7203 (QUIC and HTTP). The nodes are stopped at the end.
set -euo pipefail
BIN="$(cd "$(dirname "$0")/.." && pwd)/target/release/timed"
DIR="${1:-/tmp/pruning-hour}"
MINUTES="${2:-62}"
[ -x "$BIN" ] || { echo "build first: cargo build --release -p timed" >&2; exit 1; }
mkdir -p "$DIR" && cd "$DIR"
rm -rf d && mkdir d
for i in 1 2 3; do
  peers=""
  for j in 1 2 3; do [ "$j" != "$i" ] && peers="$peers127.0.0.1:$((7200 + j)),"; done
  extra=()
  [ "$i" = 1 ] && extra=(--retain-blocks 10000)
  RUST_LOG=warn "$BIN" --validator-id "validator$i" --port $((7200 + i)) --peers "${peers%,}" \
    --block-time 100ms --data-dir "d/v$i" "${extra[@]}" > "v$i.log" 2>&1 &
done
trap 'pkill -f "$BIN --validator-id" || true' EXIT
echo "minute,height,lowest,pruned_bytes,unpruned_bytes" > sizes.csv
for m in $(seq 1 "$MINUTES"); do
  sleep 60
  status=$(curl -s localhost:7201/status || true)
  h=$(echo "$status" | python3 -c "import json,sys; d=json.load(sys.stdin); print(d['height'], d['lowest_height'])" 2>/dev/null || echo "? ?")
  echo "$m,${h// /,},$(stat -c %s d/v1/timed.redb),$(stat -c %s d/v2/timed.redb)" >> sizes.csv
done
cat sizes.csv
