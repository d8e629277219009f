#!/usr/bin/env bash
# The project's test command (README; .ci/run runs it). Sets up a fresh machine by itself:
#   1. engine       deploy/engine.sh (installs/starts Docker); if that fails, Kafka and Postgres
#                   run as plain processes instead (deploy/local-infra.sh) and the engine's error
#                   is printed
#   2. uv           the pinned uv (UV_VERSION in deploy/_common.sh): pip install uv==UV_VERSION if absent
#   3. uv sync      uv sync --frozen
#   4. images       deploy/build-images.sh --infra-only (falls back to local-infra if it fails);
#                   rapport/prometheus too: its promtool checks the Prometheus config and rules
#                   (tests/unit/deploy/test_prometheus_files.py), tests/e2e/test_prometheus.py runs it
#   4b. chromium    Debian's chromium and chromium-driver (apt-get, when missing): the console's
#                   browser tests (tests/e2e/console) drive it; Playwright downloads no browser
#   4c. asyncapi    npm ci in tools/asyncapi when node is present and node_modules is missing: the
#                   official @asyncapi/parser (pinned by its package-lock.json) that
#                   tests/unit/contract/test_asyncapi_parser.py validates docs/asyncapi.json with
#   5. pytest       uv run pytest "$@"   (default: tests/)
# Exits with pytest's exit code; 5 (no test collected) is a failure too.
# Env: RAPPORT_TEST_NO_DOCKER=1 skips the engine and uses local processes.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"
cd "$RAPPORT_ROOT" || exit 1

T0=$(now_s)
TIMES=()
phase_done() { TIMES+=("$(printf '%-10s %7ss  %s' "$1" "$(elapsed "$2")" "${3:-}")"); log "phase $1: $(elapsed "$2")s ${3:-}"; }
print_times() { printf '\n== deploy/test.sh phase times ==\n'; printf '%s\n' "${TIMES[@]}"; printf 'total      %7ss\n' "$(elapsed "$T0")"; }

INFRA=docker
LOCAL_INFRA_STARTED=0
cleanup() {
  if [ "$LOCAL_INFRA_STARTED" = 1 ]; then bash deploy/local-infra.sh stop || true; fi
}
trap cleanup EXIT

use_local_infra() {
  local t0 envs
  t0=$(now_s)
  INFRA=local
  log "test.sh: starting Kafka and Postgres as plain processes on 127.0.0.1 (deploy/local-infra.sh)"
  # A state directory of our own: never touch another run's processes.
  export RAPPORT_LOCAL_INFRA_DIR="${RAPPORT_LOCAL_INFRA_DIR:-/tmp/rapport-local-infra-$$}"
  if ! envs=$(bash deploy/local-infra.sh start); then
    echo "test.sh: ERROR: local-infra.sh start failed as well" >&2
    exit 1
  fi
  LOCAL_INFRA_STARTED=1
  eval "$envs"
  export RAPPORT_TEST_KAFKA_BOOTSTRAP RAPPORT_TEST_POSTGRES_DSN RAPPORT_TEST_KAFKA_RESTART_CMD RAPPORT_TEST_KAFKA_KILL_CMD
  phase_done local-infra "$t0" "kafka $RAPPORT_TEST_KAFKA_BOOTSTRAP, postgres ${RAPPORT_TEST_POSTGRES_DSN##*@}"
}

# 1. engine ------------------------------------------------------------------------------------
t=$(now_s)
if [ "${RAPPORT_TEST_NO_DOCKER:-0}" = 1 ]; then
  INFRA=local
  phase_done engine "$t" "skipped (RAPPORT_TEST_NO_DOCKER=1)"
elif engine_err=$(bash deploy/engine.sh 2>&1); then
  printf '%s\n' "$engine_err" >&2
  phase_done engine "$t" "docker ok"
else
  printf '%s\n' "$engine_err" >&2
  echo "test.sh: THE DOCKER ENGINE COULD NOT START; the tests run against Kafka and Postgres as plain processes instead." >&2
  INFRA=local
  phase_done engine "$t" "FAILED -> local processes"
fi

# 2. uv -----------------------------------------------------------------------------------------
t=$(now_s)
ensure_uv || { echo "test.sh: ERROR: cannot install uv==$UV_VERSION" >&2; exit 1; }
phase_done uv "$t" "$(uv --version 2>/dev/null)"

# 3. uv sync ------------------------------------------------------------------------------------
t=$(now_s)
uv sync --frozen || { echo "test.sh: ERROR: uv sync --frozen failed" >&2; exit 1; }
phase_done uv-sync "$t"

# 4. images (or local processes) --------------------------------------------------------------
if [ "$INFRA" = docker ]; then
  t=$(now_s)
  if bash deploy/build-images.sh --infra-only; then
    phase_done images "$t" "rapport/postgres:15 rapport/kafka:4.3.1 rapport/prometheus:2.42"
  else
    echo "test.sh: image build failed (see above); falling back to plain processes" >&2
    phase_done images "$t" "FAILED"
    use_local_infra
  fi
else
  use_local_infra
fi

# 4b. chromium ----------------------------------------------------------------------------------
t=$(now_s)
apt_install chromium chromium-driver || { echo "test.sh: ERROR: cannot install chromium and chromium-driver" >&2; exit 1; }
phase_done chromium "$t" "$(chromium --version 2>/dev/null | head -n 1)"

# 4c. asyncapi parser (npm) --------------------------------------------------------------------
t=$(now_s)
if ! command -v node >/dev/null 2>&1; then
  phase_done asyncapi "$t" "skipped: node is not installed (the parser test is skipped)"
else
  pinned=$(cd tools/asyncapi && node -p 'require("./package.json").dependencies["@asyncapi/parser"]')
  installed=$(cd tools/asyncapi && node -p 'require("./node_modules/@asyncapi/parser/package.json").version' 2>/dev/null || true)
  if [ "$installed" = "$pinned" ]; then
    phase_done asyncapi "$t" "@asyncapi/parser $installed already installed"
  else
    # The lock file pins every package; tools/asyncapi/.npmrc disables install scripts.
    (cd tools/asyncapi && npm ci --no-audit --no-fund) || { echo "test.sh: ERROR: npm ci in tools/asyncapi failed" >&2; exit 1; }
    phase_done asyncapi "$t" "npm ci: @asyncapi/parser $pinned"
  fi
fi

# 5. pytest -------------------------------------------------------------------------------------
[ $# -eq 0 ] && set -- tests/
t=$(now_s)
log "test.sh: uv run pytest $* (infrastructure: $INFRA)"
uv run --frozen pytest "$@"
rc=$?
phase_done pytest "$t" "exit $rc"
print_times
if [ "$rc" -eq 5 ]; then
  echo "test.sh: pytest collected no test (exit 5): that is a failure." >&2
fi
exit "$rc"
