#!/usr/bin/env bash
# Reconcile benchmark (issue 17): N messages of generated Postfix logs
# (6 lines each: client=, message-id=, qmgr from=, two to=, removed; one
# recipient in ten deferred then sent: 6.2 lines per message on average),
# first against an empty capture store (every recipient reported missing:
# the worst case for the report), then against a store holding every row
# (`mss-bench reconcilerows`: everything matched, the worst case for the
# index). Measures wall time and peak RSS with /usr/bin/time -v.
# Goal: 1 000 000 messages in <= 60 s, <= 512 MiB.
# Usage: tests/bench/reconcile.sh [MESSAGES] [PROFILE]   (default 1000000 release)
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-1000000}; PROFILE=${2:-release}
T=${CARGO_TARGET_DIR:-$HOME/.cache/mss-target}/$PROFILE
for b in mss-sidecar mss-admin mss-bench; do
  [ -x "$T/$b" ] || { echo "error: $T/$b missing: cargo build --bins (--release)" >&2; exit 2; }
done
W=$(mktemp -d); pid=
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$pid" 2>/dev/null || true; fi
  wait 2>/dev/null || true; rm -rf "$W"
}
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
P=$(port)
cat > "$W/config.toml" <<CFG
[service]
user = "root"
mail_log_marks = false

[operator]
domains = ["ch-test.mssante.fr"]
timezone = "UTC"
node = "b1"

[store]
capture_path = "$W/capture"
registry_path = "$W/registry"

[milter]
listen = "127.0.0.1:$P"
CFG
# The daemon creates the store; stopped before the run.
"$T/mss-sidecar" --config "$W/config.toml" 2>"$W/sidecar.log" & pid=$!
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$P) 2>/dev/null && break; sleep 0.1; done
kill "$pid"; wait "$pid" || true; pid=
python3 - "$N" "$W/maillog" <<'PY'
import sys
n = int(sys.argv[1]); out = open(sys.argv[2], "w", buffering=1 << 20)
for i in range(n):
    s = i * 2  # one message every 2 s from 2026-11-01 00:00:00
    d, r = divmod(s, 86400); h, r = divmod(r, 3600); m, sec = divmod(r, 60)
    t = "Nov %02d %02d:%02d:%02d" % (1 + d % 30, h, m, sec)
    q = "%010X" % i
    w = out.write
    w(f"{t} mx postfix/smtpd[{100 + i % 50}]: {q}: client=c[10.0.0.1]\n")
    w(f"{t} mx postfix/cleanup[200]: {q}: message-id=<{i}@ch-test.mssante.fr>\n")
    w(f"{t} mx postfix/qmgr[300]: {q}: from=<u{i % 5000}@ch-test.mssante.fr>, size=2000, nrcpt=2 (queue active)\n")
    if i % 10 == 0:
        w(f"{t} mx postfix/smtp[400]: {q}: to=<r{i % 7000}@ext.fr>, relay=r[1.1.1.1]:25, delay=1, status=deferred (try later)\n")
    w(f"{t} mx postfix/smtp[400]: {q}: to=<r{i % 7000}@ext.fr>, relay=r[1.1.1.1]:25, delay=1, status=sent (250 ok)\n")
    w(f"{t} mx postfix/smtp[401]: {q}: to=<s{i % 9000}@ext.fr>, relay=r[1.1.1.1]:25, delay=1, status=sent (250 ok)\n")
    w(f"{t} mx postfix/qmgr[300]: {q}: removed\n")
PY
echo "lines: $(wc -l < "$W/maillog")  bytes: $(stat -c %s "$W/maillog")"
run() {
  local want=$1 rc=0; shift
  /usr/bin/time -v "$T/mss-admin" --config "$W/config.toml" reconcile --month 2026-11 --log "$W/maillog" \
    "$@" >"$W/out.txt" 2>"$W/time.txt" || rc=$?
  echo "exit: $rc ($want expected)"
  grep -E "^month|^logs" "$W/out.txt" || echo "output: $(stat -c %s "$W/out.txt") bytes"
  grep -E "Elapsed|Maximum resident" "$W/time.txt"
  [ "$rc" = "$want" ] || { echo "error: unexpected exit" >&2; tail -5 "$W/time.txt" >&2; exit 1; }
}
# Reference: one pass over every line (what any log reader pays at least).
/usr/bin/time -f "reference (grep -c over every line): %e s, %M KiB" grep -c ': removed$' "$W/maillog"
echo "== empty store: every recipient missing"
run 12
echo "== the same, --json (2 000 000 objects streamed)"
run 12 --json
echo "== every row in the store: everything matched"
t0=$(date +%s)
"$T/mss-bench" reconcilerows "$W/capture" "$N"
echo "(store filled with $((N * 2)) rows in $(( $(date +%s) - t0 )) s, not timed below)"
run 0
