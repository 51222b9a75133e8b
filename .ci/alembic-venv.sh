#!/usr/bin/env bash
# The virtualenv with the pinned Alembic toolchain that tests/adopt.rs runs (alembic,
# SQLAlchemy, PyMySQL, pg8000: .ci/alembic-constraints.txt). Cached: an existing venv with the
# exact pins is reused; otherwise it is (re)created. Prints the venv's path on stdout, so
#   export ALEMBIC_VENV=$(bash .ci/alembic-venv.sh)
# points the tests at it (they also look in the default path below without it).
#
# Environment:
#   ALEMBIC_VENV   where the virtualenv lives
#                  (default: ${XDG_CACHE_HOME:-$HOME/.cache}/tenant-migrator/alembic-venv)
set -euo pipefail
cd "$(dirname "$0")/.."

constraints=.ci/alembic-constraints.txt
venv=${ALEMBIC_VENV:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/tenant-migrator/alembic-venv}

log() { printf '== alembic venv: %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 2; }

# The pins, without comments and blank lines, sorted as `pip freeze` sorts them.
wanted() { grep -v -e '^[[:space:]]*#' -e '^[[:space:]]*$' "$constraints" | sort -f; }

if [ -x "$venv/bin/alembic" ] && [ -x "$venv/bin/python" ] \
  && [ "$("$venv/bin/python" -m pip freeze --disable-pip-version-check 2>/dev/null | sort -f)" = "$(wanted)" ]; then
  log "reusing $venv"
else
  log "installing $(wanted | tr '\n' ' ')into $venv"
  mkdir -p "$(dirname "$venv")"
  python3 -m venv --clear "$venv" >&2 || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    -c "$constraints" alembic SQLAlchemy PyMySQL pg8000 >&2 \
    || die "could not install the pinned Alembic toolchain into $venv"
  [ "$("$venv/bin/python" -m pip freeze --disable-pip-version-check | sort -f)" = "$(wanted)" ] \
    || die "$venv does not hold exactly the pins of $constraints (pip freeze differs)"
fi
"$venv/bin/alembic" --version >&2
printf '%s\n' "$venv"
