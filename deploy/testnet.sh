#!/usr/bin/env bash
# A testnet of N `timed` validators (default 5) on one Linux machine, each in its own network
# namespace, joined by veth links to a bridge, with WAN-like latency, jitter and loss on every
# node's link. It runs for a given duration, kills -9 and restarts a node now and then, and writes a
# Markdown report: heights per node, forks (every height's hash compared across nodes), finality
# p50/p99, blocks per minute, resident memory and CPU per node sampled every minute, restarts
# survived.
#
# It uses the real deployment path of docs/deploy.md: `timed keygen` per node, one `timed genesis`,
# then `timed run --genesis --key --data-dir --listen --peers` per node.
#
#   sudo deploy/testnet.sh --duration 1h               # writes docs/testnet-report.md
#   sudo deploy/testnet.sh --duration 3m --out /tmp/report.md --restart-every 1m
#
# Needs: root, iproute2 (ip netns, veth, bridge), curl, jq, python3; and either the kernel's
# sch_netem (`tc qdisc ... netem`) or, where the kernel lacks it, iptables with the NFQUEUE
# target, through which deploy/netem-nfqueue.py applies the same delay, jitter and loss.
#
# Layout: namespace <prefix>-hub holds bridge br0 (10.77.0.254/24); namespace <prefix>-nI holds
# eth0 = 10.77.0.I/24, whose peer vI is a port of br0. The shaping is on each node's eth0 egress, so
# a packet from node A to node B is delayed once (by A's link) and may be lost once. The script
# queries the nodes from the hub (10.77.0.254); with the NFQUEUE shaper those replies are not
# shaped, with netem they are.
#
# Everything it creates is removed on exit, also on Ctrl-C or SIGTERM (a first Ctrl-C ends the run
# early and still writes the report, marked partial; a second one stops at once). Leftovers of a
# run that was killed with -9 are removed when the next run starts. Only one run per --prefix at a
# time (a lock in /run/lock): a second would remove the first one's namespaces as leftovers.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)

NODES=5
DURATION=1h
LATENCY=50ms
JITTER=10ms
LOSS=0.1
BLOCK_TIME=8s
RESTART_EVERY=20m
SAMPLE=60s
REJOIN_TIMEOUT=180s
EMULATOR=auto
BIN=$repo/target/release/timed
WORK=/tmp/timed-testnet
OUT=$repo/docs/testnet-report.md
PREFIX=tnet
SUBNET=10.77.0
PORT=8001
CLEAN_ONLY=0

usage() {
  cat <<EOF
Usage: sudo $0 [options]
  --nodes N             validators, 2..200 (default $NODES)
  --duration D          how long to run: 90s, 3m, 1h (default $DURATION)
  --latency D           one-way delay on each node's link (default $LATENCY)
  --jitter D            +/- uniform jitter on that delay (default $JITTER)
  --loss PCT            packet loss on each node's link, percent (default $LOSS)
  --block-time D        the genesis block time (default $BLOCK_TIME)
  --restart-every D     kill -9 and restart one node (in turn) this often; 0 = never (default $RESTART_EVERY)
  --sample D            sampling period for heights, memory and CPU (default $SAMPLE)
  --rejoin-timeout D    how long a restarted node may take to catch up (default $REJOIN_TIMEOUT)
  --emulator E          auto | netem | nfqueue (default $EMULATOR: netem if the kernel has it)
  --bin PATH            the timed binary (default target/release/timed)
  --work DIR            keys, genesis, data, logs and raw samples (default $WORK; emptied first)
  --out FILE            the Markdown report; CSV samples are written beside it (default docs/testnet-report.md)
  --prefix P            namespace name prefix (default $PREFIX)
  --subnet A.B.C        the /24 the nodes live in (default $SUBNET)
  --clean               only remove what a previous run left behind, then exit
EOF
}

die() { echo "testnet: $*" >&2; exit 1; }
say() { echo "testnet: [$(date +%H:%M:%S)] $*" >&2; }

# "90", "90s", "3m", "1h", "500ms" -> milliseconds
to_ms() {
  local v=$1
  case $v in
    *ms) v=${v%ms}; [[ $v =~ ^[0-9]+$ ]] || return 1; echo "$v" ;;
    *s) v=${v%s}; [[ $v =~ ^[0-9]+$ ]] || return 1; echo $((v * 1000)) ;;
    *m) v=${v%m}; [[ $v =~ ^[0-9]+$ ]] || return 1; echo $((v * 60000)) ;;
    *h) v=${v%h}; [[ $v =~ ^[0-9]+$ ]] || return 1; echo $((v * 3600000)) ;;
    *) [[ $v =~ ^[0-9]+$ ]] || return 1; echo $((v * 1000)) ;;
  esac
}
to_s() { local ms; ms=$(to_ms "$1") || die "not a duration: $1"; echo $((ms / 1000)); }

while [[ $# -gt 0 ]]; do
  case $1 in
    --nodes) NODES=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --latency) LATENCY=$2; shift 2 ;;
    --jitter) JITTER=$2; shift 2 ;;
    --loss) LOSS=$2; shift 2 ;;
    --block-time) BLOCK_TIME=$2; shift 2 ;;
    --restart-every) RESTART_EVERY=$2; shift 2 ;;
    --sample) SAMPLE=$2; shift 2 ;;
    --rejoin-timeout) REJOIN_TIMEOUT=$2; shift 2 ;;
    --emulator) EMULATOR=$2; shift 2 ;;
    --bin) BIN=$2; shift 2 ;;
    --work) WORK=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --prefix) PREFIX=$2; shift 2 ;;
    --subnet) SUBNET=$2; shift 2 ;;
    --clean) CLEAN_ONLY=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown option: $1" ;;
  esac
done

if ! [[ $NODES =~ ^[0-9]+$ ]] || ((NODES < 2 || NODES > 200)); then die "--nodes must be 2..200"; fi
[[ $LOSS =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "--loss is a percentage, e.g. 0.1"
[[ $PREFIX =~ ^[a-z][a-z0-9]{0,7}$ ]] || die "--prefix: 1-8 lowercase letters and digits"
[[ $SUBNET =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "--subnet: three octets, e.g. 10.77.0"
[[ $EMULATOR =~ ^(auto|netem|nfqueue)$ ]] || die "--emulator: auto, netem or nfqueue"
duration_s=$(to_s "$DURATION")
restart_s=$(to_s "$RESTART_EVERY")
sample_s=$(to_s "$SAMPLE")
rejoin_s=$(to_s "$REJOIN_TIMEOUT")
latency_ms=$(to_ms "$LATENCY") || die "not a duration: $LATENCY"
jitter_ms=$(to_ms "$JITTER") || die "not a duration: $JITTER"
((sample_s >= 1)) || die "--sample must be at least 1s"
((jitter_ms <= latency_ms)) || die "--jitter must not exceed --latency"
((EUID == 0)) || die "needs root (network namespaces, veth, bridge, tc)"

HUB=$PREFIX-hub
ns() { echo "$PREFIX-n$1"; }
hub() { ip netns exec "$HUB" "$@"; }
addr() { echo "$SUBNET.$1"; }

# Kill every process inside our namespaces (ours: nodes, shapers, curls), then delete the
# namespaces; the veths and the bridge go with them.
cleanup() {
  local spaces pids n
  spaces=$(ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^$PREFIX-(hub|n[0-9]+)$" || true)
  [[ -n $spaces ]] || return 0
  for sig in TERM KILL; do
    pids=""
    for n in $spaces; do pids="$pids $(ip netns pids "$n" 2>/dev/null || true)"; done
    pids=$(echo "$pids" | xargs)
    [[ -n $pids ]] || break
    # shellcheck disable=SC2086 # a list of pids
    kill -s "$sig" $pids 2>/dev/null || true
    for _ in $(seq 1 50); do
      # shellcheck disable=SC2086
      kill -0 $pids 2>/dev/null || break
      sleep 0.2
    done
  done
  for n in $spaces; do ip netns del "$n" 2>/dev/null || true; done
  say "removed namespaces: $(echo "$spaces" | xargs)"
}

# One run per prefix at a time: a second one would take the first one's namespaces for leftovers.
# The long-lived children do not inherit the lock, so a run killed with -9 does not keep it.
lock=/run/lock/timed-testnet-$PREFIX
mkdir -p /run/lock
exec 9>>"$lock"
if ! flock -n 9; then
  die "another deploy/testnet.sh (pid $(cat "$lock.pid" 2>/dev/null || echo ?)) is using --prefix $PREFIX; stop it with kill -TERM"
fi
echo $$ >"$lock.pid"

if ((CLEAN_ONLY)); then cleanup; exit 0; fi

for tool in ip curl jq python3 setsid flock; do
  command -v "$tool" >/dev/null || die "needs $tool"
done
[[ -x $BIN ]] || die "no binary at $BIN: cargo build --release -p timed (or --bin PATH)"

cleanup # leftovers of a previous run killed with -9
STOP=0
on_signal() {
  if ((STOP)); then exit 130; fi
  STOP=1
  say "interrupted: collecting what there is, then cleaning up (again to stop at once)"
}
trap cleanup EXIT
trap on_signal INT TERM

rm -rf "$WORK"
mkdir -p "$WORK"
OUT_DIR=$(cd "$(dirname "$OUT")" && pwd) || die "no directory for $OUT"
OUT=$OUT_DIR/$(basename "$OUT")
events=$WORK/events.csv
samples=$WORK/samples.csv
echo "t_s,event,node,height,detail" >"$events"
echo "t_s,node,pid,height,round,peers,rss_kib,cpu_ticks,finality_latency_ms,load1" >"$samples"
T0=$(date +%s)
event() { echo "$(($(date +%s) - T0)),$1,$2,$3,$4" >>"$events"; }

# ---- network ----
say "network: $NODES namespaces on bridge br0 in $HUB, $SUBNET.0/24"
ip netns add "$HUB"
hub ip link set lo up
hub ip link add br0 type bridge
hub ip addr add "$(addr 254)/24" dev br0
hub ip link set br0 up
for i in $(seq 1 "$NODES"); do
  ip netns add "$(ns "$i")"
  ip -n "$(ns "$i")" link set lo up
  hub ip link add "v$i" type veth peer name eth0 netns "$(ns "$i")"
  hub ip link set "v$i" master br0 up
  ip -n "$(ns "$i")" addr add "$(addr "$i")/24" dev eth0
  ip -n "$(ns "$i")" link set eth0 up
done

# ---- link shaping: netem on each node's eth0, or the NFQUEUE stand-in ----
netem_args=(delay "${latency_ms}ms" "${jitter_ms}ms" loss "${LOSS}%")
if [[ $EMULATOR != nfqueue ]]; then
  if tc -n "$(ns 1)" qdisc add dev eth0 root netem "${netem_args[@]}" 2>"$WORK/tc.err"; then
    EMULATOR=netem
  elif [[ $EMULATOR == netem ]]; then
    die "tc netem failed: $(cat "$WORK/tc.err")"
  else
    say "tc netem unavailable ($(head -1 "$WORK/tc.err")); using deploy/netem-nfqueue.py"
    EMULATOR=nfqueue
  fi
fi
declare -A SHAPER=()
start_shaper() {
  local i=$1
  setsid ip netns exec "$(ns "$i")" python3 "$here/netem-nfqueue.py" --delay-ms "$latency_ms" \
    --jitter-ms "$jitter_ms" --loss-pct "$LOSS" >>"$WORK/shaper-n$i.log" 2>&1 9>&- &
  SHAPER[$i]=$!
}
for i in $(seq 1 "$NODES"); do
  if [[ $EMULATOR == netem ]]; then
    ((i == 1)) || tc -n "$(ns "$i")" qdisc add dev eth0 root netem "${netem_args[@]}"
  else
    command -v iptables >/dev/null || die "tc netem is unavailable and so is iptables (apt-get install iptables)"
    # What a node sends to the hub (our /status and /blocks requests) is not part of the network
    # under test: it bypasses the queue, so that fetching blocks does not load the shaper.
    ip netns exec "$(ns "$i")" iptables -A OUTPUT -o eth0 ! -d "$(addr 254)" -j NFQUEUE --queue-num 0
    start_shaper "$i"
  fi
done
sleep 1
if [[ $EMULATOR == nfqueue ]]; then
  for i in $(seq 1 "$NODES"); do
    kill -0 "${SHAPER[$i]}" 2>/dev/null || die "shaper of n$i failed: $(cat "$WORK/shaper-n$i.log")"
  done
fi
say "links: delay ${latency_ms} ms +/- ${jitter_ms} ms, loss ${LOSS} % on each node's egress ($EMULATOR)"

# ---- keys and genesis: the deployment path of docs/deploy.md ----
validators=()
for i in $(seq 1 "$NODES"); do
  mkdir -p "$WORK/n$i"
  pk=$("$BIN" keygen --out "$WORK/n$i/validator.key" 2>/dev/null)
  validators+=(--validator "validator$i:$pk:100:$(addr "$i"):$PORT")
done
"$BIN" genesis --chain-id timed-testnet --block-time "$BLOCK_TIME" "${validators[@]}" \
  --out "$WORK/genesis.json" >/dev/null 2>&1 || die "timed genesis failed"

peers_of() {
  local i=$1 j list=()
  for j in $(seq 1 "$NODES"); do ((j == i)) || list+=("$(addr "$j"):$PORT"); done
  (IFS=,; echo "${list[*]}")
}
declare -A PID=()
start_node() {
  local i=$1
  local cmd=("$BIN" run --genesis "$WORK/genesis.json" --key "$WORK/n$i/validator.key"
    --data-dir "$WORK/n$i/data" --listen "$(addr "$i"):$PORT" --peers "$(peers_of "$i")")
  echo "ip netns exec $(ns "$i") ${cmd[*]}" >"$WORK/n$i/command"
  # setsid: a Ctrl-C at the terminal reaches this script, not the nodes.
  NO_COLOR=1 RUST_LOG=${RUST_LOG:-info} setsid ip netns exec "$(ns "$i")" "${cmd[@]}" >>"$WORK/n$i/node.log" 2>&1 9>&- &
  PID[$i]=$!
}

# status NODE -> /status JSON on stdout (empty on failure)
status() { hub curl -s --max-time 5 "http://$(addr "$1"):$PORT/status" || true; }
height_of() { status "$1" | jq -r '.height // empty' 2>/dev/null || true; }
hash_at() {
  hub curl -s --max-time 5 "http://$(addr "$1"):$PORT/blocks/$2" | jq -r '.hash // empty' 2>/dev/null || true
}

clk_tck=$(getconf CLK_TCK)
git_rev=$(git -C "$repo" describe --always --dirty 2>/dev/null || echo unknown)
{
  echo "nodes=$NODES"
  echo "duration_s=$duration_s"
  echo "latency_ms=$latency_ms"
  echo "jitter_ms=$jitter_ms"
  echo "loss_pct=$LOSS"
  echo "block_time=$BLOCK_TIME"
  echo "restart_every_s=$restart_s"
  echo "sample_s=$sample_s"
  echo "rejoin_timeout_s=$rejoin_s"
  echo "emulator=$EMULATOR"
  echo "kernel=$(uname -r)"
  echo "cpus=$(nproc)"
  echo "cpu_model=$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)"
  echo "clk_tck=$clk_tck"
  echo "git_rev=$git_rev"
  echo "binary=$("$BIN" --version 2>/dev/null | head -1)"
  echo "started=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
} >"$WORK/meta.env"

for i in $(seq 1 "$NODES"); do start_node "$i"; event start "n$i" 0 "pid ${PID[$i]}"; done
say "started $NODES validators; running for ${duration_s} s (work dir $WORK)"

# One sample per node: height etc. from /status, VmRSS and utime+stime of the process. The
# statuses are fetched at the same time: one after the other they took most of a block interval
# over the shaped links at 500 ms blocks, and the heights of the last nodes asked ran ahead.
sample() {
  local t=$(($(date +%s) - T0)) i pid s h r p f rss ticks st rest load fetch
  local -a fetches=()
  read -r load _ </proc/loadavg
  fetch=$(mktemp -d "$WORK/sample.XXXXXX")
  for i in $(seq 1 "$NODES"); do
    status "$i" >"$fetch/$i" &
    fetches+=($!)
  done
  wait "${fetches[@]}" 2>/dev/null || true
  for i in $(seq 1 "$NODES"); do
    pid=${PID[$i]:-}
    s=$(cat "$fetch/$i" 2>/dev/null || true)
    h=$(jq -r '.height // ""' <<<"$s" 2>/dev/null || true)
    r=$(jq -r '.round // ""' <<<"$s" 2>/dev/null || true)
    p=$(jq -r '(.peers // []) | length' <<<"$s" 2>/dev/null || true)
    f=$(jq -r '.finality_latency_ms // ""' <<<"$s" 2>/dev/null || true)
    rss="" ticks=""
    if [[ -n $pid && -r /proc/$pid/status ]]; then
      rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
      st=$(cat "/proc/$pid/stat" 2>/dev/null || true)
      if [[ -n $st ]]; then
        rest=${st##*) }
        read -r -a fields <<<"$rest"
        ticks=$((fields[11] + fields[12])) # utime + stime (fields 14 and 15)
      fi
    fi
    echo "$t,n$i,$pid,$h,$r,$p,$rss,$ticks,$f,$load" >>"$samples"
  done
  rm -rf "$fetch"
}

# Heights of all nodes but one, as "min max" (empty when none answers).
others_range() {
  local skip=$1 j h min="" max=""
  for j in $(seq 1 "$NODES"); do
    ((j == skip)) && continue
    h=$(height_of "$j")
    [[ -n $h ]] || continue
    [[ -z $min ]] || ((h < min)) && min=$h
    [[ -z $max ]] || ((h > max)) && max=$h
  done
  echo "$min $max"
}

next_sample=$T0
next_restart=$((restart_s > 0 ? T0 + restart_s : 0))
restarts=0
rejoin_node="" rejoin_deadline=0 rejoin_from=0 down_since=0
while ((!STOP)); do
  now=$(date +%s)
  ((now - T0 < duration_s)) || break
  if ((now >= next_sample)); then
    sample
    next_sample=$((next_sample + sample_s))
    say "t=$((now - T0))s heights: $(tail -n "$NODES" "$samples" | cut -d, -f4 | xargs)"
  fi
  # A node that exits by itself is a failure: record it, do not hide it by restarting.
  for i in $(seq 1 "$NODES"); do
    pid=${PID[$i]:-}
    if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then
      wait "$pid" 2>/dev/null && rc=0 || rc=$?
      event exited "n$i" "" "exit status $rc"
      say "n$i exited by itself (status $rc); see $WORK/n$i/node.log"
      PID[$i]=""
    fi
    if [[ $EMULATOR == nfqueue ]] && ! kill -0 "${SHAPER[$i]}" 2>/dev/null; then
      event shaper-restarted "n$i" "" "the NFQUEUE shaper died; its link dropped packets until now"
      start_shaper "$i"
    fi
  done
  # The scheduled kill -9 and restart, one node in turn; not in the last minute.
  if ((next_restart > 0 && now >= next_restart)) && [[ -z $rejoin_node ]] && ((T0 + duration_s - now > 60)); then
    i=$((restarts % NODES + 1))
    restarts=$((restarts + 1))
    next_restart=$((next_restart + restart_s))
    if [[ -n ${PID[$i]:-} ]]; then
      h=$(height_of "$i")
      kill -9 "${PID[$i]}"
      wait "${PID[$i]}" 2>/dev/null || true
      event kill9 "n$i" "$h" "pid ${PID[$i]}"
      say "kill -9 n$i at height ${h:-?}"
      sleep 2 # like RestartSec=2s of deploy/timed.service
      start_node "$i"
      event start "n$i" "" "pid ${PID[$i]}"
      rejoin_node=$i rejoin_deadline=$(($(date +%s) + rejoin_s)) rejoin_from=${h:-0} down_since=$now
    fi
  fi
  # Rejoined: the restarted node has reached the lowest height of the others, and its block at
  # that height is the same as theirs.
  if [[ -n $rejoin_node ]]; then
    i=$rejoin_node
    h=$(height_of "$i")
    read -r omin _ <<<"$(others_range "$i")"
    if [[ -n $h && -n $omin ]] && ((h >= omin && h > rejoin_from)); then
      ref=$((i % NODES + 1))
      mine=$(hash_at "$i" "$omin") theirs=$(hash_at "$ref" "$omin")
      if [[ -n $mine && $mine == "$theirs" ]]; then
        event rejoined "n$i" "$h" "after $(($(date +%s) - down_since)) s; hash at $omin agrees with n$ref"
        say "n$i rejoined at height $h after $(($(date +%s) - down_since)) s"
      else
        event rejoin-mismatch "n$i" "$h" "hash at $omin: ${mine:-none} vs n$ref ${theirs:-none}"
        say "n$i DISAGREES at height $omin"
      fi
      rejoin_node=""
    elif (($(date +%s) > rejoin_deadline)); then
      event rejoin-timeout "n$i" "${h:-}" "not caught up within $rejoin_s s"
      say "n$i did not rejoin within $rejoin_s s"
      rejoin_node=""
    fi
  fi
  sleep 1
done

# ---- collect: a last sample, every node's blocks, final status; then stop the nodes ----
((STOP)) && echo "partial=1" >>"$WORK/meta.env"
sample
echo "ended=$(date -u +%Y-%m-%dT%H:%M:%SZ)" >>"$WORK/meta.env"
echo "elapsed_s=$(($(date +%s) - T0))" >>"$WORK/meta.env"
say "collecting blocks from every node"
for i in $(seq 1 "$NODES"); do
  status "$i" >"$WORK/status-n$i.json"
  : >"$WORK/blocks-n$i.tsv"
  from=1
  while :; do
    page=$(hub curl -s --max-time 60 "http://$(addr "$i"):$PORT/blocks?from=$from&limit=100" || true)
    rows=$(jq -r '.[] | [.height, .hash, .finality_ms, .certificate.round, .proposer, .signatures] | @tsv' \
      <<<"$page" 2>/dev/null || true)
    [[ -n $rows ]] || break
    echo "$rows" >>"$WORK/blocks-n$i.tsv"
    from=$(($(tail -1 <<<"$rows" | cut -f1) + 1))
  done
done
for i in $(seq 1 "$NODES"); do [[ -z ${PID[$i]:-} ]] || kill -TERM "${PID[$i]}" 2>/dev/null || true; done
for i in $(seq 1 "$NODES"); do [[ -z ${PID[$i]:-} ]] || wait "${PID[$i]}" 2>/dev/null || true; done
if [[ $EMULATOR == nfqueue ]]; then
  for i in $(seq 1 "$NODES"); do kill -TERM "${SHAPER[$i]}" 2>/dev/null || true; done
  for i in $(seq 1 "$NODES"); do wait "${SHAPER[$i]}" 2>/dev/null || true; done
fi

base=${OUT%.md}
cp "$samples" "$base-samples.csv"
cp "$events" "$base-events.csv"
python3 "$here/testnet-report.py" "$WORK" --samples-name "$(basename "$base")-samples.csv" \
  --events-name "$(basename "$base")-events.csv" >"$OUT"
say "report: $OUT (raw: $base-samples.csv, $base-events.csv; everything in $WORK)"
if ((STOP)); then exit 130; fi
