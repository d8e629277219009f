#!/usr/bin/env bash
# The README's "bring it all up" command: engine, images, the whole system in docker-compose,
# then one demo episode through it, printing what happened. Safe to run again.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# The demo drives simulated time, so the services follow the clock topic.
export RAPPORT_CLOCK="${RAPPORT_CLOCK:-simulated}"
# Tokens: the demo signs with the development issuer's private key; docker-compose mounts only its
# public JWKS into the services (development only: production refuses the kid rapport-dev-*).
export RAPPORT_AUTH_SIGNING_KEY="${RAPPORT_AUTH_SIGNING_KEY:-$PWD/deploy/dev-keys/issuer.jwk.json}"
export RAPPORT_AUTH_JWKS_FILE="${RAPPORT_AUTH_JWKS_FILE:-$PWD/deploy/dev-keys/jwks.json}"
bash deploy/up.sh
source deploy/_common.sh
ensure_uv || die "cannot install uv==$UV_VERSION"
uv sync --frozen -q
rc=0
uv run python deploy/demo.py "$@" || rc=$?
# The system stays up, the clinician console with it (docs/console.md): sign in as the demo's clinician.
echo
echo "== clinician console: http://127.0.0.1:8085 (left running; stop with: docker-compose -p rapport down)"
echo "   sign in with a development token: uv run rapport-admin token --sub clin-001 --role clinician --org org-demo"
exit "$rc"
