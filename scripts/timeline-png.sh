#!/usr/bin/env bash
# Renders a replay timeline page (from `cargo sim replay ... --timeline <in.html>`) to a PNG
# with headless Chromium, offline: the page is self-contained, and every Chromium feature that
# would reach the network on its own is switched off.
#
#   scripts/timeline-png.sh <in.html> <out.png>
#
# Installs Debian's chromium package with apt-get if it is missing (needs root).
set -euo pipefail

if [ "$#" -ne 2 ]; then
    echo "usage: $0 <in.html> <out.png>" >&2
    exit 2
fi
in=$1
out=$2
if [ ! -f "$in" ]; then
    echo "$0: $in: no such file" >&2
    exit 2
fi

if ! command -v chromium >/dev/null 2>&1; then
    echo "$0: chromium not found; installing it with apt-get" >&2
    apt-get update
    apt-get install -y chromium
fi

abs_in=$(realpath "$in")
abs_out=$(realpath -m "$out")
mkdir -p "$(dirname "$abs_out")"
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT

chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --hide-scrollbars --user-data-dir="$profile" --window-size=1600,1200 \
    --screenshot="$abs_out" "file://$abs_in" 2>/dev/null

if [ ! -s "$abs_out" ]; then
    echo "$0: chromium wrote no screenshot to $abs_out" >&2
    exit 1
fi
echo "$abs_out"
