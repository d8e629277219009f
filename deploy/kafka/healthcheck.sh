#!/usr/bin/env bash
# Kafka readiness probe with no JVM and no client tools: sends a Metadata v4 request over
# bash's /dev/tcp and succeeds when the response lists at least one (unfenced) broker.
# Usage: healthcheck.sh [HOST] [PORT]   (defaults 127.0.0.1 and $KAFKA_PORT or 9092)
# Secure profile (KAFKA_SECURE=1): kafka-run.sh leaves the broker principal's credentials in
# <conf>/healthcheck.sasl (mode 600); the probe then authenticates first (SaslHandshake v1 with
# PLAIN + SaslAuthenticate v0), since a SASL listener answers nothing else before that.
set -eu
host="${1:-127.0.0.1}"
port="${2:-${KAFKA_PORT:-9092}}"
creds="${KAFKA_HEALTH_CREDENTIALS:-$(dirname "${KAFKA_DATA_DIR:-/var/lib/kafka/data}")/config/healthcheck.sasl}"
{ exec 3<>"/dev/tcp/$host/$port"; } 2>/dev/null || exit 1

hexof() { printf '%s' "$1" | od -An -v -tx1 | tr -d ' \n'; }
send_hex() { printf "$(printf '%s' "$1" | sed 's/../\\x&/g')" >&3; }
# One response as hex without its size prefix: correlation_id(4) then the body.
recv_hex() {
  local size
  size=$(timeout 5 head -c 4 <&3 | od -An -v -tx1 | tr -d ' \n')
  [ "${#size}" -eq 8 ] || return 1
  timeout 5 head -c "$((16#$size))" <&3 | od -An -v -tx1 | tr -d ' \n'
}

if [ -r "$creds" ]; then
  { read -r user; read -r pass; } < "$creds"
  # SaslHandshake v1: api_key=17 version=1 correlation_id=1 client_id=null mechanism="PLAIN"
  body="0011000100000001ffff0005$(hexof PLAIN)"
  send_hex "$(printf '%08x' $((${#body} / 2)))$body"
  r=$(recv_hex) || exit 1
  [ "${r:0:12}" = "000000010000" ] || exit 1          # correlation 1, error_code 0
  # SaslAuthenticate v0: api_key=36 version=0 correlation_id=2 client_id=null auth_bytes=\0user\0pass
  auth="00$(hexof "$user")00$(hexof "$pass")"
  body="0024000000000002ffff$(printf '%08x' $((${#auth} / 2)))$auth"
  send_hex "$(printf '%08x' $((${#body} / 2)))$body"
  r=$(recv_hex) || exit 1
  [ "${r:0:12}" = "000000020000" ] || exit 1          # correlation 2, error_code 0
fi

# Metadata v4: size=15 | api_key=3 | api_version=4 | correlation_id=3 | client_id=null (-1)
# | topics=[] (0: no topic, brokers only) | allow_auto_topic_creation=false
send_hex "0000000f0003000400000003ffff0000000000"
# Response: correlation_id(4) throttle_time_ms(4) brokers_count(4) ...
hex=$(recv_hex) || exit 1
exec 3<&-
[ "${#hex}" -ge 24 ] || exit 1
[ "${hex:0:8}" = "00000003" ] || exit 1
count=$((16#${hex:16:8}))
[ "$count" -ge 1 ]
