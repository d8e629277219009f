#!/usr/bin/env bash
# Single-node Apache Kafka (KRaft, combined broker+controller) from Maven Central jars.
# Used as the entrypoint of rapport/kafka and by deploy/local-infra.sh (plain process).
#
# Environment (all optional):
#   KAFKA_PORT             client listener port                       (9092)
#   KAFKA_CONTROLLER_PORT  controller listener port, bound on 127.0.0.1 (9093)
#   KAFKA_ADVERTISED_HOST  host name clients are told to use          (localhost)
#   KAFKA_LISTEN_HOST      address to bind the client listener(s) to  ("" = all interfaces)
#   KAFKA_INTERNAL_PORT    if set, a second listener INTERNAL on this port ...
#   KAFKA_INTERNAL_HOST    ... advertised under this name             (kafka)
#   KAFKA_NUM_PARTITIONS   default partitions of auto-created topics  (3)
#   KAFKA_INTERNAL_TOPIC_PARTITIONS  __consumer_offsets / __transaction_state partitions (10)
#   KAFKA_HEAP_OPTS        JVM heap                                   (-Xms128m -Xmx512m)
#   KAFKA_JVM_OPTS         extra JVM options
#   KAFKA_EXTRA_PROPERTIES extra server.properties lines (newline separated; they win)
#   KAFKA_CLUSTER_ID       cluster id used when formatting            (random)
#   KAFKA_HOME             where lib/ and log4j2.yaml are             (dir of this script)
#   KAFKA_LIB_DIR          the jars                                   ($KAFKA_HOME/lib)
#   KAFKA_LOG4J_CONFIG     log4j2 configuration                       ($KAFKA_HOME/log4j2.yaml)
#   KAFKA_DATA_DIR         log.dirs; formatted on first start only    (/var/lib/kafka/data)
# Secure profile (opt-in; docs/partners.md "Access"):
#   KAFKA_SECURE           1 = every listener (client, INTERNAL, CONTROLLER) is SASL_PLAINTEXT with
#                          mechanism PLAIN, StandardAuthorizer, allow.everyone.if.no.acl.found=false (0)
#   KAFKA_SASL_USERS       name:password,name:password,...  the client principals (User:<name>);
#                          required when KAFKA_SECURE=1. A password may contain ':' but not ',', '"',
#                          '\\' or a newline; names are [A-Za-z0-9._-]
#   KAFKA_SUPER_USERS      names (comma separated) that bypass ACLs, besides the broker   (admin)
#   KAFKA_BROKER_PASSWORD  password of User:broker, a super user: inter-broker and broker->controller
#                          connections and healthcheck.sh; no client needs it  (random per start)
#   KAFKA_TLS_PORT         with KAFKA_SECURE=1: one more client listener, SASL_SSL (TLS + SASL/PLAIN,
#                          the same users), on this port; for clients outside the private network
#   KAFKA_TLS_ADVERTISED_HOST  the name it is advertised under ($KAFKA_ADVERTISED_HOST)
#   KAFKA_TLS_KEYSTORE     PEM file: the unencrypted PKCS#8 private key and the certificate chain.
#                          Unset: a development CA and server certificate are made in
#                          $KAFKA_TLS_DIR (CA kept across restarts; clients trust $KAFKA_TLS_DIR/ca.pem)
#   KAFKA_TLS_DIR          (/var/lib/kafka/tls)
#   KAFKA_TLS_SANS         extra subjectAltNames for the made certificate (e.g. DNS:kafka.example.org)
# Storage is formatted only when $KAFKA_DATA_DIR/meta.properties is absent, so a restart of the
# same container (or process with the same data dir) keeps topics and offsets.
set -euo pipefail

KAFKA_HOME="${KAFKA_HOME:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)}"
KAFKA_DATA_DIR="${KAFKA_DATA_DIR:-/var/lib/kafka/data}"
KAFKA_PORT="${KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-9093}"
KAFKA_ADVERTISED_HOST="${KAFKA_ADVERTISED_HOST:-localhost}"
KAFKA_LISTEN_HOST="${KAFKA_LISTEN_HOST:-}"
KAFKA_INTERNAL_PORT="${KAFKA_INTERNAL_PORT:-}"
KAFKA_INTERNAL_HOST="${KAFKA_INTERNAL_HOST:-kafka}"
KAFKA_NUM_PARTITIONS="${KAFKA_NUM_PARTITIONS:-3}"
KAFKA_INTERNAL_TOPIC_PARTITIONS="${KAFKA_INTERNAL_TOPIC_PARTITIONS:-10}"
KAFKA_HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xms128m -Xmx512m}"
KAFKA_JVM_OPTS="${KAFKA_JVM_OPTS:-}"
JAVA="${JAVA:-java}"

KAFKA_LIB_DIR="${KAFKA_LIB_DIR:-$KAFKA_HOME/lib}"
KAFKA_LOG4J_CONFIG="${KAFKA_LOG4J_CONFIG:-$KAFKA_HOME/log4j2.yaml}"
CP="$KAFKA_LIB_DIR/*"
CONF_DIR="$(dirname "$KAFKA_DATA_DIR")/config"
PROPS="$CONF_DIR/server.properties"
LOG4J="-Dlog4j2.configurationFile=$KAFKA_LOG4J_CONFIG"
mkdir -p "$KAFKA_DATA_DIR" "$CONF_DIR"

KAFKA_SECURE="${KAFKA_SECURE:-0}"
case "$KAFKA_SECURE" in 1|true|yes) KAFKA_SECURE=1 ;; *) KAFKA_SECURE=0 ;; esac
# The client listener is called PLAINTEXT (default) or SASL_PLAINTEXT (secure profile).
client_listener=PLAINTEXT
[ "$KAFKA_SECURE" = 1 ] && client_listener=SASL_PLAINTEXT
listeners="${client_listener}://${KAFKA_LISTEN_HOST}:${KAFKA_PORT},CONTROLLER://127.0.0.1:${KAFKA_CONTROLLER_PORT}"
advertised="${client_listener}://${KAFKA_ADVERTISED_HOST}:${KAFKA_PORT}"
inter_broker=$client_listener
if [ -n "$KAFKA_INTERNAL_PORT" ]; then
  listeners="$listeners,INTERNAL://${KAFKA_LISTEN_HOST}:${KAFKA_INTERNAL_PORT}"
  advertised="$advertised,INTERNAL://${KAFKA_INTERNAL_HOST}:${KAFKA_INTERNAL_PORT}"
  inter_broker=INTERNAL
fi
protocol_map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,INTERNAL:PLAINTEXT
[ "$KAFKA_SECURE" = 1 ] && protocol_map=CONTROLLER:SASL_PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,INTERNAL:SASL_PLAINTEXT
KAFKA_TLS_PORT="${KAFKA_TLS_PORT:-}"
if [ -n "$KAFKA_TLS_PORT" ]; then
  [ "$KAFKA_SECURE" = 1 ] || { echo "kafka-run: KAFKA_TLS_PORT needs KAFKA_SECURE=1 (TLS here always comes with SASL)" >&2; exit 2; }
  listeners="$listeners,SASL_SSL://${KAFKA_LISTEN_HOST}:${KAFKA_TLS_PORT}"
  advertised="$advertised,SASL_SSL://${KAFKA_TLS_ADVERTISED_HOST:-$KAFKA_ADVERTISED_HOST}:${KAFKA_TLS_PORT}"
  protocol_map="$protocol_map,SASL_SSL:SASL_SSL"
fi

# make_dev_tls DIR: a development CA (kept) and a server certificate for this broker's names,
# joined as DIR/keystore.pem (key + chain) for Kafka's PEM keystore. Not for production: give
# KAFKA_TLS_KEYSTORE a certificate from the organisation's CA instead.
make_dev_tls() {
  local dir="$1" sans
  mkdir -p "$dir"
  if [ ! -s "$dir/ca.pem" ] || [ ! -s "$dir/ca.key" ]; then
    openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 3650 -subj "/CN=Rapport development Kafka CA" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
      -keyout "$dir/ca.key" -out "$dir/ca.pem" 2>/dev/null
  fi
  sans="DNS:localhost,DNS:${KAFKA_ADVERTISED_HOST},DNS:${KAFKA_INTERNAL_HOST},IP:127.0.0.1"
  [ -n "${KAFKA_TLS_ADVERTISED_HOST:-}" ] && sans="$sans,DNS:${KAFKA_TLS_ADVERTISED_HOST}"
  [ -n "${KAFKA_TLS_SANS:-}" ] && sans="$sans,${KAFKA_TLS_SANS}"
  sans=$(printf '%s' "$sans" | sed -E 's/DNS:([0-9]+\.[0-9]+\.[0-9]+\.[0-9]+)/IP:\1/g')  # addresses are IP SANs
  openssl req -newkey rsa:2048 -nodes -sha256 -subj "/CN=${KAFKA_TLS_ADVERTISED_HOST:-$KAFKA_ADVERTISED_HOST}" \
    -keyout "$dir/server.key" -out "$dir/server.csr" 2>/dev/null
  openssl x509 -req -sha256 -days 825 -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
    -CAcreateserial -out "$dir/server.pem" -extfile <(printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' "$sans") 2>/dev/null
  ( umask 077; cat "$dir/server.key" "$dir/server.pem" "$dir/ca.pem" > "$dir/keystore.pem" )
  rm -f "$dir/server.csr"
  chmod 644 "$dir/ca.pem"
  echo "kafka-run: made a development TLS certificate for ${sans} (trust $dir/ca.pem)"
}
HEALTH_CREDENTIALS="$CONF_DIR/healthcheck.sasl"  # read by healthcheck.sh in the secure profile
rm -f "$HEALTH_CREDENTIALS"

# Regenerated on every start so that env changes apply; only the storage is kept.
cat > "$PROPS" <<PROPS
# Generated by kafka-run.sh at $(date -u +%Y-%m-%dT%H:%M:%SZ); edits are overwritten.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:${KAFKA_CONTROLLER_PORT}
controller.listener.names=CONTROLLER
listeners=${listeners}
advertised.listeners=${advertised}
inter.broker.listener.name=${inter_broker}
listener.security.protocol.map=${protocol_map}
log.dirs=${KAFKA_DATA_DIR}
num.network.threads=3
num.io.threads=4
num.recovery.threads.per.data.dir=1
num.partitions=${KAFKA_NUM_PARTITIONS}
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=${KAFKA_INTERNAL_TOPIC_PARTITIONS}
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=${KAFKA_INTERNAL_TOPIC_PARTITIONS}
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
log.retention.hours=168
log.segment.bytes=1073741824
log.retention.check.interval.ms=300000
PROPS

if [ "$KAFKA_SECURE" = 1 ]; then
  # SASL/PLAIN users come from the environment and live only in this (regenerated) file, so
  # changing KAFKA_SASL_USERS and restarting takes effect; nothing is stored in the metadata log.
  die() { echo "kafka-run: $*" >&2; exit 2; }
  [ -n "${KAFKA_SASL_USERS:-}" ] || die "KAFKA_SECURE=1 needs KAFKA_SASL_USERS=name:password,..."
  broker_pw="${KAFKA_BROKER_PASSWORD:-}"
  if [ -z "$broker_pw" ]; then
    broker_pw=$(head -c 24 /dev/urandom | base64 | tr -d '+/=\n')
  fi
  case "$broker_pw" in *[\",\\]*|*$'\n'*) die "KAFKA_BROKER_PASSWORD must not contain '\"', ',', '\\' or a newline" ;; esac
  jaas_users="user_broker=\"${broker_pw}\""
  IFS=',' read -r -a entries <<< "$KAFKA_SASL_USERS"
  for entry in "${entries[@]}"; do
    entry="${entry#"${entry%%[![:space:]]*}"}"; entry="${entry%"${entry##*[![:space:]]}"}"
    [ -n "$entry" ] || continue
    name="${entry%%:*}"; pw="${entry#*:}"
    [ "$name" != "$entry" ] && [ -n "$pw" ] || die "KAFKA_SASL_USERS entry '${name}' has no password (name:password)"
    [[ "$name" =~ ^[A-Za-z0-9._-]+$ ]] || die "KAFKA_SASL_USERS: bad user name '${name}'"
    [ "$name" != broker ] || die "KAFKA_SASL_USERS: 'broker' is reserved (KAFKA_BROKER_PASSWORD)"
    case "$pw" in *[\"\\]*|*$'\n'*) die "KAFKA_SASL_USERS: the password of '${name}' contains '\"' or '\\'" ;; esac
    jaas_users="$jaas_users user_${name}=\"${pw}\""
  done
  supers="User:broker"
  IFS=',' read -r -a names <<< "${KAFKA_SUPER_USERS-admin}"
  for name in "${names[@]}"; do
    name="${name//[[:space:]]/}"
    [ -n "$name" ] && supers="$supers;User:$name"
  done
  module="org.apache.kafka.common.security.plain.PlainLoginModule required"
  login="username=\"broker\" password=\"${broker_pw}\""
  {
    echo "# Secure profile (KAFKA_SECURE=1): SASL/PLAIN on every listener, ACLs enforced."
    echo "sasl.enabled.mechanisms=PLAIN"
    echo "sasl.mechanism.inter.broker.protocol=PLAIN"
    echo "sasl.mechanism.controller.protocol=PLAIN"
    echo "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer"
    echo "allow.everyone.if.no.acl.found=false"
    echo "super.users=${supers}"
    # The controller listener (127.0.0.1 only) accepts the broker principal alone.
    echo "listener.name.controller.plain.sasl.jaas.config=${module} ${login} user_broker=\"${broker_pw}\";"
    echo "listener.name.sasl_plaintext.plain.sasl.jaas.config=${module} ${login} ${jaas_users};"
    if [ -n "$KAFKA_INTERNAL_PORT" ]; then
      echo "listener.name.internal.plain.sasl.jaas.config=${module} ${login} ${jaas_users};"
    fi
    if [ -n "$KAFKA_TLS_PORT" ]; then
      keystore="${KAFKA_TLS_KEYSTORE:-}"
      if [ -z "$keystore" ]; then
        make_dev_tls "${KAFKA_TLS_DIR:-$(dirname "$KAFKA_DATA_DIR")/tls}" >&2
        keystore="${KAFKA_TLS_DIR:-$(dirname "$KAFKA_DATA_DIR")/tls}/keystore.pem"
      fi
      [ -r "$keystore" ] || die "KAFKA_TLS_KEYSTORE $keystore is not readable"
      echo "listener.name.sasl_ssl.plain.sasl.jaas.config=${module} ${login} ${jaas_users};"
      echo "listener.name.sasl_ssl.ssl.keystore.type=PEM"
      echo "listener.name.sasl_ssl.ssl.keystore.location=${keystore}"
    fi
  } >> "$PROPS"
  chmod 600 "$PROPS"
  ( umask 077; printf 'broker\n%s\n' "$broker_pw" > "$HEALTH_CREDENTIALS" )
  echo "kafka-run: secure profile: SASL_PLAINTEXT/PLAIN, ${#entries[@]} user(s), super users ${supers}"
  [ -n "$KAFKA_TLS_PORT" ] && echo "kafka-run: TLS listener SASL_SSL on port ${KAFKA_TLS_PORT}"
fi
if [ -n "${KAFKA_EXTRA_PROPERTIES:-}" ]; then
  printf '# KAFKA_EXTRA_PROPERTIES\n%s\n' "$KAFKA_EXTRA_PROPERTIES" >> "$PROPS"
fi

if [ ! -f "$KAFKA_DATA_DIR/meta.properties" ]; then
  cid="${KAFKA_CLUSTER_ID:-}"
  if [ -z "$cid" ]; then
    # A Kafka Uuid: 16 random bytes, url-safe base64 without padding; not starting with '-'.
    while :; do
      cid=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')
      case "$cid" in -*|AAAAAAAAAAAAAAAAAAAAA*) continue ;; esac
      break
    done
  fi
  echo "kafka-run: formatting $KAFKA_DATA_DIR (cluster id $cid)"
  # shellcheck disable=SC2086
  "$JAVA" -Xmx256m $LOG4J -cp "$CP" kafka.tools.StorageTool format -t "$cid" -c "$PROPS"
else
  echo "kafka-run: $KAFKA_DATA_DIR is already formatted; keeping its data"
fi

# shellcheck disable=SC2086
exec "$JAVA" $KAFKA_HEAP_OPTS -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
  -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent -XX:MaxInlineLevel=15 \
  -Djava.awt.headless=true -Dkafka.logs.dir="$(dirname "$KAFKA_DATA_DIR")/logs" $LOG4J \
  $KAFKA_JVM_OPTS -cp "$CP" kafka.Kafka "$PROPS"
