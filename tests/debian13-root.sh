#!/usr/bin/env bash
# The Debian 13 "trixie" chroot the Debian 13 lane runs in: debootstrap
# minbase + Debian 13's postfix and dovecot-imapd, built once and cached as a
# tarball, ${MSS_DEBIAN13_CACHE:-$HOME/.cache/mss-debian13}/trixie.tar.zst
# (outside the clone, like cargo's target dir; about 90 MB), then extracted
# into .../root (about a second). `--fresh` extracts it again even when
# .../root is there, so a test run starts from a pristine chroot (tests/run
# does). Needs root, debootstrap, zstd and, to build, the Debian archive; a
# failure is loud (exit 1), never a skip. Every step is bounded by timeout(1).
# Prints the chroot path on stdout.
set -euo pipefail
C=${MSS_DEBIAN13_CACHE:-$HOME/.cache/mss-debian13}
R=$C/root
T=$C/trixie.tar.zst
MIRROR=${MSS_DEBIAN_MIRROR:-http://deb.debian.org/debian}
# What goes in the chroot; a change here rebuilds the cache.
PACKAGES="dovecot-imapd postfix python3-minimal systemd adduser"
KEY="trixie minbase + $PACKAGES"
FRESH=0; [ "${1:-}" = --fresh ] && FRESH=1
fail() { echo "debian13-root: FAIL: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || fail "needs root (debootstrap, chroot)"
command -v zstd >/dev/null || fail "zstd missing (apt-get install zstd)"
mkdir -p "$C"
# One builder at a time (test binaries may ask concurrently).
exec 9>"$C/.lock"
timeout 1800 flock 9 || fail "lock $C/.lock"

# 1. The tarball, built when missing or made for another package list.
if ! { [ -f "$T" ] && [ -f "$T.key" ] && [ "$(cat "$T.key")" = "$KEY" ]; }; then
  command -v debootstrap >/dev/null || fail "debootstrap missing (apt-get install debootstrap)"
  N=$C/build
  if mountpoint -q "$N/proc" 2>/dev/null; then umount "$N/proc"; fi
  rm -rf "$N"
  t0=$(date +%s)
  timeout 900 debootstrap --variant=minbase trixie "$N" "$MIRROR" >"$C/debootstrap.log" 2>&1 \
    || { tail -20 "$C/debootstrap.log" >&2; fail "debootstrap trixie from $MIRROR"; }
  t1=$(date +%s)
  # No daemon starts inside the chroot while packages install.
  printf '#!/bin/sh\nexit 101\n' > "$N/usr/sbin/policy-rc.d"; chmod 755 "$N/usr/sbin/policy-rc.d"
  cp /etc/resolv.conf "$N/etc/resolv.conf" 2>/dev/null || true
  echo "postfix postfix/main_mailer_type select No configuration" > "$N/tmp/preseed"
  mount -t proc proc "$N/proc"
  trap 'umount "$N/proc" 2>/dev/null || true' EXIT
  chroot "$N" debconf-set-selections /tmp/preseed
  DEBIAN_FRONTEND=noninteractive timeout 900 chroot "$N" apt-get install -y -q --no-install-recommends \
    $PACKAGES >"$C/apt.log" 2>&1 \
    || { tail -20 "$C/apt.log" >&2; fail "apt-get install in the chroot"; }
  chroot "$N" apt-get clean
  umount "$N/proc"; trap - EXIT
  t2=$(date +%s)
  chroot "$N" dovecot --version > "$N/.mss-dovecot-version"
  chroot "$N" postconf -d -h mail_version > "$N/.mss-postfix-version"
  printf '%s\ndebootstrap %s s, packages %s s\n' "$KEY" $((t1-t0)) $((t2-t1)) > "$N/.mss-ready"
  timeout 600 tar -C "$N" --numeric-owner -cf - . | timeout 600 zstd -q -T0 -o "$T.new" \
    || fail "tar | zstd of the chroot"
  mv "$T.new" "$T"; echo "$KEY" > "$T.key"
  rm -rf "$N"
  echo "debian13-root: built in $(( $(date +%s) - t0 )) s ($(du -m "$T" | cut -f1) MB cached)" >&2
  FRESH=1
fi

# 2. The chroot itself, extracted from the tarball.
if [ "$FRESH" = 1 ] || ! { [ -f "$R/.mss-ready" ] && [ "$(head -1 "$R/.mss-ready")" = "$KEY" ]; }; then
  if mountpoint -q "$R/proc" 2>/dev/null; then umount "$R/proc"; fi
  rm -rf "$R.new"; mkdir -p "$R.new"
  timeout 300 zstd -q -dc "$T" | timeout 300 tar -C "$R.new" --numeric-owner -xf - \
    || fail "extracting $T"
  rm -rf "$R"; mv "$R.new" "$R"
  echo "debian13-root: dovecot $(cat "$R/.mss-dovecot-version"), postfix $(cat "$R/.mss-postfix-version") (fresh from $T)" >&2
fi
echo "$R"
