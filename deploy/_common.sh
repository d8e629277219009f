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

# The uv every deploy/ script uses (pinned; bump deliberately, then `uv lock` with it).
UV_VERSION=0.13.9

# ensure_uv : `uv` on PATH is the pinned UV_VERSION. Absent: `pip install uv==UV_VERSION`.
# Another version present: the pinned one goes into $RAPPORT_BUILD_DIR/tools/uv-UV_VERSION (pip
# --target; the user's own uv is left alone) and that directory is put first on PATH.
ensure_uv() {
  local have dir="$RAPPORT_BUILD_DIR/tools/uv-$UV_VERSION"
  have=$(uv --version 2>/dev/null | awk '{print $2}')
  [ "$have" = "$UV_VERSION" ] && return 0
  if [ -x "$dir/bin/uv" ]; then
    export PATH="$dir/bin:$PATH"
  elif [ -z "$have" ]; then
    log "installing uv==$UV_VERSION (pip)"
    python3 -m pip install -q "uv==$UV_VERSION" || return 1
    hash -r
  else
    log "uv $have on PATH, not the pinned $UV_VERSION: installing uv==$UV_VERSION into $dir"
    python3 -m pip install -q --target "$dir" "uv==$UV_VERSION" >&2 || return 1
    export PATH="$dir/bin:$PATH"
  fi
  hash -r
  have=$(uv --version 2>/dev/null | awk '{print $2}')
  [ "$have" = "$UV_VERSION" ] || { log "uv on PATH is ${have:-absent}, not the pinned $UV_VERSION"; return 1; }
}

# fetch_kafka_jars DIR : Kafka's runtime jars into DIR/lib, each checked against the .sha1 (and
# .sha512 where published) that Maven Central publishes next to it; DIR/jars.verified.tsv lists
# them (coordinates, sha1, sha512, sha256, url). Fetched again only when pom.xml or the verifier
# changed; every call re-hashes DIR/lib against the list (offline) and refuses a changed jar.
fetch_kafka_jars() {
  local dir="$1" pomhash verifier="$RAPPORT_DEPLOY/kafka/verify_jars.py"
  pomhash=$(cat "$RAPPORT_DEPLOY/kafka/pom.xml" "$verifier" | sha256sum | cut -c1-64)
  if [ -f "$dir/lib/.pom.sha256" ] && [ "$(cat "$dir/lib/.pom.sha256")" = "$pomhash" ] \
     && [ -f "$dir/jars.verified.tsv" ]; then
    python3 "$verifier" check "$dir/lib" "$dir/jars.verified.tsv" || die "Kafka jars in $dir/lib changed since they were verified"
    return 0
  fi
  mkdir -p "$dir" "$RAPPORT_BUILD_DIR"
  command -v mvn >/dev/null 2>&1 || apt_install maven || die "cannot install maven"
  log "kafka: fetching jars from Maven Central (mvn -C copy-dependencies, repository layout)"
  rm -rf "${dir:?}/lib" "${dir:?}/m2" "$dir/jars.verified.tsv"
  # -C: Maven fails on a checksum mismatch for what it downloads (jars already in ~/.m2 are not
  # checked again: verify_jars.py below checks every jar against Maven Central itself).
  if ! (cd "$RAPPORT_DEPLOY/kafka" && mvn -B -q -C \
        org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies \
        -DincludeScope=runtime -Dmdep.useRepositoryLayout=true -DoutputDirectory="$dir/m2") >"$RAPPORT_BUILD_DIR/mvn.log" 2>&1; then
    tail -n 30 "$RAPPORT_BUILD_DIR/mvn.log" >&2
    die "mvn copy-dependencies failed (log: $RAPPORT_BUILD_DIR/mvn.log)"
  fi
  python3 "$verifier" fetch "$dir/m2" "$dir/lib" "$dir/jars.verified.tsv" \
    || { rm -rf "${dir:?}/lib" "${dir:?}/m2"; die "Kafka jars do not match Maven Central's published checksums (nothing kept)"; }
  rm -rf "${dir:?}/m2"
  local jar
  for jar in slf4j-api-1.7.36.jar log4j-slf4j-impl-2.25.4.jar log4j-core-2.25.4.jar "kafka_2.13-$KAFKA_VERSION.jar"; do
    [ -f "$dir/lib/$jar" ] || die "$jar missing from $dir/lib (see $RAPPORT_BUILD_DIR/mvn.log)"
  done
  echo "$pomhash" > "$dir/lib/.pom.sha256"
}
