#!/usr/bin/env bash
# Build the one-folder desktop app into packaging/dist/mrfviewer (run from anywhere).
# Needs the package installed with torch==2.13.0 (CPU) first, as in the README.
set -euo pipefail
top="$(cd "$(dirname "$0")/.." && pwd)"
cd "$top"
python -m pip install -q 'pyinstaller>=6.10,<7'
python -m PyInstaller --noconfirm --clean --log-level WARN \
  --distpath packaging/dist --workpath packaging/build packaging/mrfviewer.spec
# Desktop integration files travel with the bundle (install: packaging/install-desktop.sh).
cp packaging/mrfviewer.desktop assets/icons/mrfviewer.png packaging/install-desktop.sh packaging/dist/mrfviewer/
echo "built packaging/dist/mrfviewer ($(du -sh packaging/dist/mrfviewer | cut -f1))"
