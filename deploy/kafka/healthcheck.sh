#!/usr/bin/env bash
# Kafka readiness probe with no JVM and no client tools: sends a Metadata v4 request over
# bash's /dev/tcp and succeeds when the response lists at least one (unfenced) broker.
# Usage: healthcheck.sh [HOST] [PORT]   (defaults 127.0.0.1 and $KAFKA_PORT or 9092)
set -eu
host="${1:-127.0.0.1}"
port="${2:-${KAFKA_PORT:-9092}}"
{ exec 3<>"/dev/tcp/$host/$port"; } 2>/dev/null || exit 1
# size=15 | api_key=3 (Metadata) | api_version=4 | correlation_id=1 | client_id=null (-1)
# | topics=[] (0: no topic, brokers only) | allow_auto_topic_creation=false
printf '\x00\x00\x00\x0f\x00\x03\x00\x04\x00\x00\x00\x01\xff\xff\x00\x00\x00\x00\x00' >&3
# Response: size(4) correlation_id(4) throttle_time_ms(4) brokers_count(4) ...
hex=$(timeout 5 head -c 16 <&3 | od -An -v -tx1 | tr -d ' \n')
exec 3<&-
[ "${#hex}" -eq 32 ] || exit 1
[ "${hex:8:8}" = "00000001" ] || exit 1
count=$((16#${hex:24:8}))
[ "$count" -ge 1 ]
