#!/usr/bin/env bash
# Headless Chromium as the report tests run it: no sandbox (CI runs as root in a container), no
# GPU, no first-run or background traffic, every request sent to a dead proxy (no network), and a
# fresh profile that is removed afterwards. The remaining arguments go to Chromium unchanged.
#
#   tests/chromium.sh --find                 print the binary, or exit 3 when there is none
#   tests/chromium.sh --dump-dom URL         the DOM after the load event, on stdout
#   tests/chromium.sh --screenshot=OUT.png --window-size=1400,1800 file://$PWD/results/report/index.html
#
# The binary is $CHROMIUM if set, else the first of chromium, chromium-browser, google-chrome,
# google-chrome-stable on PATH (Debian/Ubuntu: apt-get install -y chromium).
set -euo pipefail

bin=${CHROMIUM:-}
if [ -z "$bin" ]; then
    for candidate in chromium chromium-browser google-chrome google-chrome-stable; do
        if command -v "$candidate" >/dev/null 2>&1; then
            bin=$(command -v "$candidate")
            break
        fi
    done
fi
if [ -z "$bin" ] || [ ! -x "$bin" ]; then
    echo "no Chromium binary: set CHROMIUM or install one (apt-get install -y chromium)" >&2
    exit 3
fi
if [ "${1:-}" = "--find" ]; then
    echo "$bin"
    exit 0
fi

profile=$(mktemp -d "${TMPDIR:-/tmp}/karyosr-chromium.XXXXXX")
trap 'rm -rf "$profile"' EXIT

"$bin" --headless --no-sandbox --disable-gpu --no-first-run --disable-background-networking \
    --disable-component-update --disable-sync --disable-quic --disable-extensions \
    --disable-default-apps --mute-audio --hide-scrollbars --force-device-scale-factor=1 \
    --proxy-server=127.0.0.1:9 --user-data-dir="$profile" "$@"
