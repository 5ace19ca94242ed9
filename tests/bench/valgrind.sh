#!/usr/bin/env bash
# Memcheck of the shipped release binaries (issue 22, docs/reliability.md):
#  1. mss-sidecar with [proxy] + [milter] + [events] under valgrind: proxy load (smtp-source
#     through the proxy to smtp-sink) while /v1/dovecot events are posted (mss-bench events);
#  2. mss-sidecar under valgrind as the milter of a private Postfix (mss-bench milter, which
#     spawns the sidecar through a valgrind wrapper);
#  3. mss-export build of a generated month of ROWS rows under valgrind.
# Each run fails unless valgrind reports 0 errors (--error-exitcode, ERROR SUMMARY checked).
# Usage: tests/bench/valgrind.sh [MESSAGES] [ROWS]   (root: private Postfix)
set -euo pipefail
cd "$(dirname "$0")/../.."
MSGS=${1:-1000}; ROWS=${2:-100000}
T=${CARGO_TARGET_DIR:-$HOME/.cache/mss-target}/release
for b in mss-sidecar mss-bench mss-export mss-gen-capture mss-admin; do
  [ -x "$T/$b" ] || { echo "error: $T/$b missing: cargo build --release --bins" >&2; exit 2; }
done
export PATH="$PATH:/usr/sbin"
W=$(mktemp -d); pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for _ in $(seq 100); do
    alive=0; for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && break; sleep 0.2
  done
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true; rm -rf "$W"
}
trap cleanup EXIT
VG="valgrind --tool=memcheck --error-exitcode=99 --track-origins=no --leak-check=no"
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 600); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.1; done; echo "error: port $1 never opened" >&2; exit 1; }
check() { # $1 = valgrind log
  grep -q "ERROR SUMMARY: 0 errors" "$1" || { echo "error: valgrind errors in $1:" >&2; grep -E "Invalid|ERROR SUMMARY" "$1" | head >&2; exit 1; }
  echo "  $(grep -c "Invalid" "$1" || true) invalid reads/writes; $(grep "ERROR SUMMARY" "$1" | tail -1 | sed 's/^==[0-9]*== //')"
}

echo "1. mss-sidecar (proxy + milter + events) under memcheck, $MSGS messages through the proxy"
SINK=$(port); SIDE=$(port); EV=$(port); MIL=$(port)
smtp-sink -u nobody -c 127.0.0.1:$SINK 256 >/dev/null 2>&1 & pids+=($!)
cat > "$W/config.toml" <<CFG
[service]
user = "root"
mail_log_marks = false
[operator]
domains = ["ch-bench.mssante.fr"]
node = "bench"
[store]
capture_path = "$W/capture"
registry_path = "$W/registry"
[proxy]
listen = "127.0.0.1:$SIDE"
upstream = "127.0.0.1:$SINK"
[milter]
listen = "127.0.0.1:$MIL"
[events]
listen = "127.0.0.1:$EV"
CFG
MSS_LOG=warn $VG --log-file="$W/vg-sidecar.log" "$T/mss-sidecar" --config "$W/config.toml" 2>"$W/sidecar.err" & side=$!; pids+=($side)
wait_port $SINK; wait_port $SIDE; wait_port $EV; wait_port $MIL
"$T/mss-bench" events 127.0.0.1:$EV 20 4 50 > "$W/events.out" & evp=$!
timeout 1200 smtp-source -s 4 -m "$MSGS" -l 4096 -r 3 -f bench@ch-bench.mssante.fr -t rcpt@ext.test 127.0.0.1:$SIDE
wait $evp; echo "  events/s under valgrind: $(cat "$W/events.out")"
kill $side; for _ in $(seq 300); do kill -0 $side 2>/dev/null || break; sleep 0.2; done
wait $side 2>/dev/null || true
check "$W/vg-sidecar.log"
"$T/mss-bench" rows "$W/capture" $((MSGS * 3)) | sed 's/^/  /'

echo "2. mss-sidecar as the milter of a private Postfix, under memcheck"
cat > "$W/vg-wrap" <<WRAP
#!/bin/sh
exec $VG --log-file="$W/vg-milter.log" "$T/mss-sidecar" "\$@"
WRAP
chmod +x "$W/vg-wrap"
MSS_LOG=error timeout 1800 "$T/mss-bench" milter 1 "$MSGS" 4 "$W/vg-wrap" 2>"$W/milter.err" | tail -2
check "$W/vg-milter.log"

echo "3. mss-export build, $ROWS rows in one month, under memcheck"
doms=$("$T/mss-gen-capture" "$W/exp/capture" 2026-03 "$ROWS" 100 2>/dev/null)
printf '[operator]\n%s\n[store]\ncapture_path = "%s"\nregistry_path = "%s"\n[export]\nout_dir = "%s"\n' \
  "$doms" "$W/exp/capture" "$W/exp/registry" "$W/exp/out" > "$W/exp.toml"
$VG --log-file="$W/vg-export.log" "$T/mss-export" --config "$W/exp.toml" build --month 2026-03 > "$W/export.out" 2>&1
check "$W/vg-export.log"
grep "^2026-03:" "$W/export.out" | sed 's/^/  /'
grep -q "^2026-03: 100 domains, $ROWS Echanges rows" "$W/export.out" || { echo "error: expected $ROWS Echanges rows" >&2; exit 1; }
echo "all clean"
