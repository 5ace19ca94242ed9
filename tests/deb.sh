#!/usr/bin/env bash
# Debian package check (issue 7), run by tests/run after the build:
#  1. builds the .deb with cargo-deb from the binaries just built (installs
#     cargo-deb 3.8.0 if missing, ~1 min);
#  2. checks its contents (`dpkg-deb -c`) and control fields exactly;
#  3. runs every binary's --version from the extracted package;
#  4. as root, when no mss-sidecar package is installed already: `dpkg -i`,
#     checks the user, directories and modes postinst made and that nothing
#     was enabled, `systemd-analyze verify` of the installed units, runs
#     /usr/bin/mss-sidecar --version, then `dpkg -r`;
#  5. as root, the same in the Debian 13 chroot (tests/deb-debian13.sh).
# Usage: tests/deb.sh [PROFILE]   (default: dev, the profile tests/run builds;
# operators build the release package: see README "Debian package").
set -euo pipefail
cd "$(dirname "$0")/.."
PROFILE=${1:-dev}
T=${CARGO_TARGET_DIR:-$HOME/.cache/mss-target}
export CARGO_TARGET_DIR=$T
# Every command that runs a program of ours or dpkg is bounded (timeout):
# a hung step fails the check instead of hanging the suite.
fail() { echo "deb: FAIL: $*" >&2; exit 1; }

if ! cargo deb --version 2>/dev/null | grep -q '3\.8\.0'; then
  cargo install cargo-deb --locked --version 3.8.0 --quiet
fi
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
# --no-build: package exactly the binaries the tests ran against.
cargo deb -p mss-sidecar --no-build --profile "$PROFILE" -o "$W/" -q 2>&1 >/dev/null | grep -v 'dev profile is not supported\|debug symbols set\|^$' >&2 || true
DEB=$(ls "$W"/mss-sidecar_*.deb) || fail "no package built"
VERSION=$(cargo metadata --no-deps --format-version 1 | python3 -c 'import json,sys; print([p["version"] for p in json.load(sys.stdin)["packages"] if p["name"]=="mss-sidecar"][0])')
[ "$(basename "$DEB")" = "mss-sidecar_${VERSION}-1_amd64.deb" ] || fail "unexpected name $(basename "$DEB")"

# Contents: exactly these files (directories aside), with these modes.
dpkg-deb -c "$DEB" | awk '$1 !~ /^d/ {print $1, $6}' | sort > "$W/got"
sort > "$W/want" <<'EOF'
-rwxr-xr-x ./usr/bin/mss-sidecar
-rwxr-xr-x ./usr/bin/mss-admin
-rwxr-xr-x ./usr/bin/mss-export
-rw-r--r-- ./lib/systemd/system/mss-sidecar.service
-rw-r--r-- ./lib/systemd/system/mss-export.service
-rw-r--r-- ./lib/systemd/system/mss-export.timer
-rw-r--r-- ./usr/share/doc/mss-sidecar/README.md
-rw-r--r-- ./usr/share/doc/mss-sidecar/BENCHMARKS.md
-rw-r--r-- ./usr/share/doc/mss-sidecar/copyright
-rw-r--r-- ./usr/share/doc/mss-sidecar/examples/config.toml
-rw-r--r-- ./usr/share/doc/mss-sidecar/examples/postfix-milter.cf
-rw-r--r-- ./usr/share/doc/mss-sidecar/examples/postfix-proxy.cf
-rw-r--r-- ./usr/share/doc/mss-sidecar/examples/dovecot-events.conf
-rw-r--r-- ./usr/share/doc/mss-sidecar/examples/dovecot-2.4-events.conf
-rw-r--r-- ./usr/share/doc/mss-sidecar/examples/grafana-mss-sidecar.json
EOF
diff -u "$W/want" "$W/got" || fail "package contents differ (- expected, + got)"
# Nothing under /etc: the admin writes the configuration; no unit enabled by links.
dpkg-deb -c "$DEB" | grep -q ' \./etc/' && fail "the package must not ship files in /etc"
dpkg-deb -f "$DEB" Package Architecture Section Depends | tee "$W/control" >/dev/null
grep -qx 'Package: mss-sidecar' "$W/control" || fail "Package field"
grep -q '^Depends: .*adduser' "$W/control" || fail "Depends must name adduser (postinst)"
grep -q '^Depends: .*libc6' "$W/control" || fail "Depends must carry the shared-library dependencies"
dpkg-deb --ctrl-tarfile "$DEB" | tar -t | sort | grep -x './postinst' >/dev/null || fail "no postinst"
# The example configuration in the package is valid for the binaries in it.
dpkg-deb -x "$DEB" "$W/root"
for b in mss-sidecar mss-admin mss-export; do
  out=$(timeout 30 "$W/root/usr/bin/$b" --version) || fail "$b --version exited $?"
  [ "$out" = "$b $VERSION" ] || fail "$b --version printed '$out'"
done
sed -e "s#/var/lib/mss-sidecar#$W/state#g" "$W/root/usr/share/doc/mss-sidecar/examples/config.toml" > "$W/config.toml"
mkdir -p "$W/state"
timeout 30 "$W/root/usr/bin/mss-sidecar" --check --config "$W/config.toml" >/dev/null \
  || fail "the packaged example config does not pass mss-sidecar --check"

# Debian 13: the same package installed in the trixie chroot (root only;
# a chroot that cannot be built fails here, loudly).
if [ "$(id -u)" = 0 ]; then
  bash tests/deb-debian13.sh "$DEB" "$VERSION"
fi

if [ "$(id -u)" != 0 ]; then
  echo "deb: contents OK; dpkg -i skipped (not root)"
  exit 0
fi
if dpkg-query -W -f '${Status}' mss-sidecar 2>/dev/null | grep -q installed; then
  echo "deb: contents OK; dpkg -i skipped: a mss-sidecar package is already installed here"
  exit 0
fi
timeout 300 dpkg -i "$DEB" >"$W/dpkg.log" 2>&1 || { cat "$W/dpkg.log" >&2; fail "dpkg -i failed"; }
trap 'dpkg -r mss-sidecar >/dev/null 2>&1 || true; rm -rf "$W"' EXIT
[ "$(timeout 30 /usr/bin/mss-sidecar --version)" = "mss-sidecar $VERSION" ] || fail "installed mss-sidecar --version"
getent passwd mss >/dev/null || fail "postinst did not create the user mss"
[ "$(getent passwd mss | cut -d: -f7)" = /usr/sbin/nologin ] || fail "user mss must not have a login shell"
[ "$(stat -c '%U:%G %a' /var/lib/mss-sidecar)" = "mss:mss 700" ] || fail "/var/lib/mss-sidecar is $(stat -c '%U:%G %a' /var/lib/mss-sidecar)"
[ "$(stat -c '%U:%G %a' /etc/mss-sidecar)" = "root:mss 750" ] || fail "/etc/mss-sidecar is $(stat -c '%U:%G %a' /etc/mss-sidecar)"
for u in mss-sidecar.service mss-export.timer; do
  ls /etc/systemd/system/*.wants/"$u" >/dev/null 2>&1 && fail "$u was enabled by the package"
done
# The installed units, against the installed binaries.
command -v systemd-analyze >/dev/null || fail "systemd-analyze missing (apt-get install systemd)"
timeout 120 systemd-analyze verify /lib/systemd/system/mss-sidecar.service /lib/systemd/system/mss-export.service \
  /lib/systemd/system/mss-export.timer >"$W/verify.log" 2>&1 || { cat "$W/verify.log" >&2; fail "systemd-analyze verify"; }
[ ! -s "$W/verify.log" ] || { cat "$W/verify.log" >&2; fail "systemd-analyze verify printed warnings"; }
# Reinstalling (an upgrade) is idempotent: the user and modes stay.
timeout 300 dpkg -i "$DEB" >"$W/dpkg.log" 2>&1 || { cat "$W/dpkg.log" >&2; fail "second dpkg -i failed"; }
[ "$(stat -c '%U:%G %a' /var/lib/mss-sidecar)" = "mss:mss 700" ] || fail "upgrade changed /var/lib/mss-sidecar"
timeout 300 dpkg -r mss-sidecar >"$W/dpkg.log" 2>&1 || { cat "$W/dpkg.log" >&2; fail "dpkg -r failed"; }
[ ! -e /usr/bin/mss-sidecar ] || fail "dpkg -r left /usr/bin/mss-sidecar"
[ -d /var/lib/mss-sidecar ] || fail "dpkg -r removed the state directory (captured figures must survive)"
echo "deb: $(basename "$DEB"): contents, control, --version, dpkg -i (user mss, 0700 state, nothing enabled), systemd-analyze verify, upgrade, dpkg -r: OK"
