#!/usr/bin/env bash
# One command from a fresh Debian machine to a running mss-sidecar:
# installs Debian's build and mail packages, builds the release binaries,
# writes /etc/mss-sidecar/config.toml (proxy 127.0.0.1:10030 -> Postfix on
# 127.0.0.1:25, embedded RocksDB store under /var/lib/mss-sidecar) if absent,
# and runs the daemon in the foreground (Ctrl-C stops it).
#
# --smoke (CI): instead of running in the foreground, start the daemon, send
# one mail through the proxy with swaks, check mss-admin counts shows its
# row, stop the daemon (SIGTERM) and exit 0, or 1 with what failed.
# MSS_PROFILE=dev builds the debug profile instead of release (CI: the tests
# just built it; release takes ~13 min more on 2 cores).
set -euo pipefail
SMOKE=0
[ "${1:-}" = "--smoke" ] && SMOKE=1
PROFILE=${MSS_PROFILE:-release}
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then echo "error: run as root (installs packages, writes /etc/mss-sidecar)" >&2; exit 2; fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends postfix swaks libclang-dev clang ca-certificates adduser >/dev/null
command -v cargo >/dev/null || { echo "error: cargo not found: install Rust (https://rustup.rs) first" >&2; exit 2; }
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/mss-target}"
cargo build --profile "$PROFILE" --locked --bins
OUT=$CARGO_TARGET_DIR/$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")
install -m 0755 "$OUT/mss-sidecar" "$OUT/mss-admin" "$OUT/mss-export" /usr/local/bin/
install -d -m 0755 /etc/mss-sidecar
# The daemon binds as root then runs as `mss` (config [service] user), as the
# Debian package's postinst sets it up.
getent passwd mss >/dev/null || adduser --system --group --home /var/lib/mss-sidecar --no-create-home mss >/dev/null
install -d -o mss -g mss -m 0700 /var/lib/mss-sidecar
# Stores left by a run as root (e.g. an earlier `mss-sidecar` started with user = "root").
chown -R mss:mss /var/lib/mss-sidecar
if [ ! -f /etc/mss-sidecar/config.toml ]; then
  sed -e 's/^upstream = "127.0.0.1:10025"/upstream = "127.0.0.1:25"/' packaging/config.toml > /etc/mss-sidecar/config.toml
  echo "wrote /etc/mss-sidecar/config.toml: set [operator] domains to your MSSanté domains"
fi
(systemctl start postfix 2>/dev/null || postfix start 2>/dev/null || true)
echo "mss-sidecar: SMTP proxy on 127.0.0.1:10030 -> 127.0.0.1:25; try:"
echo "  swaks --server 127.0.0.1:10030 --from dr.a@ch-exemple.mssante.fr --to someone@example.org"
echo "  mss-admin counts --month $(date +%Y-%m)"
if [ $SMOKE = 0 ]; then
  exec /usr/local/bin/mss-sidecar --config /etc/mss-sidecar/config.toml
fi

# --smoke: the same daemon in the background, one mail, its row, a clean stop.
command -v swaks >/dev/null || { echo "smoke: FAIL: swaks missing" >&2; exit 1; }
LOG=$(mktemp)
/usr/local/bin/mss-sidecar --config /etc/mss-sidecar/config.toml 2>"$LOG" &
PID=$!
trap 'kill $PID 2>/dev/null || true; rm -f "$LOG"' EXIT
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/10030) 2>/dev/null && break; sleep 0.1; done
DOMAIN=$(sed -n 's/^domains *= *\["\([^"]*\)".*/\1/p' /etc/mss-sidecar/config.toml | head -1)
MONTH=$(TZ=Europe/Paris date +%Y-%m)
rows() {
  /usr/local/bin/mss-admin --config /etc/mss-sidecar/config.toml counts --month "$MONTH" --json 2>/dev/null |
    python3 -c 'import json,sys; print(sum(d["rows"] for d in json.load(sys.stdin)["domains"]))' 2>/dev/null
}
# Listeners are bound before the store is opened: wait for the store.
for _ in $(seq 50); do before=$(rows) && break; kill -0 $PID 2>/dev/null || break; sleep 0.1; done
kill -0 $PID 2>/dev/null || { cat "$LOG" >&2; echo "smoke: FAIL: mss-sidecar exited" >&2; exit 1; }
[ -n "${before:-}" ] || { cat "$LOG" >&2; echo "smoke: FAIL: the capture store never became readable" >&2; exit 1; }
swaks --server 127.0.0.1:10030 --from "smoke@$DOMAIN" --to postmaster@example.org --timeout 30 >/dev/null ||
  { cat "$LOG" >&2; echo "smoke: FAIL: the mail was not accepted through the proxy (is Postfix up on 127.0.0.1:25?)" >&2; exit 1; }
for _ in $(seq 50); do after=$(rows || echo "?"); [ "$after" = $((before + 1)) ] && break; sleep 0.1; done
[ "$after" = $((before + 1)) ] || { cat "$LOG" >&2; echo "smoke: FAIL: rows $before -> $after, expected +1" >&2; exit 1; }
kill -TERM $PID
# Bounded: a sidecar that does not stop within 30 s fails the smoke test.
for _ in $(seq 300); do kill -0 $PID 2>/dev/null || break; sleep 0.1; done
if kill -0 $PID 2>/dev/null; then kill -KILL $PID; cat "$LOG" >&2; echo "smoke: FAIL: mss-sidecar did not stop within 30 s of SIGTERM" >&2; exit 1; fi
wait $PID || { cat "$LOG" >&2; echo "smoke: FAIL: mss-sidecar did not stop cleanly on SIGTERM" >&2; exit 1; }
trap 'rm -f "$LOG"' EXIT
echo "smoke: quickstart OK: proxy 127.0.0.1:10030 -> Postfix, 1 mail -> 1 row ($MONTH), clean stop"
