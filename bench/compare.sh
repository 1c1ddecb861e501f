#!/usr/bin/env bash
# lockstep against etcd on this machine, with the same load generator
# (`lockstep bench`, an etcd v3 gRPC client) and the same durability: a
# three-member etcd and a three-member lockstep on loopback, every commit
# fsynced on both (no unsafe flags), data on the same disk. Each workload runs
# on both systems, alternating, --runs times; the table compares the means.
#
#   bench/compare.sh              the comparison (about 6 minutes; prints the table)
#   bench/compare.sh --smoke      a second of load per workload (the test suite's shape check)
#   bench/compare.sh --scaling    also throughput and p99 vs clients and value size, as SVG charts
#   bench/compare.sh --profile    lockstep only: `perf record` of the leader under the put workload
#                                 (after a warm-up run of the same length)
#   bench/compare.sh --results DIR --runs 3 --duration 10s
#   bench/compare.sh --only put,watch   only these workloads (rows of the table)
#
# Environment: BENCH_BIN (skip the release build and use this binary),
# BENCH_WORKDIR (where the members keep their data; must not be tmpfs; default
# a fresh directory under $TMPDIR or /var/tmp), BENCH_PORT_BASE (default 27000;
# 18 ports from there), KEEP=1 (keep the data directories and logs),
# BENCH_LOG_LEVEL (the lockstep members' log level, default warn).
#
# The table (stdout, and RESULTS/table.txt) has one line per workload:
#   put  lockstep 52000 qps p99 4.1 ms | etcd 21000 qps p99 9.8 ms | 2.48x
# where the ratio is lockstep's throughput over etcd's. Every run's JSON report
# is in RESULTS/. Everything started here is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

mode=full
scaling=0
profile=0
runs=2
duration=10s
results=""
only=""
while [ $# -gt 0 ]; do
  case "$1" in
    --smoke) mode=smoke ;;
    --scaling) scaling=1 ;;
    --profile) profile=1 ;;
    --runs) runs=$2; shift ;;
    --duration) duration=$2; shift ;;
    --results) results=$2; shift ;;
    --only) only=$2; shift ;;
    -h|--help) sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "compare.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

say() { printf '[compare %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
started_at=$(date +%s)

# --- the binaries -----------------------------------------------------------
if ! command -v etcd >/dev/null 2>&1; then
  say "installing etcd (Debian's etcd-server)"
  if [ "$(id -u)" = 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q etcd-server >&2 ||
      { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q etcd-server >&2; }
  else
    sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -q etcd-server >&2
  fi
fi
if [ -n "${BENCH_BIN:-}" ]; then
  bin=$BENCH_BIN
else
  say "building lockstep (release)"
  cargo build --release -q -p lockstep >&2
  bin="${CARGO_TARGET_DIR:-$repo/target}/release/lockstep"
fi
[ -x "$bin" ] || { echo "compare.sh: no lockstep binary at $bin" >&2; exit 2; }

if [ -z "$results" ]; then
  results="${CARGO_TARGET_DIR:-$repo/target}/bench-results/$(date -u +%Y%m%dT%H%M%SZ)-$mode"
fi
mkdir -p "$results"
results=$(cd "$results" && pwd)

# --- where the members live -------------------------------------------------
work=${BENCH_WORKDIR:-$(mktemp -d "${TMPDIR:-/var/tmp}/lockstep-compare.XXXXXX")}
mkdir -p "$work"
fstype=$(stat -f -c %T "$work")
if [ "$fstype" = tmpfs ] || [ "$fstype" = ramfs ]; then
  echo "compare.sh: $work is on $fstype; the members' data must be on a disk (set BENCH_WORKDIR)" >&2
  exit 2
fi

pids=()
cleanup() {
  local status=$?
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  if [ "${KEEP:-0}" = 1 ]; then say "kept the data in $work"; else rm -rf "$work"; fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Below Linux's ephemeral range (32768-60999 by default), so that no outgoing
# connection of another program holds one of these ports as its local port.
base=${BENCH_PORT_BASE:-27000}
port_busy() { ss -Htan exclude time-wait "( sport = :$1 )" 2>/dev/null | grep -q .; }
for offset in $(seq 0 17); do
  if port_busy $((base + offset)); then
    echo "compare.sh: port $((base + offset)) is in use (set BENCH_PORT_BASE)" >&2
    exit 2
  fi
done
# etcd: client base+0..2, peer base+3..5. lockstep: client base+6..8, peer
# base+9..11, admin base+12..14.
etcd_endpoints=""; lockstep_endpoints=""
for i in 1 2 3; do
  etcd_endpoints+="${etcd_endpoints:+,}http://127.0.0.1:$((base + i - 1))"
  lockstep_endpoints+="${lockstep_endpoints:+,}http://127.0.0.1:$((base + 5 + i))"
done

# --- etcd: three members, defaults (every commit fsynced) -------------------
start_etcd() {
  etcd_cluster=""
  for i in 1 2 3; do etcd_cluster+="${etcd_cluster:+,}e$i=http://127.0.0.1:$((base + 2 + i))"; done
  say "starting etcd ($(etcd --version | head -1)) in $work/etcd"
  for i in 1 2 3; do
    client=$((base + i - 1)); peer=$((base + 2 + i))
    mkdir -p "$work/etcd"
    etcd --name "e$i" --data-dir "$work/etcd/e$i" \
      --listen-client-urls "http://127.0.0.1:$client" --advertise-client-urls "http://127.0.0.1:$client" \
      --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
      --initial-cluster "$etcd_cluster" --initial-cluster-state new --initial-cluster-token compare \
      --logger zap --log-level error >"$work/etcd-e$i.log" 2>&1 &
    pids+=($!)
  done
}
[ "$profile" = 1 ] || start_etcd

# --- lockstep: three `lockstep serve` processes, generated configs -----------
say "starting lockstep ($("$bin" version | head -1)) in $work/lockstep"
mkdir -p "$work/lockstep"
members=""; lockstep_admins=""; lockstep_pids=()
for i in 1 2 3; do
  lockstep_admins+="${lockstep_admins:+,}http://127.0.0.1:$((base + 11 + i))"
  members+="    - id: $i
      peer: \"127.0.0.1:$((base + 8 + i))\"
      client: \"http://127.0.0.1:$((base + 5 + i))\"
      admin: \"http://127.0.0.1:$((base + 11 + i))\"
"
done
for i in 1 2 3; do
  config="$work/lockstep/member-$i.yaml"
  cat >"$config" <<EOF
# Generated by bench/compare.sh: defaults (WAL fsync before every acknowledgement) and loopback addresses.
member_id: $i
data_dir: "$work/lockstep/member-$i"
cluster:
  token: "compare"
  initial_members:
$members
listen:
  client: "127.0.0.1:$((base + 5 + i))"
  peer: "127.0.0.1:$((base + 8 + i))"
  admin: "127.0.0.1:$((base + 11 + i))"
log:
  level: "${BENCH_LOG_LEVEL:-warn}"
EOF
  "$bin" config check "$config" >&2
  "$bin" serve --config "$config" >"$work/lockstep-$i.log" 2>&1 &
  pids+=($!); lockstep_pids+=($!)
done

# Ready when a put succeeds through every member.
wait_ready() {
  local system=$1 endpoints=$2 ep
  for ep in ${endpoints//,/ }; do
    for attempt in $(seq 1 300); do
      if "$bin" bench put --endpoints "$ep" --total 1 --request-timeout 2s >/dev/null 2>&1; then break; fi
      if [ "$attempt" = 300 ]; then
        echo "compare.sh: $system at $ep is not ready after 30 s; its logs:" >&2
        tail -n 20 "$work"/"$system"*.log >&2 || true
        exit 1
      fi
      sleep 0.1
    done
  done
  say "$system is ready ($endpoints)"
}
[ "$profile" = 1 ] || wait_ready etcd "$etcd_endpoints"
wait_ready lockstep "$lockstep_endpoints"

# --- profile: perf on the leader under the put workload ------------------------
if [ "$profile" = 1 ]; then
  command -v perf >/dev/null || { echo "compare.sh: --profile needs perf (apt-get install linux-perf)" >&2; exit 2; }
  leader=$("$bin" cluster leader --endpoints "$lockstep_admins" --output json | jq -r '.leader')
  leader_pid=${lockstep_pids[$((leader - 1))]}
  say "profiling the leader, member $leader (pid $leader_pid), under put (100 clients, 10 connections, $duration)"
  seconds=${duration%s}
  # A warm-up run first, so that the profile is of a cluster with some history
  # (the steady state), not of an empty one.
  "$bin" bench put --clients 100 --conns 10 --key-space 100000 --total 10000000 --duration "$duration" \
    --endpoints "$lockstep_endpoints" --label lockstep --name put --output json >"$results/profile-put-warmup.json"
  # Self time per symbol (no call graphs: the release build has no frame pointers) ...
  perf record -F 999 -p "$leader_pid" -o "$results/perf-flat.data" -- sleep "$seconds" 2>"$results/perf-flat.log" &
  flat=$!
  "$bin" bench put --clients 100 --conns 10 --key-space 100000 --total 10000000 --duration "$duration" \
    --endpoints "$lockstep_endpoints" --label lockstep --name put --output json >"$results/profile-put-flat.json"
  wait "$flat"
  # ... then call graphs from DWARF unwinding, at a lower rate (each sample copies 8 KiB of stack).
  perf record -F 199 --call-graph dwarf,8192 -p "$leader_pid" -o "$results/perf-graph.data" -- sleep "$seconds" \
    2>"$results/perf-graph.log" &
  graph=$!
  "$bin" bench put --clients 100 --conns 10 --key-space 100000 --total 10000000 --duration "$duration" \
    --endpoints "$lockstep_endpoints" --label lockstep --name put --output json >"$results/profile-put-graph.json"
  wait "$graph"
  perf report -i "$results/perf-flat.data" --stdio --no-children --sort dso,symbol --percent-limit 0.5 \
    >"$results/profile-self.txt" 2>/dev/null
  perf report -i "$results/perf-flat.data" --stdio --no-children --sort comm --percent-limit 0.5 \
    >"$results/profile-threads.txt" 2>/dev/null
  perf report -i "$results/perf-graph.data" --stdio --children --sort symbol --percent-limit 2 -g none \
    >"$results/profile-inclusive.txt" 2>/dev/null
  say "profile of member $leader in $results (profile-self.txt, profile-threads.txt, profile-inclusive.txt)"
  grep -v '^#' "$results/profile-self.txt" | grep -v '^$' | head -40
  exit 0
fi

{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "mode: $mode, runs: $runs"
  echo "machine: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo) memory"
  echo "kernel: $(uname -r)"
  echo "disk: $(df -h --output=source,fstype,size "$work" | tail -1) (data of both systems: $work)"
  echo "etcd: $(etcd --version | head -1), defaults (fsync on every commit)"
  echo "lockstep: $("$bin" version | head -1), defaults (WAL fsync before every acknowledgement)"
  echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$results/env.txt"

# --- the workloads ------------------------------------------------------------
if [ "$mode" = smoke ]; then
  duration=1s; total=2000; watch_total=20; watch_rate=50; watchers=10; streams=2
else
  total=1000000; watch_rate=100; watchers=100; streams=10
  # The watch run lasts about as long as the others: put-rate x duration puts.
  watch_total=$(awk -v d="${duration%s}" -v r="$watch_rate" 'BEGIN { printf "%d", d * r }')
fi
common=(--duration "$duration" --output json)
declare -A workload
workload[put]="put --clients 100 --conns 10 --key-space 100000 --total $total"
workload[range-linearizable]="range bench-range-key --consistency l --clients 100 --conns 10 --total $total"
workload[range-serializable]="range bench-range-key --consistency s --clients 100 --conns 10 --total $total"
workload[txn-put]="txn-put --txn-ops 1 --clients 100 --conns 10 --key-space 100000 --total $total"
workload[watch]="watch --watchers $watchers --streams $streams --put-rate $watch_rate --clients 1 --conns $streams --total $watch_total"
workload[put-1-client]="put --clients 1 --conns 1 --key-space 100000 --total $total"
workload[lease-keepalive]="lease-keepalive --clients 100 --conns 10 --total $total"
rows=(put range-linearizable range-serializable txn-put watch put-1-client lease-keepalive)
if [ -n "$only" ]; then
  for row in ${only//,/ }; do
    [ -n "${workload[$row]:-}" ] || { echo "compare.sh: --only: no workload $row (${rows[*]})" >&2; exit 2; }
  done
  IFS=' ' read -r -a rows <<<"${only//,/ }"
fi

reports=()
bench_one() { # system row run extra-args...
  local system=$1 row=$2 run=$3; shift 3
  local endpoints=$etcd_endpoints
  [ "$system" = lockstep ] && endpoints=$lockstep_endpoints
  local out="$results/$row-$system-$run.json"
  # shellcheck disable=SC2086
  if ! "$bin" bench "$@" --endpoints "$endpoints" --label "$system" --name "$row" "${common[@]}" >"$out"; then
    say "$row on $system, run $run: no request succeeded (see $out)"
  fi
  reports+=("$out")
  say "$row $system run $run: $(jq -r '"\(.summary.throughput_per_s | floor) \(.unit)/s, p99 \(.summary.latency_ms.p99) ms, \(.summary.errors) errors"' "$out" 2>/dev/null || echo '?')"
}

for run in $(seq 1 "$runs"); do
  for row in "${rows[@]}"; do
    # Alternate which system goes first, so that neither always runs on a warmer machine.
    if [ $((run % 2)) = 1 ]; then order=(lockstep etcd); else order=(etcd lockstep); fi
    for system in "${order[@]}"; do
      # shellcheck disable=SC2086
      bench_one "$system" "$row" "$run" ${workload[$row]}
    done
  done
done

"$bin" bench table "${reports[@]}" --candidate lockstep --baseline etcd >"$results/table.txt"

# --- scaling ------------------------------------------------------------------
if [ "$scaling" = 1 ]; then
  scale_duration=5s
  [ "$mode" = smoke ] && scale_duration=1s
  clients_reports=(); size_reports=()
  for clients in 1 10 100 1000; do
    conns=$(( clients < 10 ? clients : 10 ))
    for system in lockstep etcd; do
      endpoints=$etcd_endpoints; [ "$system" = lockstep ] && endpoints=$lockstep_endpoints
      out="$results/scaling-clients-$clients-$system.json"
      "$bin" bench put --clients "$clients" --conns "$conns" --key-space 100000 --total "$total" \
        --duration "$scale_duration" --endpoints "$endpoints" --label "$system" --name "put-$clients-clients" \
        --output json >"$out" || true
      clients_reports+=("$out"); [ "$clients" = 100 ] && size_reports+=("$out")
      say "scaling: $clients clients, $system: $(jq -r '"\(.summary.throughput_per_s | floor)/s p99 \(.summary.latency_ms.p99) ms, \(.summary.errors) errors"' "$out" 2>/dev/null || echo '?')"
    done
  done
  for size in 4096 65536; do
    for system in lockstep etcd; do
      endpoints=$etcd_endpoints; [ "$system" = lockstep ] && endpoints=$lockstep_endpoints
      out="$results/scaling-value-$size-$system.json"
      "$bin" bench put --clients 100 --conns 10 --val-size "$size" --key-space 100000 --total "$total" \
        --duration "$scale_duration" --endpoints "$endpoints" --label "$system" --name "put-value-$size" \
        --output json >"$out" || true
      size_reports+=("$out")
      say "scaling: value $size B, $system: $(jq -r '"\(.summary.throughput_per_s | floor)/s p99 \(.summary.latency_ms.p99) ms, \(.summary.errors) errors"' "$out" 2>/dev/null || echo '?')"
    done
  done
  "$bin" bench plot --x clients --out "$results/scaling-clients" --title "put (256 B values): lockstep vs etcd by clients" \
    "${clients_reports[@]}" >&2
  "$bin" bench plot --x val-size --out "$results/scaling-value-size" --title "put (100 clients): lockstep vs etcd by value size" \
    "${size_reports[@]}" >&2
  "$bin" bench table "${clients_reports[@]}" "${size_reports[@]:2}" >"$results/scaling.txt"
fi

echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$results/env.txt"
echo "took: $(( $(date +%s) - started_at )) s" >>"$results/env.txt"
say "done in $(( $(date +%s) - started_at )) s; reports, table and environment in $results"
cat "$results/table.txt"
