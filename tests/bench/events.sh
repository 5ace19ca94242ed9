#!/usr/bin/env bash
# Login events benchmark (BENCHMARKS.md #5): events/s accepted on /v1/dovecot
# (Dovecot event_exporter JSON, keep-alive HTTP/1.1 clients) with the sidecar
# otherwise idle, then while smtp-source pushes mail through its proxy
# (smtp-sink upstream), alternated; ratio loaded/idle; checks the store then
# holds one last login per user.
# Usage: tests/bench/events.sh [ROUNDS] [SECONDS] [CONNECTIONS]   (default 3 10 4)
set -euo pipefail
cd "$(dirname "$0")/../.."
T=${CARGO_TARGET_DIR:-$HOME/.cache/mss-target}/release
for b in mss-sidecar mss-admin mss-bench; do
  [ -x "$T/$b" ] || { echo "error: $T/$b missing: cargo build --release --bins" >&2; exit 2; }
done
ROUNDS=${1:-3}; SECS=${2:-10}; CONNS=${3:-4}; USERS=1000
W=$(mktemp -d); pids=()
# Bounded stop: SIGTERM, up to 10 s, then SIGKILL (a bench must not hang or leak).
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for _ in $(seq 50); do
    alive=0; for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && break; sleep 0.2
  done
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true; rm -rf "$W"
}
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.1; done; echo "error: port $1 never opened" >&2; exit 1; }
SINK=$(port); SIDE=$(port); EV=$(port)
/usr/sbin/smtp-sink -u nobody -c 127.0.0.1:$SINK 256 >/dev/null 2>&1 & pids+=($!)
cat > "$W/config.toml" <<CFG
# Benchmarks run as root with their store in a root-only temp dir.
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
[events]
listen = "127.0.0.1:$EV"
CFG
"$T/mss-sidecar" --config "$W/config.toml" 2>"$W/sidecar.log" & pids+=($!)
wait_port $SINK; wait_port $SIDE; wait_port $EV
echo "events/s on /v1/dovecot, $CONNS connections, ${SECS}s per run, $ROUNDS rounds (idle / under proxy load)"
idle=(); load=()
for r in $(seq "$ROUNDS"); do
  i=$("$T/mss-bench" events 127.0.0.1:$EV "$SECS" "$CONNS" $USERS); idle+=("$i")
  /usr/sbin/smtp-source -s 20 -m 1000000 -l 4096 -r 3 -f bench@ch-bench.mssante.fr -t rcpt@ext.test 127.0.0.1:$SIDE >/dev/null 2>&1 & src=$!
  sleep 1
  l=$("$T/mss-bench" events 127.0.0.1:$EV "$SECS" "$CONNS" $USERS); load+=("$l")
  kill $src 2>/dev/null || true; wait $src 2>/dev/null || true
  echo "round $r: idle $i/s, under proxy load $l/s"
done
med() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
mi=$(med "${idle[@]}"); ml=$(med "${load[@]}")
echo "median: idle $mi/s, under load $ml/s, ratio load/idle $(python3 -c "print(f'{$ml/$mi:.2f}')")"
sleep 1
got=$("$T/mss-admin" --config "$W/config.toml" counts --month 2026-11 --json | python3 -c 'import json,sys; print(sum(d["logins"] for d in json.load(sys.stdin)["domains"]))' 2>/dev/null || echo "?")
echo "store: logins (distinct BALs with a login in 2026-11) = $got (expected $USERS)"
[ "$got" = "$USERS" ] || { echo "error: expected $USERS BALs with a login" >&2; exit 1; }
