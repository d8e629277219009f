#!/usr/bin/env bash
# Kafka and PostgreSQL as plain processes on 127.0.0.1, for machines where no Docker engine runs.
# Same broker jars and kafka-run.sh as rapport/kafka, same pg-run.sh as rapport/postgres (with
# Debian's postgresql-15 binaries, installed if missing).
#
#   eval "$(bash deploy/local-infra.sh start)"   # prints the env vars the test fixtures read
#   bash deploy/local-infra.sh env               # print them again
#   bash deploy/local-infra.sh restart-kafka     # SIGTERM + start again, same data (tests use it)
#   bash deploy/local-infra.sh kill-kafka        # SIGKILL (restart-kafka brings it back)
#   bash deploy/local-infra.sh status
#   bash deploy/local-infra.sh stop              # stops both and deletes their data
#
# State (data, logs, pids, ports): $RAPPORT_LOCAL_INFRA_DIR (default /tmp/rapport-local-infra).
# Ports: free ones, or $RAPPORT_LOCAL_KAFKA_PORT / $RAPPORT_LOCAL_POSTGRES_PORT.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"

STATE="${RAPPORT_LOCAL_INFRA_DIR:-/tmp/rapport-local-infra}"
PG_BIN="${PG_BIN:-/usr/lib/postgresql/15/bin}"
THIS="$RAPPORT_DEPLOY/local-infra.sh"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

print_env() {
  # shellcheck disable=SC1091
  source "$STATE/ports"
  cat <<ENV
export RAPPORT_TEST_KAFKA_BOOTSTRAP=127.0.0.1:$KAFKA_PORT
export RAPPORT_TEST_POSTGRES_DSN=postgresql://postgres:postgres@127.0.0.1:$PG_PORT/rapport
export RAPPORT_TEST_KAFKA_RESTART_CMD='RAPPORT_LOCAL_INFRA_DIR=$STATE bash $THIS restart-kafka'
export RAPPORT_TEST_KAFKA_KILL_CMD='RAPPORT_LOCAL_INFRA_DIR=$STATE bash $THIS kill-kafka'
ENV
}

start_kafka() {
  # shellcheck disable=SC1091
  source "$STATE/ports"
  alive "$STATE/kafka.pid" && return 0
  local t0; t0=$(now_s)
  KAFKA_HOME="$RAPPORT_DEPLOY/kafka" KAFKA_LIB_DIR="$RAPPORT_BUILD_DIR/kafka/lib" \
  KAFKA_DATA_DIR="$STATE/kafka/data" KAFKA_PORT="$KAFKA_PORT" KAFKA_CONTROLLER_PORT="$KAFKA_CONTROLLER_PORT" \
  KAFKA_LISTEN_HOST=127.0.0.1 KAFKA_ADVERTISED_HOST=127.0.0.1 \
    setsid nohup bash "$RAPPORT_DEPLOY/kafka/kafka-run.sh" >>"$STATE/kafka.log" 2>&1 </dev/null &
  echo $! > "$STATE/kafka.pid"
  local deadline=$(( $(date +%s) + 120 ))
  until bash "$RAPPORT_DEPLOY/kafka/healthcheck.sh" 127.0.0.1 "$KAFKA_PORT"; do
    alive "$STATE/kafka.pid" || { tail -n 30 "$STATE/kafka.log" >&2; die "kafka exited (log: $STATE/kafka.log)"; }
    [ "$(date +%s)" -lt "$deadline" ] || { tail -n 30 "$STATE/kafka.log" >&2; die "kafka not ready in 120s"; }
    sleep 0.3
  done
  log "local-infra: kafka ready on 127.0.0.1:$KAFKA_PORT in $(elapsed "$t0")s (log: $STATE/kafka.log)"
}

stop_pidfile() {  # stop_pidfile FILE SIGNAL TIMEOUT
  local f="$1" sig="$2" timeout="$3" pid i
  alive "$f" || { rm -f "$f"; return 0; }
  pid=$(cat "$f")
  kill "-$sig" "$pid" 2>/dev/null || true
  for ((i = 0; i < timeout * 5; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
  rm -f "$f"
}

start_postgres() {
  # shellcheck disable=SC1091
  source "$STATE/ports"
  alive "$STATE/postgres.pid" && return 0
  local t0; t0=$(now_s)
  [ -x "$PG_BIN/postgres" ] || apt_install postgresql-15 || die "cannot install postgresql-15"
  # pg-run.sh re-executes itself as the "postgres" user: give it a copy that user can read.
  install -m 0755 "$RAPPORT_DEPLOY/postgres/pg-run.sh" "$STATE/pg-run.sh"
  mkdir -p "$STATE/pg" && chmod 755 "$STATE" "$STATE/pg"
  PG_BIN="$PG_BIN" PGDATA="$STATE/pg/data" PGPORT="$PG_PORT" PG_SOCKET_DIR="$STATE/pg" \
  POSTGRES_LISTEN=127.0.0.1 POSTGRES_FAST=1 POSTGRES_PASSWORD=postgres POSTGRES_DB=rapport \
    setsid nohup bash "$STATE/pg-run.sh" >>"$STATE/postgres.log" 2>&1 </dev/null &
  echo $! > "$STATE/postgres.pid"
  local deadline=$(( $(date +%s) + 60 ))
  until "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" 2>/dev/null; do
    alive "$STATE/postgres.pid" || { tail -n 30 "$STATE/postgres.log" >&2; die "postgres exited (log: $STATE/postgres.log)"; }
    [ "$(date +%s)" -lt "$deadline" ] || die "postgres not ready in 60s (log: $STATE/postgres.log)"
    sleep 0.2
  done
  log "local-infra: postgres ready on 127.0.0.1:$PG_PORT in $(elapsed "$t0")s (log: $STATE/postgres.log)"
}

cmd="${1:-}"
case "$cmd" in
  start)
    mkdir -p "$STATE"
    if [ ! -f "$STATE/ports" ]; then
      kp="${RAPPORT_LOCAL_KAFKA_PORT:-$(free_port)}"; cp_="$(free_port)"
      while [ "$cp_" = "$kp" ]; do cp_="$(free_port)"; done
      printf 'KAFKA_PORT=%s\nKAFKA_CONTROLLER_PORT=%s\nPG_PORT=%s\n' \
        "$kp" "$cp_" "${RAPPORT_LOCAL_POSTGRES_PORT:-$(free_port)}" > "$STATE/ports"
    fi
    command -v java >/dev/null 2>&1 || apt_install openjdk-17-jre-headless || die "cannot install a JRE"
    fetch_kafka_jars "$RAPPORT_BUILD_DIR/kafka"
    start_postgres
    start_kafka
    print_env
    ;;
  env) print_env ;;
  restart-kafka)
    stop_pidfile "$STATE/kafka.pid" TERM 30
    start_kafka
    ;;
  kill-kafka) stop_pidfile "$STATE/kafka.pid" KILL 5 ;;
  status)
    for s in kafka postgres; do
      if alive "$STATE/$s.pid"; then echo "$s: running (pid $(cat "$STATE/$s.pid"))"; else echo "$s: stopped"; fi
    done
    [ -f "$STATE/ports" ] && cat "$STATE/ports"
    ;;
  stop)
    stop_pidfile "$STATE/kafka.pid" TERM 30
    stop_pidfile "$STATE/postgres.pid" INT 30
    rm -rf "$STATE"
    log "local-infra: stopped; $STATE removed"
    ;;
  *) sed -n '2,17p' "$0" >&2; exit 2 ;;
esac
