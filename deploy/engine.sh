#!/usr/bin/env bash
# Make sure a Docker engine answers `docker info`. Idempotent.
#  - installs docker.io, docker-compose and debootstrap from Debian if missing,
#  - starts dockerd in the background (log: $RAPPORT_DOCKERD_LOG, default /var/log/rapport-dockerd.log),
#  - waits up to $RAPPORT_ENGINE_WAIT seconds (default 60) for `docker info`.
# Exits non-zero, printing the engine's own error text, if it cannot start.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_common.sh"

DOCKERD_LOG="${RAPPORT_DOCKERD_LOG:-/var/log/rapport-dockerd.log}"
WAIT="${RAPPORT_ENGINE_WAIT:-60}"
t0=$(now_s)

# Tools the build needs, engine or not.
pkgs=()
command -v docker >/dev/null 2>&1 || pkgs+=(docker.io)
command -v dockerd >/dev/null 2>&1 || pkgs+=(docker.io)
command -v docker-compose >/dev/null 2>&1 || pkgs+=(docker-compose)
command -v debootstrap >/dev/null 2>&1 || pkgs+=(debootstrap)
if [ ${#pkgs[@]} -gt 0 ]; then
  # shellcheck disable=SC2207
  pkgs=($(printf '%s\n' "${pkgs[@]}" | sort -u))
  apt_install "${pkgs[@]}" || die "apt-get install ${pkgs[*]} failed"
fi

if docker info >/dev/null 2>&1; then
  log "engine: docker is already running ($(docker version --format '{{.Server.Version}}' 2>/dev/null)) [$(elapsed "$t0")s]"
  exit 0
fi

if ! pgrep -x dockerd >/dev/null 2>&1; then
  log "engine: starting dockerd (log: $DOCKERD_LOG)"
  mkdir -p "$(dirname "$DOCKERD_LOG")"
  # setsid + nohup: the daemon must outlive this script and its session.
  as_root setsid nohup dockerd >>"$DOCKERD_LOG" 2>&1 </dev/null &
  disown || true
else
  log "engine: dockerd process exists but does not answer yet; waiting"
fi

deadline=$(( $(date +%s) + WAIT ))
while [ "$(date +%s)" -lt "$deadline" ]; do
  if docker info >/dev/null 2>&1; then
    log "engine: docker $(docker version --format '{{.Server.Version}}' 2>/dev/null) ready after $(elapsed "$t0")s"
    exit 0
  fi
  if ! pgrep -x dockerd >/dev/null 2>&1; then
    break   # the daemon died: no point in waiting
  fi
  sleep 1
done

{
  echo "engine: docker did not answer within ${WAIT}s."
  echo "---- docker info (errors) ----"
  docker info 2>&1 >/dev/null | tail -n 5 || true
  echo "---- last lines of $DOCKERD_LOG ----"
  tail -n 25 "$DOCKERD_LOG" 2>/dev/null || true
} >&2
exit 1
