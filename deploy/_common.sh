# Shared helpers for the deploy/ scripts (sourced, not executed).
# shellcheck shell=bash

RAPPORT_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RAPPORT_DEPLOY="$RAPPORT_ROOT/deploy"
# Generated build inputs (jars, wheels, rootfs tarball) live here; ignored by git.
RAPPORT_BUILD_DIR="${RAPPORT_BUILD_DIR:-$RAPPORT_DEPLOY/.build}"

log()  { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die()  { log "ERROR: $*"; exit 1; }

# now_s: seconds since epoch with fractions; elapsed START -> "12.3"
now_s()   { date +%s.%N; }
elapsed() { awk -v s="$1" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }'; }

# as_root CMD...: run CMD as root (sudo when not root and sudo exists).
as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo -n "$@"
  else die "need root for: $*"
  fi
}

_APT_UPDATED=0
# apt_install PKG...: install the Debian packages that are missing.
apt_install() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "apt-get install ${missing[*]}"
  if [ "$_APT_UPDATED" = 0 ]; then
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 || return 1
    _APT_UPDATED=1
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

# debian_mirror: the Debian archive URI the host's apt uses (deb822 or one-line format).
debian_mirror() {
  if [ -n "${RAPPORT_DEBIAN_MIRROR:-}" ]; then echo "$RAPPORT_DEBIAN_MIRROR"; return; fi
  local uri
  uri=$(
    {
      cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk 'tolower($1)=="uris:" { for (i=2;i<=NF;i++) print $i }'
      cat /etc/apt/sources.list.d/*.list /etc/apt/sources.list 2>/dev/null \
        | awk '$1=="deb" { for (i=2;i<=NF;i++) if ($i ~ /^[a-z]+:\/\//) { print $i; break } }'
    } | grep -E '/debian/?$' | grep -v -- '-security' | head -n1
  )
  echo "${uri:-http://deb.debian.org/debian}"
}

KAFKA_VERSION=4.3.1

# fetch_kafka_jars DIR : Kafka's runtime jars into DIR/lib (skipped when pom.xml is unchanged).
fetch_kafka_jars() {
  local dir="$1" pomhash
  pomhash=$(sha256sum "$RAPPORT_DEPLOY/kafka/pom.xml" | cut -c1-64)
  if [ -f "$dir/lib/.pom.sha256" ] && [ "$(cat "$dir/lib/.pom.sha256")" = "$pomhash" ]; then
    return 0
  fi
  mkdir -p "$dir" "$RAPPORT_BUILD_DIR"
  command -v mvn >/dev/null 2>&1 || apt_install maven || die "cannot install maven"
  log "kafka: fetching jars from Maven Central (mvn copy-dependencies)"
  rm -rf "${dir:?}/lib"
  if ! (cd "$RAPPORT_DEPLOY/kafka" && mvn -B -q \
        org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$dir/lib") >"$RAPPORT_BUILD_DIR/mvn.log" 2>&1; then
    tail -n 30 "$RAPPORT_BUILD_DIR/mvn.log" >&2
    die "mvn copy-dependencies failed (log: $RAPPORT_BUILD_DIR/mvn.log)"
  fi
  local jar
  for jar in slf4j-api-1.7.36.jar log4j-slf4j-impl-2.25.4.jar log4j-core-2.25.4.jar "kafka_2.13-$KAFKA_VERSION.jar"; do
    [ -f "$dir/lib/$jar" ] || die "$jar missing from $dir/lib (see $RAPPORT_BUILD_DIR/mvn.log)"
  done
  echo "$pomhash" > "$dir/lib/.pom.sha256"
}
