#!/usr/bin/env bash
# Export benchmark (BENCHMARKS.md #4): fill a capture store with N rows over a
# month (mss-gen-capture, not timed), then time `mss-export build` with
# /usr/bin/time -v (wall, peak RSS) and, as the reference in the same
# invocation, `gzip -6` over the same CSV bytes.
#
# Usage: tests/bench/export.sh [ROWS...]      (default: 1000000 10000000)
# Env: DOMAINS (default 100). Needs release binaries:
#   cargo build --release --bins
set -euo pipefail
cd "$(dirname "$0")/../.."
T=${CARGO_TARGET_DIR:-$HOME/.cache/mss-target}/release
for b in mss-export mss-gen-capture; do
  [ -x "$T/$b" ] || { echo "error: $T/$b missing: cargo build --release --bins" >&2; exit 2; }
done
DOMAINS=${DOMAINS:-100}
[ $# -gt 0 ] || set -- 1000000 10000000
MONTH=2026-03
printf '| rows | domains | build wall s | peak RSS MiB | gzip -6 wall s | ratio build/gzip | archive MiB |\n|---|---|---|---|---|---|---|\n'
for N in "$@"; do
  W=$(mktemp -d)
  doms=$("$T/mss-gen-capture" "$W/capture" $MONTH "$N" "$DOMAINS" 2>/dev/null)
  cat > "$W/config.toml" <<CFG
[operator]
$doms
[store]
capture_path = "$W/capture"
registry_path = "$W/registry"
[export]
out_dir = "$W/out"
CFG
  /usr/bin/time -v -o "$W/time" "$T/mss-export" --config "$W/config.toml" build --month $MONTH >/dev/null 2>"$W/err" ||
    { cat "$W/err" >&2; exit 1; }
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,t,":"); s=0; for(i=1;i<=n;i++) s=s*60+t[i]; print s}' "$W/time")
  rss=$(awk -F': ' '/Maximum resident set size/ {printf "%.0f", $2/1024}' "$W/time")
  zip=$(ls "$W"/out/*.zip | head -1)
  zsize=$(du -cm "$W"/out/*.zip | tail -1 | cut -f1)
  # The same CSV bytes, concatenated, through gzip -6.
  python3 - "$W/out" "$W/all.csv" <<'PY'
import sys, zipfile, glob, shutil
with open(sys.argv[2], "wb") as out:
    for z in sorted(glob.glob(sys.argv[1] + "/*.zip")):
        with zipfile.ZipFile(z) as f:
            for n in f.namelist():
                with f.open(n) as src:
                    shutil.copyfileobj(src, out, 1 << 20)
PY
  s=$(date +%s.%N); gzip -6 < "$W/all.csv" > /dev/null; e=$(date +%s.%N)
  gz=$(python3 -c "print(f'{$e-$s:.2f}')")
  ratio=$(python3 -c "print(f'{$wall/($e-$s):.2f}')")
  echo "| $N | $DOMAINS | $wall | $rss | $gz | $ratio | $zsize |"
  rm -rf "$W"
done
