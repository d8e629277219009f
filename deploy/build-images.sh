#!/usr/bin/env bash
# Build Rapport's images with no container-registry access (it also works where pulls work).
#
#   deploy/build-images.sh [--infra-only|--all]      (default: --all)
#
#   rapport/base:bookworm        `docker pull debian:bookworm-slim` if that works, else
#                                debootstrap (minbase) from the host's Debian mirror + docker import
#   rapport/postgres:15          Debian postgresql-15                       (deploy/postgres/)
#   rapport/kafka:4.3.1          Kafka jars from Maven Central + Debian JRE (deploy/kafka/)
#   rapport/python-runtime:bookworm  (--all only) Debian python3 + the locked third-party wheels
#                                built on the host               (deploy/python-runtime.Dockerfile)
#   rapport/<svc>:<version>      + :latest, for intake scheduler outcomes notifier (--all only):
#                                runtime + the service's wheels           (services/<svc>/Dockerfile)
#
# Each image carries the label rapport.inputs.sha256 (hash of everything it is built from,
# including its parent image id); an image whose inputs did not change is not rebuilt.
# Env: RAPPORT_FORCE_REBUILD=1 rebuilds everything except the base; RAPPORT_REBUILD_BASE=1 the base
# too. RAPPORT_NO_PULL=1 skips the pull attempt. RAPPORT_DEBIAN_MIRROR overrides the mirror.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"
export DOCKER_BUILDKIT=0   # the classic builder: no buildx needed, `--network host` for RUN

MODE=all
for arg in "$@"; do
  case "$arg" in
    --infra-only) MODE=infra ;;
    --all) MODE=all ;;
    -h|--help) sed -n '2,/^set -euo/{/^set -euo/!p}' "$0"; exit 0 ;;
    *) die "unknown argument: $arg (use --infra-only or --all)" ;;
  esac
done

BASE_IMAGE=rapport/base:bookworm
PG_IMAGE=rapport/postgres:15
KAFKA_IMAGE=rapport/kafka:$KAFKA_VERSION   # KAFKA_VERSION: _common.sh
RUNTIME_IMAGE=rapport/python-runtime:bookworm
SERVICES=(intake scheduler outcomes notifier)
LABEL=rapport.inputs.sha256
# Bump when the way images are built changes in a way the hashed files do not show.
RECIPE_VERSION=1

mkdir -p "$RAPPORT_BUILD_DIR"
SUMMARY=()
summary() { SUMMARY+=("$(printf '%-28s %-9s %6ss  %s' "$1" "$2" "$3" "${4:-}")"); }

image_id()    { docker image inspect -f '{{.Id}}' "$1" 2>/dev/null || true; }
image_label() { docker image inspect -f "{{ index .Config.Labels \"$2\" }}" "$1" 2>/dev/null || true; }

# hash_files FILE|DIR... : sha256 over the paths and contents (caches and bytecode excluded).
hash_files() {
  local p
  for p in "$@"; do
    if [ -d "$p" ]; then
      find "$p" -type f \
        -not -path '*/__pycache__/*' -not -name '*.pyc' -not -path '*/.pytest_cache/*' \
        -not -path '*/.mypy_cache/*' -not -path '*/.ruff_cache/*' -not -path '*.egg-info/*' \
        -not -path '*/build/*' -not -path '*/dist/*' -print0
    else
      printf '%s\0' "$p"
    fi
  done | LC_ALL=C sort -z | (cd "$RAPPORT_ROOT" && xargs -0 -r sha256sum) | sed "s|$RAPPORT_ROOT/||" | sha256sum | cut -c1-64
}

# up_to_date IMAGE HASH : true when IMAGE exists with that inputs hash (and no forced rebuild).
up_to_date() {
  [ "${RAPPORT_FORCE_REBUILD:-0}" = 1 ] && return 1
  [ "$(image_label "$1" "$LABEL")" = "$2" ]
}

# docker_build IMAGE HASH LOGNAME docker-build-args... : build with the label; log to a file.
docker_build() {
  local image="$1" hash="$2" logname="$3"; shift 3
  local logf="$RAPPORT_BUILD_DIR/build-$logname.log"
  if ! docker build --force-rm --network host --label "$LABEL=$hash" -t "$image" "$@" >"$logf" 2>&1; then
    tail -n 40 "$logf" >&2
    die "docker build of $image failed (full log: $logf)"
  fi
}

# ---------------------------------------------------------------------------------------------
build_base() {
  local t0 hash rootfs mirror sec_mirror
  t0=$(now_s)
  hash=$(printf 'base bookworm minbase %s' "$RECIPE_VERSION" | sha256sum | cut -c1-64)
  if [ "${RAPPORT_REBUILD_BASE:-0}" != 1 ] && [ -n "$(image_id "$BASE_IMAGE")" ]; then
    log "base: $BASE_IMAGE exists (source: $(image_label "$BASE_IMAGE" rapport.base.source)); kept"
    summary "$BASE_IMAGE" up-to-date "$(elapsed "$t0")" "$(image_label "$BASE_IMAGE" rapport.base.source)"
    return
  fi
  if [ "${RAPPORT_NO_PULL:-0}" != 1 ] && timeout 60 docker pull -q debian:bookworm-slim >/dev/null 2>"$RAPPORT_BUILD_DIR/pull.err"; then
    printf 'FROM debian:bookworm-slim\n' | docker build -q --label "$LABEL=$hash" \
      --label rapport.base.source=pulled:debian:bookworm-slim -t "$BASE_IMAGE" - >/dev/null
    log "base: USING PULLED debian:bookworm-slim as $BASE_IMAGE"
    summary "$BASE_IMAGE" pulled "$(elapsed "$t0")" "debian:bookworm-slim from a registry"
    return
  fi
  log "base: docker pull debian:bookworm-slim failed: $(head -c 300 "$RAPPORT_BUILD_DIR/pull.err" 2>/dev/null | tr '\n' ' ')"
  command -v debootstrap >/dev/null 2>&1 || apt_install debootstrap || die "cannot install debootstrap"
  mirror=$(debian_mirror)
  sec_mirror="${RAPPORT_DEBIAN_SECURITY_MIRROR:-${mirror%/debian}/debian-security}"
  log "base: USING DEBOOTSTRAP (minbase bookworm from $mirror) -> docker import $BASE_IMAGE"
  rootfs="$RAPPORT_BUILD_DIR/rootfs"
  as_root rm -rf "$rootfs"
  if ! as_root debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$RAPPORT_BUILD_DIR/debootstrap.log" 2>&1; then
    tail -n 30 "$RAPPORT_BUILD_DIR/debootstrap.log" >&2
    die "debootstrap failed (log: $RAPPORT_BUILD_DIR/debootstrap.log)"
  fi
  # Same apt sources as the official image (deb822), pointing at the host's mirror.
  as_root rm -f "$rootfs/etc/apt/sources.list"
  as_root tee "$rootfs/etc/apt/sources.list.d/debian.sources" >/dev/null <<EOF
Types: deb
URIs: $mirror
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $sec_mirror
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  # Like the official image: no apt caches in layers.
  as_root tee "$rootfs/etc/apt/apt.conf.d/docker-clean" >/dev/null <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache ""; Dir::Cache::srcpkgcache "";
EOF
  as_root sh -c "rm -rf '$rootfs'/var/lib/apt/lists/* '$rootfs'/var/cache/apt/archives/*.deb '$rootfs'/var/log/*.log; : > '$rootfs/etc/resolv.conf'; : > '$rootfs/etc/hostname'"
  as_root tar --numeric-owner -C "$rootfs" -c . | docker import \
    -c 'ENV LANG=C.UTF-8' -c 'CMD ["bash"]' \
    -c "LABEL $LABEL=$hash rapport.base.source=debootstrap:minbase:bookworm" \
    - "$BASE_IMAGE" >/dev/null
  as_root rm -rf "$rootfs"
  summary "$BASE_IMAGE" debootstrap "$(elapsed "$t0")" "debootstrap --variant=minbase bookworm $mirror"
}

# ---------------------------------------------------------------------------------------------
build_postgres() {
  local t0 hash
  t0=$(now_s)
  hash=$( { echo "$RECIPE_VERSION $(image_id "$BASE_IMAGE")"; hash_files "$RAPPORT_DEPLOY/postgres"; } | sha256sum | cut -c1-64)
  if up_to_date "$PG_IMAGE" "$hash"; then
    summary "$PG_IMAGE" up-to-date "$(elapsed "$t0")"; return
  fi
  log "postgres: building $PG_IMAGE"
  docker_build "$PG_IMAGE" "$hash" postgres --build-arg "BASE_IMAGE=$BASE_IMAGE" "$RAPPORT_DEPLOY/postgres"
  summary "$PG_IMAGE" built "$(elapsed "$t0")"
}

# ---------------------------------------------------------------------------------------------
build_kafka() {
  local t0 hash ctx
  t0=$(now_s)
  ctx="$RAPPORT_BUILD_DIR/kafka"
  # The jars are fixed by pom.xml (Maven Central releases are immutable), so hash pom.xml.
  hash=$( { echo "$RECIPE_VERSION $(image_id "$BASE_IMAGE")"; hash_files "$RAPPORT_DEPLOY/kafka"; } | sha256sum | cut -c1-64)
  if up_to_date "$KAFKA_IMAGE" "$hash"; then
    summary "$KAFKA_IMAGE" up-to-date "$(elapsed "$t0")"; return
  fi
  mkdir -p "$ctx"
  fetch_kafka_jars "$ctx"
  cp "$RAPPORT_DEPLOY/kafka/"{Dockerfile,kafka-run.sh,healthcheck.sh,log4j2.yaml} "$ctx/"
  local jars=("$ctx"/lib/*.jar)
  log "kafka: building $KAFKA_IMAGE (${#jars[@]} jars)"
  docker_build "$KAFKA_IMAGE" "$hash" kafka --build-arg "BASE_IMAGE=$BASE_IMAGE" "$ctx"
  summary "$KAFKA_IMAGE" built "$(elapsed "$t0")"
}

# ---------------------------------------------------------------------------------------------
service_version() {
  python3 -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' \
    "$RAPPORT_ROOT/services/$1/pyproject.toml"
}

# make_wheelhouse : deploy/.build/python/{requirements.txt,deps/,app/} from uv.lock and the sources.
make_wheelhouse() {
  local ctx="$RAPPORT_BUILD_DIR/python" t0 svc pip=(python3 -m pip)
  t0=$(now_s)
  command -v uv >/dev/null 2>&1 || "${pip[@]}" install -q uv
  rm -rf "$ctx/app" "$ctx/req"; mkdir -p "$ctx/deps" "$ctx/app" "$ctx/req"
  for svc in "${SERVICES[@]}"; do
    (cd "$RAPPORT_ROOT" && uv export --package "rapport-$svc" --frozen --no-dev --no-emit-workspace \
        --no-hashes --no-header -q -o "$ctx/req/$svc.txt" >/dev/null)
  done
  # One union of pins (one lock, so no conflicts): the deps layer is shared by all four images.
  grep -hE '^[A-Za-z0-9]' "$ctx/req/"*.txt | LC_ALL=C sort -u > "$ctx/requirements.txt"
  log "python: pip wheel ($(wc -l < "$ctx/requirements.txt") pinned dependencies + 5 workspace packages)"
  # Wheels for the container's python (Debian bookworm: 3.11, glibc 2.36), built on the host (3.11).
  local reqhash
  reqhash=$(sha256sum "$ctx/requirements.txt" | cut -c1-64)
  if [ "$(cat "$ctx/deps/.requirements.sha256" 2>/dev/null)" != "$reqhash" ]; then
    "${pip[@]}" wheel -q --no-input -r "$ctx/requirements.txt" -w "$ctx/deps" >"$RAPPORT_BUILD_DIR/pip-deps.log" 2>&1 \
      || { tail -n 30 "$RAPPORT_BUILD_DIR/pip-deps.log" >&2; die "pip wheel (dependencies) failed"; }
    echo "$reqhash" > "$ctx/deps/.requirements.sha256"
  fi
  # The workspace's own wheels: `uv build` (1-2 s; it caches the build backend), else pip wheel.
  if ! (cd "$RAPPORT_ROOT" && uv build -q --all-packages --wheel -o "$ctx/app") >"$RAPPORT_BUILD_DIR/pip-app.log" 2>&1; then
    rm -rf "$ctx/app"; mkdir -p "$ctx/app"
    "${pip[@]}" wheel -q --no-input --no-deps "$RAPPORT_ROOT/shared" "${SERVICES[@]/#/$RAPPORT_ROOT/services/}" \
      -w "$ctx/app" >>"$RAPPORT_BUILD_DIR/pip-app.log" 2>&1 \
      || { tail -n 30 "$RAPPORT_BUILD_DIR/pip-app.log" >&2; die "building the workspace wheels failed"; }
  fi
  rm -f "$ctx/app/.gitignore"
  # Keep only the wheels that requirements.txt names (deps/ accumulates across lock changes).
  python3 - "$ctx" <<'PY'
import pathlib, re, sys
ctx = pathlib.Path(sys.argv[1])
norm = lambda n: re.sub(r"[-_.]+", "_", n).lower()
pins = [l.split(";")[0].strip() for l in (ctx / "requirements.txt").read_text().splitlines()]
wanted = {norm(p.split("==")[0]) + "-" + p.split("==")[1].strip() for p in pins if "==" in p}
for whl in (ctx / "deps").glob("*.whl"):
    name, version = whl.name.split("-")[:2]
    if f"{norm(name)}-{version}" not in wanted:
        whl.unlink()
PY
  summary "(wheelhouse)" built "$(elapsed "$t0")" "$(ls "$ctx/deps" | wc -l) dependency wheels"
}

build_services() {
  local svc version image hash t0 ctx="$RAPPORT_BUILD_DIR/python" wheelhouse_done=0
  # The runtime (python + third-party wheels) changes only with the lock: shared by all four.
  t0=$(now_s)
  hash=$( {
    echo "$RECIPE_VERSION $(image_id "$BASE_IMAGE") runtime"
    hash_files "$RAPPORT_DEPLOY/python-runtime.Dockerfile" "$RAPPORT_ROOT/uv.lock" "$RAPPORT_ROOT/pyproject.toml"
  } | sha256sum | cut -c1-64)
  if up_to_date "$RUNTIME_IMAGE" "$hash"; then
    summary "$RUNTIME_IMAGE" up-to-date "$(elapsed "$t0")"
  else
    make_wheelhouse; wheelhouse_done=1; t0=$(now_s)
    log "python: building $RUNTIME_IMAGE"
    docker_build "$RUNTIME_IMAGE" "$hash" runtime -f "$RAPPORT_DEPLOY/python-runtime.Dockerfile" \
      --build-arg "BASE_IMAGE=$BASE_IMAGE" "$ctx"
    summary "$RUNTIME_IMAGE" built "$(elapsed "$t0")"
  fi
  for svc in "${SERVICES[@]}"; do
    t0=$(now_s)
    version=$(service_version "$svc")
    image="rapport/$svc:$version"
    hash=$( {
      echo "$RECIPE_VERSION $(image_id "$RUNTIME_IMAGE") $svc $version"
      hash_files "$RAPPORT_ROOT/uv.lock" "$RAPPORT_ROOT/pyproject.toml" "$RAPPORT_ROOT/shared" "$RAPPORT_ROOT/services/$svc"
    } | sha256sum | cut -c1-64)
    if up_to_date "$image" "$hash"; then
      docker tag "$image" "rapport/$svc:latest"
      summary "$image" up-to-date "$(elapsed "$t0")"; continue
    fi
    if [ "$wheelhouse_done" = 0 ]; then make_wheelhouse; wheelhouse_done=1; t0=$(now_s); fi
    log "python: building $image"
    docker_build "$image" "$hash" "$svc" -f "$RAPPORT_ROOT/services/$svc/Dockerfile" \
      --build-arg "RUNTIME_IMAGE=$RUNTIME_IMAGE" "$ctx"
    docker tag "$image" "rapport/$svc:latest"
    summary "$image" built "$(elapsed "$t0")" "also rapport/$svc:latest"
  done
}

# ---------------------------------------------------------------------------------------------
T0=$(now_s)
docker info >/dev/null 2>&1 || die "no docker engine answers; run deploy/engine.sh first"
build_base
build_postgres
build_kafka
if [ "$MODE" = all ]; then build_services; fi
# Old versions of our images, untagged by the rebuilds above.
docker image prune -f --filter "label=$LABEL" >/dev/null 2>&1 || true
log "build-images ($MODE) done in $(elapsed "$T0")s"
printf '%s\n' "${SUMMARY[@]}" >&2
