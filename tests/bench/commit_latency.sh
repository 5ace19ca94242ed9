#!/usr/bin/env bash
# Commit latency benchmark (BENCHMARKS.md #3): time from the end-of-data dot
# to the final 250, one session, sequential transactions, through haproxy
# (TCP pass-through) and through the sidecar proxy (which commits to RocksDB
# before relaying the 250), alternated; prints p50/p99/max and the added
# latency of the sidecar at p50 and p99.
# Usage: tests/bench/commit_latency.sh [ROUNDS] [MESSAGES] [SESSIONS]
# (SESSIONS concurrent sessions, MESSAGES sequential transactions each; default 1)
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${1:-3}; MSGS=${2:-2000}; SESS=${3:-1}
T=${CARGO_TARGET_DIR:-$HOME/.cache/mss-target}/release
for b in mss-sidecar mss-bench mss-ref-durable-proxy; do
  [ -x "$T/$b" ] || { echo "error: $T/$b missing: cargo build --release --bins" >&2; exit 2; }
done
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
SINK=$(port); HAP=$(port); SIDE=$(port); REF=$(port)
/usr/sbin/smtp-sink -u nobody -c 127.0.0.1:$SINK 256 >/dev/null & pids+=($!)
printf 'global\n  maxconn 4096\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\nlisten smtp\n  bind 127.0.0.1:%s\n  server sink 127.0.0.1:%s\n' $HAP $SINK > "$W/haproxy.cfg"
haproxy -q -f "$W/haproxy.cfg" & pids+=($!)
printf '[service]\nuser = "root"\nmail_log_marks = false\n[operator]\ndomains = ["ch-bench.mssante.fr"]\nnode = "bench"\n[store]\ncapture_path = "%s/capture"\nregistry_path = "%s/registry"\n[proxy]\nlisten = "127.0.0.1:%s"\nupstream = "127.0.0.1:%s"\n' "$W" "$W" $SIDE $SINK > "$W/config.toml"
MSS_LOG=warn "$T/mss-sidecar" --config "$W/config.toml" & pids+=($!)
# The durable pass-through reference (tests/bench/durable_proxy.rs), store file on the same disk.
"$T/mss-ref-durable-proxy" 127.0.0.1:$REF 127.0.0.1:$SINK "$W/ref.log" & pids+=($!)
wait_port $SINK; wait_port $HAP; wait_port $SIDE; wait_port $REF
echo "round | haproxy p50/p99/max µs | durable ref p50/p99/max µs | sidecar p50/p99/max µs"
hp50=(); hp99=(); sp50=(); sp99=(); rp50=(); rp99=()
for r in $(seq "$ROUNDS"); do
  read -r a b c < <("$T/mss-bench" latency 127.0.0.1:$HAP "$MSGS" "$SESS")
  read -r g h i < <("$T/mss-bench" latency 127.0.0.1:$REF "$MSGS" "$SESS")
  read -r d e f < <("$T/mss-bench" latency 127.0.0.1:$SIDE "$MSGS" "$SESS")
  echo "$r | $a / $b / $c | $g / $h / $i | $d / $e / $f"
  hp50+=($a); hp99+=($b); sp50+=($d); sp99+=($e); rp50+=($g); rp99+=($h)
done
median() { printf '%s\n' "$@" | sort -n | awk '{v[NR]=$1} END {print (NR%2)?v[(NR+1)/2]:(v[NR/2]+v[NR/2+1])/2}'; }
python3 -c "print(f'added by the sidecar (medians over rounds): p50 +{$(median "${sp50[@]}") - $(median "${hp50[@]}"):.0f} µs, p99 +{$(median "${sp99[@]}") - $(median "${hp99[@]}"):.0f} µs')"
python3 -c "print(f'added by the durable reference (medians over rounds): p50 +{$(median "${rp50[@]}") - $(median "${hp50[@]}"):.0f} µs, p99 +{$(median "${rp99[@]}") - $(median "${hp99[@]}"):.0f} µs')"
refs=$(wc -l < "$W/ref.log"); want=$((ROUNDS * MSGS * SESS))
[ "$refs" = "$want" ] || { echo "error: reference synced $refs lines, expected $want" >&2; exit 1; }
echo "reference: $refs synced lines = $ROUNDS x $MSGS x $SESS (exact)"
