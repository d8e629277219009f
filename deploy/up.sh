#!/usr/bin/env bash
# Bring the whole system up on this machine's Docker engine and wait until it is healthy:
#   engine (deploy/engine.sh) -> images (deploy/build-images.sh --all) -> docker-compose up -d
#   -> wait: postgres, kafka healthy; db-init and the four *-migrate one-shots exited 0;
#      intake, scheduler, outcomes, notifier healthy (/healthz); prometheus answering queries.
# Prometheus scrapes with a token of role metrics (docs/observability.md): issued here by
# `rapport-admin token` (the development issuer, or RAPPORT_AUTH_SIGNING_KEY) into
# deploy/.build/prometheus/metrics.token, unless RAPPORT_PROMETHEUS_SECRETS_DIR names a directory
# that holds your own metrics.token.
# Compose project name: rapport ($RAPPORT_COMPOSE_PROJECT). Timeout: $RAPPORT_UP_TIMEOUT (300 s).
# Stop with: docker-compose -p rapport down      (add -v to delete the data volumes)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"
cd "$RAPPORT_ROOT"

PROJECT="${RAPPORT_COMPOSE_PROJECT:-rapport}"
TIMEOUT="${RAPPORT_UP_TIMEOUT:-300}"
COMPOSE=(docker-compose -p "$PROJECT" -f "$RAPPORT_ROOT/docker-compose.yml")
LONG_RUNNING=(postgres kafka intake scheduler outcomes notifier prometheus)
ONE_SHOTS=(db-init intake-migrate scheduler-migrate outcomes-migrate notifier-migrate)
T0=$(now_s)

t=$(now_s); bash "$RAPPORT_DEPLOY/engine.sh";              log "up: engine $(elapsed "$t")s"
t=$(now_s); bash "$RAPPORT_DEPLOY/build-images.sh" --all;  log "up: images $(elapsed "$t")s"

if [ -z "${RAPPORT_PROMETHEUS_SECRETS_DIR:-}" ]; then
  export RAPPORT_PROMETHEUS_SECRETS_DIR="$RAPPORT_BUILD_DIR/prometheus"
  mkdir -p "$RAPPORT_PROMETHEUS_SECRETS_DIR"
  ensure_uv || die "cannot install uv==$UV_VERSION"
  # World-readable: the container's prometheus user reads it (a development token; 12 h, the
  # services' default maximum lifetime: run deploy/up.sh again to renew it, no restart needed).
  ( umask 022; uv run --frozen -q rapport-admin token --sub prometheus --role metrics --hours 12 \
      > "$RAPPORT_PROMETHEUS_SECRETS_DIR/metrics.token.new" ) || die "cannot issue Prometheus' scrape token"
  mv "$RAPPORT_PROMETHEUS_SECRETS_DIR/metrics.token.new" "$RAPPORT_PROMETHEUS_SECRETS_DIR/metrics.token"
fi

cid() { "${COMPOSE[@]}" ps -q "$1" 2>/dev/null | head -n1; }
show_logs() { "${COMPOSE[@]}" logs --no-color --tail=40 "$@" >&2 || true; }

t=$(now_s)
log "up: docker-compose -p $PROJECT up -d"
# compose 1.29 waits for the depends_on conditions itself and fails if one cannot be met.
if ! "${COMPOSE[@]}" up -d --remove-orphans; then
  "${COMPOSE[@]}" ps >&2 || true
  show_logs
  die "docker-compose up failed"
fi

deadline=$(( $(date +%s) + TIMEOUT ))
while :; do
  pending=()
  for s in "${ONE_SHOTS[@]}"; do
    id=$(cid "$s")
    [ -n "$id" ] || { pending+=("$s(not created)"); continue; }
    read -r status code < <(docker inspect -f '{{.State.Status}} {{.State.ExitCode}}' "$id")
    if [ "$status" = exited ] && [ "$code" != 0 ]; then show_logs "$s"; die "$s exited with $code"; fi
    [ "$status" = exited ] || pending+=("$s($status)")
  done
  for s in "${LONG_RUNNING[@]}"; do
    id=$(cid "$s")
    [ -n "$id" ] || { pending+=("$s(not created)"); continue; }
    health=$(docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}' "$id")
    case "$health" in
      healthy) ;;
      exited|dead) show_logs "$s"; die "$s is $health" ;;
      *) pending+=("$s($health)") ;;
    esac
  done
  [ ${#pending[@]} -eq 0 ] && break
  if [ "$(date +%s)" -ge "$deadline" ]; then
    "${COMPOSE[@]}" ps >&2 || true
    show_logs "${pending[@]%%(*}"
    die "not healthy after ${TIMEOUT}s: ${pending[*]}"
  fi
  sleep 2
done
log "up: all healthy $(elapsed "$t")s after compose up (total $(elapsed "$T0")s)"
"${COMPOSE[@]}" ps
cat <<INFO
Rapport is up (compose project $PROJECT), on 127.0.0.1:
  intake    http://127.0.0.1:8081   scheduler http://127.0.0.1:8082
  outcomes  http://127.0.0.1:8083   notifier  http://127.0.0.1:8084
  prometheus http://127.0.0.1:${RAPPORT_PROMETHEUS_PORT:-9090} (dashboards for Grafana: deploy/grafana)
  kafka     127.0.0.1:${RAPPORT_KAFKA_PORT:-9092}          postgres  127.0.0.1:${RAPPORT_POSTGRES_PORT:-5432} (db rapport)
INFO
# TODO(lead): deploy/demo.sh calls this script, then drives an episode through the running system.
