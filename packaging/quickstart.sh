#!/usr/bin/env bash
# One command from a fresh Debian machine to a running mss-sidecar:
# installs Debian's build and mail packages, builds the release binaries,
# writes /etc/mss-sidecar/config.toml (proxy 127.0.0.1:10030 -> Postfix on
# 127.0.0.1:25, embedded RocksDB store under /var/lib/mss-sidecar) if absent,
# and runs the daemon in the foreground (Ctrl-C stops it).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then echo "error: run as root (installs packages, writes /etc/mss-sidecar)" >&2; exit 2; fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends postfix swaks libclang-dev clang ca-certificates >/dev/null
command -v cargo >/dev/null || { echo "error: cargo not found: install Rust (https://rustup.rs) first" >&2; exit 2; }
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/mss-target}"
cargo build --release --locked --bins
install -m 0755 "$CARGO_TARGET_DIR/release/mss-sidecar" "$CARGO_TARGET_DIR/release/mss-admin" "$CARGO_TARGET_DIR/release/mss-export" /usr/local/bin/
install -d -m 0755 /etc/mss-sidecar
if [ ! -f /etc/mss-sidecar/config.toml ]; then
  sed -e 's/^upstream = "127.0.0.1:10025"/upstream = "127.0.0.1:25"/' packaging/config.toml > /etc/mss-sidecar/config.toml
  echo "wrote /etc/mss-sidecar/config.toml: set [operator] domains to your MSSanté domains"
fi
(systemctl start postfix 2>/dev/null || postfix start 2>/dev/null || true)
echo "mss-sidecar: SMTP proxy on 127.0.0.1:10030 -> 127.0.0.1:25; try:"
echo "  swaks --server 127.0.0.1:10030 --from dr.a@ch-exemple.mssante.fr --to someone@example.org"
echo "  mss-admin counts --month $(date +%Y-%m)"
exec /usr/local/bin/mss-sidecar --config /etc/mss-sidecar/config.toml
