#!/usr/bin/env bash
# The virtualenv with the pinned Alembic toolchain that tests/adopt.rs runs (alembic,
# SQLAlchemy, PyMySQL, pg8000: .ci/alembic-constraints.txt), through .ci/pinned-venv.sh
# (cached, reused when its pins match). Prints the venv's path on stdout, so
#   export ALEMBIC_VENV=$(bash .ci/alembic-venv.sh)
# points the tests at it (they also look in the default path below without it).
#
# Environment:
#   ALEMBIC_VENV   where the virtualenv lives
#                  (default: ${XDG_CACHE_HOME:-$HOME/.cache}/tenant-migrator/alembic-venv)
set -euo pipefail
cd "$(dirname "$0")/.."

venv=${ALEMBIC_VENV:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/tenant-migrator/alembic-venv}
venv=$(bash .ci/pinned-venv.sh "$venv" .ci/alembic-constraints.txt)
"$venv/bin/alembic" --version >&2
printf '%s\n' "$venv"
