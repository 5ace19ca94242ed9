#!/usr/bin/env bash
# Benchmark 3 (issue 22), the real deployment: mss-sidecar as a front Postfix's
# before-queue smtpd_proxy_filter in front of a second private Postfix, against
# haproxy in the same place; the same smtp-source load (4 KiB, 3 recipients)
# alternated; ratio of the medians; exact row check.
# Usage: tests/bench/proxy_filter.sh [ROUNDS] [MESSAGES] [SESSIONS]   (root: private Postfix)
# Needs: release binaries (cargo build --release --bins), postfix, haproxy.
set -euo pipefail
cd "$(dirname "$0")/../.."
T=${CARGO_TARGET_DIR:-$HOME/.cache/mss-target}/release
for b in mss-sidecar mss-bench; do
  [ -x "$T/$b" ] || { echo "error: $T/$b missing: cargo build --release --bins" >&2; exit 2; }
done
command -v haproxy >/dev/null || { echo "error: haproxy missing (apt-get install haproxy)" >&2; exit 2; }
export PATH="$PATH:/usr/sbin"
exec "$T/mss-bench" proxyfilter "${1:-3}" "${2:-2000}" "${3:-20}" "$T/mss-sidecar"
