#!/usr/bin/env bash
# Browser tests of the operations console (/ui): .ci/browser_test.py drives the
# distribution's headless Chromium through its chromedriver (Selenium from a pinned, cached
# virtualenv; nothing is downloaded at run time) against the service on its embedded SQLite
# default in a temporary directory. Loopback traffic only.
#
# Environment:
#   BROWSER_VENV      where the Selenium virtualenv lives (default: under XDG_CACHE_HOME, reused)
#   SCREENSHOTS_DIR   save each view at 1280x800 there (docs/screenshots is what README shows)
#   SKIP_BUILD=1      use the binary already in target/debug
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '== browser tests: %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 2; }

for tool in chromium chromedriver; do
  command -v "$tool" >/dev/null 2>&1 \
    || die "$tool is missing (Debian: apt-get install chromium chromium-driver)"
done
# (Debian's chromium wrapper script complains on stderr about its own memory check.)
chromium --version 2>/dev/null
venv=${BROWSER_VENV:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/tenant-migrator/browser-venv}
venv=$(bash .ci/pinned-venv.sh "$venv" .ci/browser-constraints.txt)

if [ "${SKIP_BUILD:-0}" != 1 ]; then
  log "cargo build --locked"
  cargo build --locked --quiet
fi
bin=target/debug/tenant-migrator
[ -x "$bin" ] || die "$bin is missing"

shots=()
[ -n "${SCREENSHOTS_DIR:-}" ] && shots=(--screenshots "$SCREENSHOTS_DIR")
# Selenium Manager stays offline: the driver is given explicitly.
SE_OFFLINE=true "$venv/bin/python" .ci/browser_test.py --bin "$bin" "${shots[@]}"
