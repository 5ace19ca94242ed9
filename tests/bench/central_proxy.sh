#!/usr/bin/env bash
# Mail flow with [central] (issue 16): the SMTP proxy with its shipper
# sending every record to a private PostgreSQL 15, against the same proxy
# without [central], in front of the same Postfix, rounds alternated in one
# run. Goal: ratio >= 0.95. Ends by checking PostgreSQL holds every record.
# Usage (root): tests/bench/central_proxy.sh [ROUNDS] [MESSAGES] [SESSIONS] [PROFILE]
set -euo pipefail
cd "$(dirname "$0")/../.."
R=${1:-5}; M=${2:-2000}; S=${3:-20}; PROFILE=${4:-release}
T=${CARGO_TARGET_DIR:-$HOME/.cache/mss-target}/$PROFILE
for b in mss-sidecar mss-admin mss-bench; do
  [ -x "$T/$b" ] || { echo "error: $T/$b missing: cargo build --bins (--release)" >&2; exit 2; }
done
exec timeout 1800 "$T/mss-bench" centralproxy "$R" "$M" "$S" "$T/mss-sidecar" "$T/mss-admin"
