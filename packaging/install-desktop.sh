#!/usr/bin/env bash
# Install the bundle's desktop entry and icon for the current user (run inside the bundle folder).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
apps="${XDG_DATA_HOME:-$HOME/.local/share}/applications"
icons="${XDG_DATA_HOME:-$HOME/.local/share}/icons/hicolor/256x256/apps"
mkdir -p "$apps" "$icons"
cp "$here/mrfviewer.png" "$icons/mrfviewer.png"
sed "s|^Exec=mrfviewer|Exec=$here/mrfviewer|" "$here/mrfviewer.desktop" > "$apps/mrfviewer.desktop"
echo "installed $apps/mrfviewer.desktop"
