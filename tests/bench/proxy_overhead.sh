#!/usr/bin/env bash
# Proxy overhead benchmark (BENCHMARKS.md #1).
#
# The same smtp-source load, alternated over ROUNDS rounds, against:
#   (a) Postfix's smtp-sink directly,
#   (b) haproxy in TCP mode in front of it (a pure pass-through),
#   (c) the mss-sidecar proxy in front of it (capturing into RocksDB),
#   (d) tests/bench/durable_proxy.rs (mss-ref-durable-proxy): pass-through that appends
#       one line per message and waits for a group-committed fdatasync before the 250.
# Prints messages/s per run, the medians and the ratios c/d, c/b and c/a, then
# checks that the capture store holds exactly messages x recipients rows and
# the reference file one line per message.
#
# Usage: tests/bench/proxy_overhead.sh [ROUNDS] [MESSAGES] [SESSIONS] [-d]
# Needs: release binaries (cargo build --release --bins), postfix (smtp-sink,
# smtp-source), haproxy.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${1:-3}
MSGS=${2:-20000}
SESS=${3:-20}
REUSE=${4:-}
RCPT=3
SIZE=4096
T=${CARGO_TARGET_DIR:-$HOME/.cache/mss-target}/release
for b in mss-sidecar mss-admin mss-ref-durable-proxy; do
  [ -x "$T/$b" ] || { echo "error: $T/$b missing: cargo build --release --bins" >&2; exit 2; }
done
for c in /usr/sbin/smtp-sink /usr/sbin/smtp-source haproxy; do
  command -v "$c" >/dev/null || { echo "error: $c missing (apt-get install postfix haproxy)" >&2; exit 2; }
done
W=$(mktemp -d)
pids=()
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
cat > "$W/haproxy.cfg" <<CFG
global
  maxconn 4096
defaults
  mode tcp
  timeout connect 5s
  timeout client 60s
  timeout server 60s
listen smtp
  bind 127.0.0.1:$HAP
  server sink 127.0.0.1:$SINK
CFG
haproxy -q -f "$W/haproxy.cfg" & pids+=($!)
# (d) the durable pass-through reference: one line + group-committed fdatasync per
# message before the final 250, its file on the same disk as the sidecar's store.
"$T/mss-ref-durable-proxy" 127.0.0.1:$REF 127.0.0.1:$SINK "$W/ref.log" & pids+=($!)
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
hostname = "bench.proxy"
max_sessions = 1000
CFG
MSS_LOG=warn "$T/mss-sidecar" --config "$W/config.toml" & pids+=($!)
wait_port $SINK; wait_port $HAP; wait_port $SIDE

run() { # port -> messages/s
  local s e
  s=$(date +%s.%N)
  /usr/sbin/smtp-source $REUSE -s $SESS -m $MSGS -l $SIZE -r $RCPT \
    -f bench@ch-bench.mssante.fr -t rcpt@ext.test 127.0.0.1:$1
  e=$(date +%s.%N)
  python3 -c "print(f'{$MSGS/($e-$s):.0f}')"
}
# Warm-up (not measured): every target once, 500 messages.
for p in $SINK $HAP $SIDE $REF; do
  /usr/sbin/smtp-source $REUSE -s $SESS -m 500 -l $SIZE -r $RCPT -f bench@ch-bench.mssante.fr -t rcpt@ext.test 127.0.0.1:$p
done
declare -a A B C D
for r in $(seq "$ROUNDS"); do
  A+=($(run $SINK)); B+=($(run $HAP)); D+=($(run $REF)); C+=($(run $SIDE))
  echo "round $r: sink ${A[-1]} msg/s, haproxy ${B[-1]} msg/s, durable ref ${D[-1]} msg/s, sidecar ${C[-1]} msg/s"
done
median() { printf '%s\n' "$@" | sort -n | awk '{v[NR]=$1} END {print (NR%2)?v[(NR+1)/2]:(v[NR/2]+v[NR/2+1])/2}'; }
ma=$(median "${A[@]}"); mb=$(median "${B[@]}"); mc=$(median "${C[@]}"); md=$(median "${D[@]}")
echo "median msg/s: (a) sink $ma, (b) haproxy $mb, (c) sidecar $mc, (d) durable reference $md"
python3 -c "print(f'ratio c/d = {$mc/$md:.3f} (goal >= 0.95), c/b = {$mc/$mb:.3f}, c/a = {$mc/$ma:.3f}')"

# Exactly messages x recipients rows, read while the sidecar runs.
sleep 1
month=$(TZ=Europe/Paris date +%Y-%m)
rows=$("$T/mss-admin" --config "$W/config.toml" counts --json --month "$month" |
  python3 -c 'import json,sys; print(sum(d["rows"] for d in json.load(sys.stdin)["domains"]))')
want=$(((ROUNDS * MSGS + 500) * RCPT))
if [ "$rows" = "$want" ]; then echo "store: $rows rows = ($ROUNDS x $MSGS + 500 warm-up) x $RCPT (exact)"; else echo "error: store has $rows rows, expected $want" >&2; exit 1; fi
refs=$(wc -l < "$W/ref.log"); wantref=$((ROUNDS * MSGS + 500))
if [ "$refs" = "$wantref" ]; then echo "reference: $refs synced lines = $ROUNDS x $MSGS + 500 warm-up (exact)"; else echo "error: reference wrote $refs lines, expected $wantref" >&2; exit 1; fi
