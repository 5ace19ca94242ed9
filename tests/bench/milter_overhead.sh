#!/usr/bin/env bash
# Milter overhead benchmark (BENCHMARKS.md #2): a private Postfix (discard
# transport) without milter, with the no-op reference milter
# (tests/bench/noop_milter.rs) and with the sidecar milter, the same smtp-source load
# alternated; ratio of the medians, exact row check.
# Usage: tests/bench/milter_overhead.sh [ROUNDS] [MESSAGES] [SESSIONS]   (root: private Postfix)
#   MSS_BENCH_MILTER=unix: both milters on a Unix socket (default: TCP on loopback).
set -euo pipefail
cd "$(dirname "$0")/../.."
T=${CARGO_TARGET_DIR:-$HOME/.cache/mss-target}/release
for b in mss-sidecar mss-bench mss-ref-noop-milter; do
  [ -x "$T/$b" ] || { echo "error: $T/$b missing: cargo build --release --bins" >&2; exit 2; }
done
export PATH="$PATH:/usr/sbin"
exec "$T/mss-bench" milter "${1:-3}" "${2:-5000}" "${3:-20}" "$T/mss-sidecar" "$T/mss-ref-noop-milter"
