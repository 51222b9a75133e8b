#!/usr/bin/env bash
# A Python virtualenv holding exactly the pins of a constraints file (every package and
# dependency, `name==version` per line; comments and blank lines ignored). Cached: an existing
# venv whose `pip freeze` equals the pins is reused; otherwise it is (re)created. Prints the
# venv's path on stdout, logs on stderr.
#
# Usage: bash .ci/pinned-venv.sh VENV_DIR CONSTRAINTS_FILE
set -euo pipefail

[ $# -eq 2 ] || { echo "usage: $0 VENV_DIR CONSTRAINTS_FILE" >&2; exit 2; }
venv=$1
constraints=$2
name=$(basename "$constraints" .txt)

log() { printf '== %s venv: %s\n' "$name" "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 2; }

[ -r "$constraints" ] || die "$constraints is not readable"
# The pins, without comments and blank lines, sorted as `pip freeze` sorts them.
wanted() { grep -v -e '^[[:space:]]*#' -e '^[[:space:]]*$' "$constraints" | sort -f; }
frozen() { "$venv/bin/python" -m pip freeze --disable-pip-version-check 2>/dev/null | sort -f; }

if [ -x "$venv/bin/python" ] && [ "$(frozen)" = "$(wanted)" ]; then
  log "reusing $venv"
else
  log "installing $(wanted | tr '\n' ' ')into $venv"
  mkdir -p "$(dirname "$venv")"
  python3 -m venv --clear "$venv" >&2 || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps \
    -r <(wanted) >&2 || die "could not install the pins of $constraints into $venv"
  [ "$(frozen)" = "$(wanted)" ] || die "$venv does not hold exactly the pins of $constraints (pip freeze differs)"
fi
printf '%s\n' "$venv"
