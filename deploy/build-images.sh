#!/usr/bin/env bash
# Build Rapport's images with no container-registry access (it also works where pulls work).
#
#   deploy/build-images.sh [--infra-only|--all]      (default: --all)
#
#   rapport/base:bookworm        `docker pull debian:bookworm-slim` if that works, else
#                                debootstrap (minbase) from the host's Debian mirror + docker import
#   rapport/postgres:15          Debian postgresql-15                       (deploy/postgres/)
#   rapport/kafka:4.3.1          Kafka jars from Maven Central + Debian JRE (deploy/kafka/)
#   rapport/prometheus:2.42      Debian prometheus (+ promtool) with Rapport's scrape config and alert
#                                rules, both checked by promtool during the build (deploy/prometheus/)
#   rapport/python-runtime:bookworm  (--all only) Debian python3 + the locked third-party wheels,
#                                installed with uv.lock's hashes, + every service's registration
#                                (services.json)                  (deploy/python-runtime.Dockerfile)
#   rapport/<svc>:<version>      + :latest, for intake scheduler outcomes notifier console (--all only):
#                                runtime + the service's wheels: rapport-contracts, rapport-shared, rapport-tools (its
#                                rapport-<svc> command), rapport-<svc>; never rapport-testing
#                                                                         (services/<svc>/Dockerfile)
#
# Supply chain: the Python wheels are the ones uv.lock pins, downloaded and installed with its
# sha256 hashes (`uv export --frozen`, `pip download/install --require-hashes`; uv itself pinned:
# UV_VERSION in _common.sh); the Kafka jars are checked against Maven Central's published
# .sha1/.sha512 (deploy/kafka/verify_jars.py); every image gets a CycloneDX 1.5 SBOM of its Debian
# packages (exact versions, from its dpkg database), jars and wheels: deploy/.build/sbom/<name>.cdx.json
# (+ <name>.dpkg.tsv, index.tsv: image, image id, SBOM sha256), made by deploy/sbom.py.
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
PROMETHEUS_IMAGE=rapport/prometheus:2.42    # Debian bookworm's prometheus 2.42
RUNTIME_IMAGE=rapport/python-runtime:bookworm
SERVICES=(intake scheduler outcomes notifier console)
LABEL=rapport.inputs.sha256
# Bump when the way images are built changes in a way the hashed files do not show.
RECIPE_VERSION=1

SBOM_DIR="$RAPPORT_BUILD_DIR/sbom"
mkdir -p "$RAPPORT_BUILD_DIR" "$SBOM_DIR"
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

# image_sbom IMAGE NAME : deploy/.build/sbom/NAME.cdx.json (CycloneDX 1.5) and NAME.dpkg.tsv for
# IMAGE, from the image itself: its dpkg database (dpkg-query), /etc/debian_version and what the
# Dockerfiles recorded in /usr/share/rapport/ (jar and wheel hashes, the uv.lock excerpt, apt
# Release files). Done again only when the image id or deploy/sbom.py changed.
# shellcheck disable=SC2016 # expanded inside the container
SBOM_EXTRACT='set -e; d=$(mktemp -d)
dpkg-query -W -f="\${Package}\t\${Version}\t\${Architecture}\t\${source:Package}\t\${source:Version}\t\${db:Status-Abbrev}\n" > "$d/dpkg.tsv"
cp /etc/debian_version "$d/"
if [ -d /usr/share/rapport ]; then cp -r /usr/share/rapport "$d/rapport"; fi
tar -C "$d" -cf - .'
SBOM_CHANGED=0
image_sbom() {
  local image="$1" name="$2" id key out dir
  id=$(image_id "$image")
  out="$SBOM_DIR/$name.cdx.json"
  key="$id $(sha256sum "$RAPPORT_DEPLOY/sbom.py" | cut -c1-64)"
  if [ -f "$out" ] && [ "$(cat "$SBOM_DIR/.$name.key" 2>/dev/null)" = "$key" ]; then return 0; fi
  dir=$(mktemp -d)
  docker run --rm --network none --user 0 --entrypoint /bin/sh "$image" -c "$SBOM_EXTRACT" | tar -x -C "$dir" \
    || { rm -rf "$dir"; die "sbom: cannot read the package records of $image"; }
  python3 "$RAPPORT_DEPLOY/sbom.py" generate --image "$image" --image-id "$id" --root "$dir" \
      --out "$out" --dpkg-out "$SBOM_DIR/$name.dpkg.tsv" \
      --created "$(docker image inspect -f '{{.Created}}' "$image")" \
      --property "rapport:inputs.sha256=$(image_label "$image" "$LABEL")" \
      --property "rapport:base.source=$(image_label "$image" rapport.base.source)" \
    || { rm -rf "$dir"; die "sbom: generating the SBOM of $image failed"; }
  rm -rf "$dir"
  echo "$key" > "$SBOM_DIR/.$name.key"
  SBOM_CHANGED=1
}

# sbom_index : deploy/.build/sbom/index.tsv (image, image id, SBOM, its sha256) and, when the
# project's virtualenv has cyclonedx-python-lib (`uv sync`), a check of every SBOM against the
# CycloneDX 1.5 JSON schema (when one was written by this run); an invalid one fails the build.
sbom_index() {
  local f name image py="$RAPPORT_ROOT/.venv/bin/python"
  [ "$SBOM_CHANGED" = 0 ] && [ -f "$SBOM_DIR/index.tsv" ] && return 0
  {
    printf 'image\timage_id\tsbom\tsbom_sha256\tdebian_packages\n'
    for f in "$SBOM_DIR"/*.cdx.json; do
      [ -f "$f" ] || continue
      name=$(basename "$f" .cdx.json)
      image=$(python3 -c 'import json,sys; c=json.load(open(sys.argv[1]))["metadata"]["component"]; print(c["name"]+":"+c["version"])' "$f")
      printf '%s\t%s\t%s\t%s\t%s\n' "$image" "$(image_id "$image")" "sbom/$name.cdx.json" \
        "$(sha256sum "$f" | cut -c1-64)" "$(($(wc -l < "$SBOM_DIR/$name.dpkg.tsv") - 1))"
    done
  } > "$SBOM_DIR/index.tsv"
  if [ -x "$py" ] && "$py" -c 'import cyclonedx.validation.json' >/dev/null 2>&1; then
    "$py" "$RAPPORT_DEPLOY/sbom.py" validate "$SBOM_DIR"/*.cdx.json || die "an SBOM is not valid CycloneDX 1.5"
    log "sbom: $(ls "$SBOM_DIR"/*.cdx.json | wc -l) SBOMs valid CycloneDX 1.5 (cyclonedx-python-lib, strict) -> $SBOM_DIR"
  else
    log "sbom: SBOMs in $SBOM_DIR (not validated: no .venv with cyclonedx-python-lib; run uv sync)"
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
  fetch_kafka_jars "$ctx"   # verified against Maven Central's checksums -> $ctx/jars.verified.tsv
  cp "$RAPPORT_DEPLOY/kafka/"{Dockerfile,kafka-run.sh,healthcheck.sh,log4j2.yaml} "$ctx/"
  local jars=("$ctx"/lib/*.jar)
  log "kafka: building $KAFKA_IMAGE (${#jars[@]} jars)"
  docker_build "$KAFKA_IMAGE" "$hash" kafka --build-arg "BASE_IMAGE=$BASE_IMAGE" "$ctx"
  summary "$KAFKA_IMAGE" built "$(elapsed "$t0")"
}

# ---------------------------------------------------------------------------------------------
# Infrastructure too (20 s once, then up to date): the compose stack runs it and the e2e test
# tests/e2e/test_prometheus.py and tests/unit/deploy/test_prometheus_files.py (promtool) use it.
build_prometheus() {
  local t0 hash
  t0=$(now_s)
  hash=$( { echo "$RECIPE_VERSION $(image_id "$BASE_IMAGE")"; hash_files "$RAPPORT_DEPLOY/prometheus"; } | sha256sum | cut -c1-64)
  if up_to_date "$PROMETHEUS_IMAGE" "$hash"; then
    summary "$PROMETHEUS_IMAGE" up-to-date "$(elapsed "$t0")"; return
  fi
  log "prometheus: building $PROMETHEUS_IMAGE"
  docker_build "$PROMETHEUS_IMAGE" "$hash" prometheus --build-arg "BASE_IMAGE=$BASE_IMAGE" "$RAPPORT_DEPLOY/prometheus"
  summary "$PROMETHEUS_IMAGE" built "$(elapsed "$t0")"
}

# ---------------------------------------------------------------------------------------------
service_version() {
  python3 -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' \
    "$RAPPORT_ROOT/services/$1/pyproject.toml"
}

# make_wheelhouse : deploy/.build/python/{requirements.txt,deps/,app/} from uv.lock and the sources.
#   requirements.txt  every third-party pin of the four services WITH uv.lock's sha256 hashes
#   deps/             those wheels: `pip download --require-hashes --only-binary=:all: --no-deps`
#                     (a file whose hash is not in the lock is refused; nothing is built from an sdist)
#   app/              the workspace wheels (`uv build`; not rapport-testing: test support never goes
#                     into an image) and app/<svc>.requirements.txt: the four wheels of <svc>
#                     (rapport-contracts, rapport-shared, rapport-tools, rapport-<svc>) with their sha256, for
#                     `pip install --require-hashes`
make_wheelhouse() {
  local ctx="$RAPPORT_BUILD_DIR/python" t0 svc reqhash arch i plats=()
  t0=$(now_s)
  ensure_uv || die "cannot install uv==$UV_VERSION"
  rm -rf "$ctx/app" "$ctx/req"; mkdir -p "$ctx/deps" "$ctx/app"
  # The root project (package = false) depends on the runtime, the tools and the services, so its
  # export without the dev group (where rapport-testing is) is exactly the union of the services'
  # `uv export --package` pins.
  (cd "$RAPPORT_ROOT" && uv export --frozen --no-dev --no-emit-workspace --format requirements-txt \
      --no-header -q -o "$ctx/requirements.txt" >/dev/null) || die "uv export --frozen failed"
  grep -q -- '--hash=sha256:' "$ctx/requirements.txt" || die "uv export wrote no hashes"
  log "python: pip download --require-hashes ($(grep -cE '^[A-Za-z0-9]' "$ctx/requirements.txt") pins from uv.lock) + $((${#SERVICES[@]} + 4)) workspace packages"
  # Wheels for the container's python (Debian bookworm: CPython 3.11, glibc 2.36), whatever the
  # host runs: manylinux_2_36 down to manylinux2014, pure-Python wheels; never an sdist.
  arch=$(uname -m)
  for i in $(seq 36 -1 17); do plats+=(--platform "manylinux_2_${i}_$arch"); done
  plats+=(--platform "manylinux2014_$arch")
  reqhash=$( { echo "download v2 $arch"; cat "$ctx/requirements.txt"; } | sha256sum | cut -c1-64)
  if [ "$(cat "$ctx/deps/.requirements.sha256" 2>/dev/null)" != "$reqhash" ]; then
    rm -rf "$ctx/deps.new"
    python3 -m pip download -q --no-input --no-deps --require-hashes --only-binary=:all: \
        --implementation cp --python-version 3.11 --abi cp311 "${plats[@]}" \
        -r "$ctx/requirements.txt" -d "$ctx/deps.new" >"$RAPPORT_BUILD_DIR/pip-deps.log" 2>&1 \
      || { tail -n 30 "$RAPPORT_BUILD_DIR/pip-deps.log" >&2; die "pip download --require-hashes (dependencies) failed"; }
    rm -rf "$ctx/deps"; mv "$ctx/deps.new" "$ctx/deps"
    echo "$reqhash" > "$ctx/deps/.requirements.sha256"
  fi
  # The workspace's own wheels: `uv build` (1-2 s; it caches the build backend), else pip wheel.
  if ! (cd "$RAPPORT_ROOT" && uv build -q --all-packages --wheel -o "$ctx/app") >"$RAPPORT_BUILD_DIR/pip-app.log" 2>&1; then
    rm -rf "$ctx/app"; mkdir -p "$ctx/app"
    python3 -m pip wheel -q --no-input --no-deps "$RAPPORT_ROOT/shared/rapport_contracts" "$RAPPORT_ROOT/shared/rapport_shared" "$RAPPORT_ROOT/shared/rapport_tools" \
      "${SERVICES[@]/#/$RAPPORT_ROOT/services/}" \
      -w "$ctx/app" >>"$RAPPORT_BUILD_DIR/pip-app.log" 2>&1 \
      || { tail -n 30 "$RAPPORT_BUILD_DIR/pip-app.log" >&2; die "building the workspace wheels failed"; }
  fi
  rm -f "$ctx/app/.gitignore" "$ctx/app"/rapport_testing-*.whl   # test support: never in an image
  local whl name
  for svc in "${SERVICES[@]}"; do
    : > "$ctx/app/$svc.requirements.txt"
    for name in rapport_contracts rapport_shared rapport_tools "rapport_$svc"; do
      whl=$(cd "$ctx/app" && ls "$name"-*.whl)
      [ "$(printf '%s\n' "$whl" | wc -l)" = 1 ] || die "expected one $name wheel in $ctx/app, found: $whl"
      printf '%s @ file:///tmp/wheels/%s --hash=sha256:%s\n' "${name//_/-}" "$whl" \
        "$(sha256sum "$ctx/app/$whl" | cut -c1-64)" >> "$ctx/app/$svc.requirements.txt"
    done
  done
  summary "(wheelhouse)" built "$(elapsed "$t0")" "$(ls "$ctx/deps" | wc -l) dependency wheels, hashes from uv.lock"
}

# services_manifest : deploy/.build/python/services.json, every service's registration (name, order,
# Kafka access) as data. An image holds one service, but `rapport-admin provision` and the ACLs act
# on the whole deployment from it: the runtime image carries this list (rapport_tools/services.py).
services_manifest() {
  local ctx="$RAPPORT_BUILD_DIR/python"
  mkdir -p "$ctx"
  ensure_uv || die "cannot install uv==$UV_VERSION"
  (cd "$RAPPORT_ROOT" && uv run --frozen -q python -m rapport_tools.services --json) > "$ctx/services.json.new" \
    || die "listing the services (uv run python -m rapport_tools.services --json) failed"
  mv "$ctx/services.json.new" "$ctx/services.json"
}

build_services() {
  local svc version image hash t0 ctx="$RAPPORT_BUILD_DIR/python" wheelhouse_done=0
  # The runtime (python + third-party wheels + the services' registrations) changes only with the
  # lock and the registrations: shared by every service image.
  t0=$(now_s)
  services_manifest
  hash=$( {
    echo "$RECIPE_VERSION $(image_id "$BASE_IMAGE") runtime"
    hash_files "$RAPPORT_DEPLOY/python-runtime.Dockerfile" "$RAPPORT_ROOT/uv.lock" "$RAPPORT_ROOT/pyproject.toml" \
      "$ctx/services.json"
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
      hash_files "$RAPPORT_ROOT/uv.lock" "$RAPPORT_ROOT/pyproject.toml" "$RAPPORT_ROOT/shared/rapport_contracts" "$RAPPORT_ROOT/shared/rapport_shared" \
        "$RAPPORT_ROOT/shared/rapport_tools" "$RAPPORT_ROOT/services/$svc"
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
build_prometheus
if [ "$MODE" = all ]; then build_services; fi
t=$(now_s)
image_sbom "$BASE_IMAGE" base
image_sbom "$PG_IMAGE" postgres
image_sbom "$KAFKA_IMAGE" kafka
image_sbom "$PROMETHEUS_IMAGE" prometheus
if [ "$MODE" = all ]; then
  image_sbom "$RUNTIME_IMAGE" python-runtime
  for svc in "${SERVICES[@]}"; do image_sbom "rapport/$svc:$(service_version "$svc")" "$svc"; done
fi
sbom_index
summary "(sbom)" done "$(elapsed "$t")" "CycloneDX 1.5 per image -> $SBOM_DIR"
# Old versions of our images, untagged by the rebuilds above.
docker image prune -f --filter "label=$LABEL" >/dev/null 2>&1 || true
log "build-images ($MODE) done in $(elapsed "$T0")s"
printf '%s\n' "${SUMMARY[@]}" >&2
