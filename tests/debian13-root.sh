#!/usr/bin/env bash
# Build (once) the Debian 13 "trixie" chroot the Debian 13 lane runs in:
# debootstrap minbase + Debian 13's postfix and dovecot-imapd, cached in
# ${MSS_DEBIAN13_CACHE:-$HOME/.cache/mss-debian13}/root (outside the clone, like
# cargo's target dir). Needs root, debootstrap and the Debian archive; a
# failure is loud (exit 1), never a skip. Every step is bounded by timeout(1).
# Prints the chroot path on stdout.
set -euo pipefail
C=${MSS_DEBIAN13_CACHE:-$HOME/.cache/mss-debian13}
R=$C/root
MIRROR=${MSS_DEBIAN_MIRROR:-http://deb.debian.org/debian}
# What goes in the chroot; a change here rebuilds the cache.
PACKAGES="dovecot-imapd postfix python3-minimal systemd adduser"
KEY="trixie minbase + $PACKAGES"
fail() { echo "debian13-root: FAIL: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || fail "needs root (debootstrap, chroot)"
mkdir -p "$C"
# One builder at a time (test binaries may ask concurrently).
exec 9>"$C/.lock"
timeout 1800 flock 9 || fail "lock $C/.lock"
if [ -f "$R/.mss-ready" ] && [ "$(head -1 "$R/.mss-ready")" = "$KEY" ]; then echo "$R"; exit 0; fi
command -v debootstrap >/dev/null || fail "debootstrap missing (apt-get install debootstrap)"
mkdir -p "$C"
N=$C/root.new
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
rm -rf "$R"; mv "$N" "$R"
echo "debian13-root: built in $((t2-t0)) s: dovecot $(cat "$R/.mss-dovecot-version"), postfix $(cat "$R/.mss-postfix-version")" >&2
echo "$R"
