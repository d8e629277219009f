#!/usr/bin/env bash
# PostgreSQL 15 server for Rapport (container entrypoint; also used by deploy/local-infra.sh).
#
# Environment (all optional):
#   PGDATA             data directory; initdb'd on first start     (/var/lib/postgresql/data)
#   PGPORT             TCP port                                    (5432)
#   POSTGRES_PASSWORD  password of the superuser "postgres"        (postgres)
#   POSTGRES_DB        database created on first start             (rapport)
#   POSTGRES_LISTEN    listen_addresses                            (*)
#   POSTGRES_FAST=1    fsync=off, synchronous_commit=off, full_page_writes=off (tests only)
#   POSTGRES_MAX_CONNECTIONS                                       (200)
#   PG_BIN             server binaries                             (/usr/lib/postgresql/15/bin)
#   PG_SOCKET_DIR      unix socket directory                       (/var/run/postgresql)
# Extra arguments are passed to `postgres` (e.g. -c log_statement=all).
# TCP connections from anywhere use scram-sha-256; the unix socket trusts local users.
set -euo pipefail

PG_BIN="${PG_BIN:-/usr/lib/postgresql/15/bin}"
export PGDATA="${PGDATA:-/var/lib/postgresql/data}"
export PGPORT="${PGPORT:-5432}"
PG_SOCKET_DIR="${PG_SOCKET_DIR:-/var/run/postgresql}"
POSTGRES_PASSWORD="${POSTGRES_PASSWORD:-postgres}"
POSTGRES_DB="${POSTGRES_DB:-rapport}"
POSTGRES_LISTEN="${POSTGRES_LISTEN:-*}"
POSTGRES_MAX_CONNECTIONS="${POSTGRES_MAX_CONNECTIONS:-200}"

# As root (the container's default): own the directories, then re-exec as "postgres".
if [ "$(id -u)" = 0 ]; then
  mkdir -p "$PGDATA" "$PG_SOCKET_DIR"
  chown postgres:postgres "$PGDATA" "$PG_SOCKET_DIR"
  chmod 700 "$PGDATA"
  exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  echo "pg-run: initdb in $PGDATA"
  pwfile="$(mktemp)"
  printf '%s\n' "$POSTGRES_PASSWORD" > "$pwfile"
  "$PG_BIN/initdb" -D "$PGDATA" -U postgres --pwfile="$pwfile" -E UTF8 --locale=C.UTF-8 \
    --auth-local=trust --auth-host=scram-sha-256 >/dev/null
  rm -f "$pwfile"
  {
    echo "# Added by pg-run.sh: TCP from anywhere, password (scram) required."
    echo "host all all 0.0.0.0/0 scram-sha-256"
    echo "host all all ::/0 scram-sha-256"
  } >> "$PGDATA/pg_hba.conf"
  if [ -n "$POSTGRES_DB" ] && [ "$POSTGRES_DB" != postgres ]; then
    # Single-user mode: no server, no socket, no port needed.
    printf 'CREATE DATABASE "%s";\n' "$POSTGRES_DB" \
      | "$PG_BIN/postgres" --single -D "$PGDATA" -c fsync=off postgres >/dev/null
    echo "pg-run: created database $POSTGRES_DB"
  fi
fi

fast=()
if [ "${POSTGRES_FAST:-0}" = 1 ]; then
  fast=(-c fsync=off -c synchronous_commit=off -c full_page_writes=off)
  echo "pg-run: POSTGRES_FAST=1 (fsync, synchronous_commit and full_page_writes off)"
fi

exec "$PG_BIN/postgres" -D "$PGDATA" -p "$PGPORT" \
  -c listen_addresses="$POSTGRES_LISTEN" \
  -c unix_socket_directories="$PG_SOCKET_DIR" \
  -c max_connections="$POSTGRES_MAX_CONNECTIONS" \
  -c password_encryption=scram-sha-256 \
  "${fast[@]}" "$@"
