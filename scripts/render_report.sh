#!/usr/bin/env bash
# Renders a run's report (reports/<run>/index.html) to reports/<run>/index.png with headless
# Chromium (Debian's `chromium` package; installed here when missing), so the page can be looked
# at without a browser.
#
#   scripts/render_report.sh [reports/default] [height in px, default 4200]
set -euo pipefail
dir=${1:-reports/default}
height=${2:-4200}
page="$dir/index.html"
[ -f "$page" ] || { echo "render_report: $page does not exist; run \`tessera run PIPELINE.toml\` first" >&2; exit 1; }
if ! command -v chromium >/dev/null; then
  echo "render_report: installing Debian's chromium" >&2
  apt-get install -y chromium >/dev/null || { apt-get update >/dev/null && apt-get install -y chromium >/dev/null; }
fi
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
# The background-networking flags keep Chromium from calling out (the machines here have no
# network, and it would retry at every start).
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$profile" --hide-scrollbars --window-size=1500,"$height" \
  --screenshot="$(realpath "$dir")/index.png" "file://$(realpath "$page")" 2>/dev/null
echo "wrote $dir/index.png"
