#!/usr/bin/env bash
# Smoke test of the frozen app: --version, an offscreen screenshot of the demo (NN maps, one click)
# and a small radial k-space reconstruction (finufft).
set -euo pipefail
top="$(cd "$(dirname "$0")/.." && pwd)"
app="${1:-$top/packaging/dist/mrfviewer/mrfviewer}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$app" --version
export QT_QPA_PLATFORM=offscreen MRFVIEWER_DATA_DIR="$work/data" MRFVIEWER_CACHE_DIR="$work/cache" XDG_CONFIG_HOME="$work/config"
"$app" gui --demo --method nn --click 64,70 --screenshot "$work/demo.png"
python3 - "$work/demo.png" <<'PY'
import struct, sys
data = open(sys.argv[1], "rb").read()
assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
width, height = struct.unpack(">II", data[16:24])
assert width >= 800 and height >= 600, (width, height)
print(f"screenshot {width}x{height}, {len(data)} bytes")
PY
# Radial k-space goes through finufft, a ctypes-loaded library the bundle must carry.
"$app" -q synthesize --acquisition radial --size 32 --spokes 8 --coils 2 --snr 30 --output "$work/radial/k.h5"
"$app" -q reconstruct "$work/radial/k.h5" --method nn --output "$work/radial/maps"
test -s "$work/radial/maps/T1map.nii.gz"
echo "radial k-space reconstructed"
cp "$work/demo.png" "${SMOKE_SCREENSHOT:-$top/packaging/smoke-screenshot.png}"
echo "smoke test passed"
