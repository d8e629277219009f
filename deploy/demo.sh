#!/usr/bin/env bash
# The README's "bring it all up" command: engine, images, the whole system in docker-compose,
# then one demo episode through it, printing what happened. Safe to run again.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# The demo drives simulated time, so the services follow the clock topic.
export RAPPORT_CLOCK="${RAPPORT_CLOCK:-simulated}"
bash deploy/up.sh
command -v uv >/dev/null 2>&1 || python3 -m pip install -q uv
uv sync --frozen -q
uv run python deploy/demo.py "$@"
