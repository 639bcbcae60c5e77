#!/usr/bin/env bash
# Smoke test of the frozen app: --version, then an offscreen screenshot of the demo (NN maps, one click).
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
cp "$work/demo.png" "${SMOKE_SCREENSHOT:-$top/packaging/smoke-screenshot.png}"
echo "smoke test passed"
