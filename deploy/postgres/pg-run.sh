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
#   POSTGRES_TLS=1     serve TLS (ssl=on) and accept TCP connections only over it: pg_hba.conf is
#                      then $PGDATA/pg_hba.tls.conf, rewritten on every start (hostssl + scram-sha-256
#                      for every role, hostnossl rejected; the unix socket still trusts local users)
#   POSTGRES_TLS_CERT, POSTGRES_TLS_KEY  PEM server certificate (chain) and its unencrypted private key
#                      from the organisation's CA, readable by user postgres (copied into
#                      $POSTGRES_TLS_DIR with mode 600). Unset: a development CA (kept across
#                      restarts) and a server certificate (made again on every start) in $POSTGRES_TLS_DIR
#   POSTGRES_TLS_DIR   private TLS files (keys)                    ($PGDATA/tls)
#   POSTGRES_TLS_SANS  extra subjectAltNames of the made certificate, e.g. DNS:postgres
#                      (always: DNS:localhost, IP:127.0.0.1; the first DNS name is the CN)
#   POSTGRES_TLS_PUBLISH_DIR  a directory that receives ca.pem, the certificate clients trust
#                      (sslrootcert=...), e.g. a volume the clients mount read-only; no key goes there
#   POSTGRES_TLS_CA    with POSTGRES_TLS_CERT: the CA certificate to publish there (optional)
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

POSTGRES_TLS="${POSTGRES_TLS:-0}"
case "$POSTGRES_TLS" in 1|true|yes) POSTGRES_TLS=1 ;; *) POSTGRES_TLS=0 ;; esac
POSTGRES_TLS_DIR="${POSTGRES_TLS_DIR:-$PGDATA/tls}"
POSTGRES_TLS_PUBLISH_DIR="${POSTGRES_TLS_PUBLISH_DIR:-}"

die() { echo "pg-run: $*" >&2; exit 2; }

# As root (the container's default): own the directories, then re-exec as "postgres".
if [ "$(id -u)" = 0 ]; then
  mkdir -p "$PGDATA" "$PG_SOCKET_DIR"
  chown postgres:postgres "$PGDATA" "$PG_SOCKET_DIR"
  if [ "$POSTGRES_TLS" = 1 ] && [ -n "$POSTGRES_TLS_PUBLISH_DIR" ]; then
    mkdir -p "$POSTGRES_TLS_PUBLISH_DIR"
    chown postgres:postgres "$POSTGRES_TLS_PUBLISH_DIR"
    chmod 755 "$POSTGRES_TLS_PUBLISH_DIR"
  fi
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

# make_dev_tls DIR: a development CA (kept) and a server certificate for this server's names.
# Not for production: give POSTGRES_TLS_CERT/POSTGRES_TLS_KEY a certificate from the organisation's CA.
make_dev_tls() {
  local dir="$1" sans cn
  if [ ! -s "$dir/ca.pem" ] || [ ! -s "$dir/ca.key" ]; then
    openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 3650 -subj "/CN=Rapport development Postgres CA" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
      -keyout "$dir/ca.key" -out "$dir/ca.pem" 2>/dev/null
    echo "pg-run: made a development CA ($dir/ca.pem)"
  fi
  sans="DNS:localhost,IP:127.0.0.1"
  [ -n "${POSTGRES_TLS_SANS:-}" ] && sans="${POSTGRES_TLS_SANS},${sans}"
  sans=$(printf '%s' "$sans" | sed -E 's/DNS:([0-9]+\.[0-9]+\.[0-9]+\.[0-9]+)/IP:\1/g')  # addresses are IP SANs
  cn=$(printf '%s' "$sans" | tr ',' '\n' | sed -n 's/^DNS://p' | head -n 1)
  openssl req -newkey rsa:2048 -nodes -sha256 -subj "/CN=${cn:-localhost}" \
    -keyout "$dir/server.key" -out "$dir/server.csr" 2>/dev/null
  openssl x509 -req -sha256 -days 825 -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
    -CAcreateserial -out "$dir/server.pem" \
    -extfile <(printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' "$sans") 2>/dev/null
  rm -f "$dir/server.csr"
  echo "pg-run: made a development TLS certificate for ${sans} (clients trust $dir/ca.pem)"
}

tls=()
if [ "$POSTGRES_TLS" = 1 ]; then
  ( umask 077; mkdir -p "$POSTGRES_TLS_DIR" )
  chmod 700 "$POSTGRES_TLS_DIR"
  ca=""
  if [ -n "${POSTGRES_TLS_CERT:-}${POSTGRES_TLS_KEY:-}" ]; then
    [ -r "${POSTGRES_TLS_CERT:-}" ] || die "POSTGRES_TLS_CERT '${POSTGRES_TLS_CERT:-}' is not readable by user $(id -un)"
    [ -r "${POSTGRES_TLS_KEY:-}" ] || die "POSTGRES_TLS_KEY '${POSTGRES_TLS_KEY:-}' is not readable by user $(id -un)"
    # Postgres refuses a key others can read: copy both with our own modes.
    ( umask 077; cat "$POSTGRES_TLS_CERT" > "$POSTGRES_TLS_DIR/server.pem"; cat "$POSTGRES_TLS_KEY" > "$POSTGRES_TLS_DIR/server.key" )
    if [ -n "${POSTGRES_TLS_CA:-}" ]; then
      [ -r "$POSTGRES_TLS_CA" ] || die "POSTGRES_TLS_CA '$POSTGRES_TLS_CA' is not readable by user $(id -un)"
      ca="$POSTGRES_TLS_CA"
    fi
    echo "pg-run: TLS with the certificate of POSTGRES_TLS_CERT"
  else
    make_dev_tls "$POSTGRES_TLS_DIR"
    ca="$POSTGRES_TLS_DIR/ca.pem"
  fi
  chmod 600 "$POSTGRES_TLS_DIR/server.key"
  if [ -n "$POSTGRES_TLS_PUBLISH_DIR" ]; then
    if [ -n "$ca" ]; then
      mkdir -p "$POSTGRES_TLS_PUBLISH_DIR"
      # Written next to it, then renamed: a client never reads half a file.
      cp "$ca" "$POSTGRES_TLS_PUBLISH_DIR/.ca.pem.tmp"
      chmod 644 "$POSTGRES_TLS_PUBLISH_DIR/.ca.pem.tmp"
      mv -f "$POSTGRES_TLS_PUBLISH_DIR/.ca.pem.tmp" "$POSTGRES_TLS_PUBLISH_DIR/ca.pem"
      echo "pg-run: published the CA certificate as $POSTGRES_TLS_PUBLISH_DIR/ca.pem"
    else
      echo "pg-run: POSTGRES_TLS_PUBLISH_DIR set but no CA to publish (set POSTGRES_TLS_CA)" >&2
    fi
  fi
  hba="$PGDATA/pg_hba.tls.conf"
  {
    echo "# Written by pg-run.sh on every start with POSTGRES_TLS=1 (pg_hba.conf is not used then)."
    echo "# TCP only over TLS, password (scram) required, for every role; the unix socket trusts local users."
    echo "local     all all              trust"
    echo "hostssl   all all 0.0.0.0/0    scram-sha-256"
    echo "hostssl   all all ::/0         scram-sha-256"
    echo "hostnossl all all 0.0.0.0/0    reject"
    echo "hostnossl all all ::/0         reject"
  } > "$hba.tmp"
  chmod 600 "$hba.tmp"
  mv -f "$hba.tmp" "$hba"
  tls=(-c ssl=on -c ssl_cert_file="$POSTGRES_TLS_DIR/server.pem" -c ssl_key_file="$POSTGRES_TLS_DIR/server.key"
       -c ssl_min_protocol_version=TLSv1.2 -c hba_file="$hba")
  echo "pg-run: TLS on; TCP connections without TLS are refused (hostssl only)"
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
  "${tls[@]}" "${fast[@]}" "$@"
