#!/usr/bin/env bash
# [central] shipping benchmark (issue 16): a node's backlog of ROWS records
# (one Echanges row each) shipped by the real daemon to a private
# PostgreSQL 15 (TLS, least-privilege node role), against a binary \copy of
# the same rows in one transaction, measured in the same run.
# Goal: >= 20 000 rows/s sustained, 1 000 000 rows in <= 60 s.
# Usage (root): tests/bench/central_ship.sh [ROWS] [PROFILE]   (default 1000000 release)
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-1000000}; PROFILE=${2:-release}
T=${CARGO_TARGET_DIR:-$HOME/.cache/mss-target}/$PROFILE
for b in mss-sidecar mss-admin mss-bench; do
  [ -x "$T/$b" ] || { echo "error: $T/$b missing: cargo build --bins (--release)" >&2; exit 2; }
done
exec timeout 900 "$T/mss-bench" central "$N" "$T/mss-sidecar" "$T/mss-admin"
