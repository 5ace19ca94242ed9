#!/usr/bin/env bash
# The .deb (built on Debian 12 by tests/deb.sh) on Debian 13 "trixie", in the
# cached chroot of tests/debian13-root.sh: dpkg -i (user mss, modes, nothing
# enabled), the binaries run there, systemd-analyze verify of the installed
# units (trixie's systemd 257), reinstall (upgrade), dpkg -r. The chroot is
# put back as it was (user, directories) whatever happens.
# Usage (root): tests/deb-debian13.sh PATH.deb VERSION
set -euo pipefail
cd "$(dirname "$0")/.."
DEB=$1; VERSION=$2
fail() { echo "deb-debian13: FAIL: $*" >&2; exit 1; }
R=$(bash tests/debian13-root.sh) || fail "no Debian 13 chroot (tests/debian13-root.sh)"
exec 9>"$(dirname "$R")/.lock"
timeout 600 flock 9 || fail "chroot lock"
in13() { timeout 120 chroot "$R" "$@"; }
cleanup() {
  umount "$R/proc" 2>/dev/null || true
  in13 dpkg --purge mss-sidecar >/dev/null 2>&1 || true
  in13 deluser --system mss >/dev/null 2>&1 || true
  in13 delgroup --system mss >/dev/null 2>&1 || true
  rm -rf "$R/var/lib/mss-sidecar" "$R/etc/mss-sidecar" "$R/tmp/mss-sidecar.deb" "$R/tmp/dpkg.log" "$R/tmp/verify.log"
}
cleanup
trap cleanup EXIT
in13 dpkg-query -W -f '${Status}' mss-sidecar 2>/dev/null | grep -q installed && fail "mss-sidecar already installed in $R"
cp "$DEB" "$R/tmp/mss-sidecar.deb"
# systemd-analyze and adduser's tools read /proc.
mount -t proc proc "$R/proc"
in13 dpkg -i /tmp/mss-sidecar.deb >"$R/tmp/dpkg.log" 2>&1 || { cat "$R/tmp/dpkg.log" >&2; fail "dpkg -i on trixie"; }
for b in mss-sidecar mss-admin mss-export; do
  [ "$(in13 /usr/bin/$b --version)" = "$b $VERSION" ] || fail "$b --version on trixie"
done
[ "$(in13 getent passwd mss | cut -d: -f7)" = /usr/sbin/nologin ] || fail "user mss on trixie"
[ "$(in13 stat -c '%U:%G %a' /var/lib/mss-sidecar)" = "mss:mss 700" ] || fail "/var/lib/mss-sidecar on trixie"
[ "$(in13 stat -c '%U:%G %a' /etc/mss-sidecar)" = "root:mss 750" ] || fail "/etc/mss-sidecar on trixie"
ls "$R"/etc/systemd/system/*.wants/mss-* >/dev/null 2>&1 && fail "a unit was enabled on trixie"
in13 systemd-analyze verify /lib/systemd/system/mss-sidecar.service /lib/systemd/system/mss-export.service \
  /lib/systemd/system/mss-export.timer >"$R/tmp/verify.log" 2>&1 || { cat "$R/tmp/verify.log" >&2; fail "systemd-analyze verify on trixie"; }
[ ! -s "$R/tmp/verify.log" ] || { cat "$R/tmp/verify.log" >&2; fail "systemd-analyze verify printed warnings on trixie"; }
in13 dpkg -i /tmp/mss-sidecar.deb >"$R/tmp/dpkg.log" 2>&1 || { cat "$R/tmp/dpkg.log" >&2; fail "second dpkg -i on trixie"; }
[ "$(in13 stat -c '%U:%G %a' /var/lib/mss-sidecar)" = "mss:mss 700" ] || fail "upgrade changed /var/lib/mss-sidecar on trixie"
in13 dpkg -r mss-sidecar >"$R/tmp/dpkg.log" 2>&1 || { cat "$R/tmp/dpkg.log" >&2; fail "dpkg -r on trixie"; }
[ ! -e "$R/usr/bin/mss-sidecar" ] || fail "dpkg -r left /usr/bin/mss-sidecar on trixie"
[ -d "$R/var/lib/mss-sidecar" ] || fail "dpkg -r removed the state directory on trixie"
echo "deb-debian13: $(basename "$DEB") on $(cat "$R/etc/debian_version"): dpkg -i, --version, user and modes, systemd-analyze verify, upgrade, dpkg -r: OK"
