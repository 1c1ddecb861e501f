#!/usr/bin/env bash
# Compares lockstep's linearizability checker with Porcupine on the same
# generated single-register cas histories, and prints a Markdown table of
# wall time, peak memory (max RSS from /usr/bin/time -v) and their ratios.
#
# Usage: jepsen/bench/porcupine-compare.sh [TIMEOUT_S]
#
# Needs: cargo, Go >= 1.16 (Debian: apt-get install golang-go), GNU time
# (/usr/bin/time), and Porcupine's source: PORCUPINE_SRC=/path/to/porcupine,
# or a git clone of github.com/anishathalye/porcupine at
# PORCUPINE_GIT (default: /work/.mirror/anishathalye+porcupine/repo). No
# network access is needed.
#
# Both checkers get TIMEOUT_S (default 60) and the same semantics: fail ops
# left out, info ops may take effect at any later point or never.
set -euo pipefail

TIMEOUT_S="${1:-60}"
# Porcupine's address space is capped so that a blow-up cannot take the
# machine down; it then reports "killed" (out of memory).
PORCUPINE_MEM_MAX_MIB="${PORCUPINE_MEM_MAX_MIB:-8192}"
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
WORK="$(mktemp -d /tmp/porcupine-compare.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT

# Our side: the generator and the checker, as examples of lockstep-jepsen.
(cd "$ROOT" && cargo build --quiet --release -j 1 -p lockstep-jepsen --examples)
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
GEN="$TARGET/release/examples/gen_history"
CHECK="$TARGET/release/examples/check_history"

# Porcupine's side.
if [[ -z "${PORCUPINE_SRC:-}" ]]; then
  PORCUPINE_GIT="${PORCUPINE_GIT:-/work/.mirror/anishathalye+porcupine/repo}"
  mkdir -p "$WORK/porcupine"
  git -C "$PORCUPINE_GIT" archive HEAD | tar -x -C "$WORK/porcupine"
  PORCUPINE_SRC="$WORK/porcupine"
  PORCUPINE_REV="$(git -C "$PORCUPINE_GIT" rev-parse --short HEAD)"
else
  PORCUPINE_REV="$(git -C "$PORCUPINE_SRC" rev-parse --short HEAD 2>/dev/null || echo unknown)"
fi
mkdir -p "$WORK/cmd"
cp "$ROOT/jepsen/bench/porcupine_check.go" "$WORK/cmd/main.go"
cat > "$WORK/cmd/go.mod" <<MOD
module porcupinecheck

go 1.16

require github.com/anishathalye/porcupine v0.0.0

replace github.com/anishathalye/porcupine => $PORCUPINE_SRC
MOD
(cd "$WORK/cmd" && GOFLAGS=-mod=mod GOPROXY=off go build -o "$WORK/porcupine_check" .)

# name ops clients info_fraction seed [corruption]
CASES=(
  "10k-x10 10000 10 0 1"
  "10k-x10-stale-read 10000 10 0 1 stale-read"
  "10k-x10-info 10000 10 0.005 3"
  "10k-x10-info-stale-read 10000 10 0.005 3 stale-read"
  "50k-x50-info 50000 50 0.005 2"
  "50k-x50-info-stale-read 50000 50 0.005 2 stale-read"
  "50k-x50-info-swapped-writes 50000 50 0.005 2 swapped-writes"
)

# Runs a checker under a hard timeout; prints "verdict seconds max_rss_mib".
measure() {
  local out="$WORK/out" err="$WORK/err"
  set +e
  /usr/bin/time -v timeout --signal=KILL $((TIMEOUT_S + 30)) "$@" >"$out" 2>"$err"
  set -e
  local verdict seconds rss_kib
  verdict="$(tail -n 1 "$out" 2>/dev/null || true)"
  if [[ -z "$verdict" ]]; then verdict="killed"; fi
  verdict="${verdict// /_}"
  seconds="$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$err" |
    awk -F: '{ if (NF == 3) print $1*3600 + $2*60 + $3; else print $1*60 + $2 }')"
  rss_kib="$(awk -F': ' '/Maximum resident set size/ {print $2}' "$err")"
  echo "$verdict ${seconds:-0} $(( ${rss_kib:-0} / 1024 ))"
}

echo "Porcupine $PORCUPINE_REV ($(go version | awk '{print $3}')), lockstep-jepsen $(git -C "$ROOT" rev-parse --short HEAD), timeout ${TIMEOUT_S} s, $(nproc) cores"
echo
echo "| history | events | lockstep verdict | lockstep s | lockstep MiB | porcupine verdict | porcupine s | porcupine MiB | time ratio (porcupine / lockstep) |"
echo "|---|---|---|---|---|---|---|---|---|"
for case in "${CASES[@]}"; do
  read -r name ops clients info seed corruption <<<"$case"
  file="$WORK/$name.jsonl"
  "$GEN" "$ops" "$clients" "$info" "$seed" ${corruption:-} >"$file"
  events="$(wc -l <"$file")"
  read -r our_verdict our_s our_mib <<<"$(measure "$CHECK" "$file" "$TIMEOUT_S")"
  read -r their_verdict their_s their_mib <<<"$(measure bash -c "ulimit -v $((PORCUPINE_MEM_MAX_MIB * 1024)); exec \"\$0\" \"\$@\"" \
    "$WORK/porcupine_check" "$file" "$TIMEOUT_S")"
  ratio="$(awk -v a="$their_s" -v b="$our_s" 'BEGIN { if (b > 0) printf "%.1f", a / b; else print "-" }')"
  our_verdict="${our_verdict//_/ }"
  their_verdict="${their_verdict//_/ }"
  if [[ "$their_verdict" != "linearizable" && "$their_verdict" != "not linearizable" ]]; then
    ratio="> $ratio (porcupine gave up)"
  fi
  echo "| $name | $events | $our_verdict | $our_s | $our_mib | $their_verdict | $their_s | $their_mib | $ratio |"
  rm -f "$file"
done
