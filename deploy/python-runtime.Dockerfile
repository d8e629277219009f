# rapport/python-runtime:bookworm — what the four service images share: Debian python3, a venv,
# the user `rapport` (uid/gid 999, pinned so Kubernetes' runAsUser can name it) and every
# third-party wheel the services' locked dependencies need. Each service's own Dockerfile
# (services/<svc>/Dockerfile) adds its four wheels on top (rapport-contracts, rapport-shared, rapport-tools, the
# service), so this layer is stored once.
# Build context: deploy/.build/python (made by deploy/build-images.sh on the host, which reaches
# PyPI; the build itself needs no index):
#   requirements.txt  `uv export --frozen --no-dev --no-emit-workspace` of uv.lock: every pin WITH
#                     the lock's sha256 hashes
#   deps/             those wheels, downloaded with `pip download --require-hashes --only-binary`
#   services.json     every service's registration (`python -m rapport_tools.services --json`)
#   docker build --network host -f deploy/python-runtime.Dockerfile -t rapport/python-runtime:bookworm deploy/.build/python
# Supply chain: pip installs with --require-hashes (a wheel whose sha256 is not in uv.lock is
# refused), --no-deps (nothing the lock does not name), --no-index (nothing but deps/).
# /usr/share/rapport/ keeps the lock excerpt, the sha256 of each installed wheel and the apt
# Release files the Debian packages came from; deploy/build-images.sh reads them (and the dpkg
# database) into the image's CycloneDX SBOM.
ARG BASE_IMAGE=rapport/base:bookworm
FROM ${BASE_IMAGE}
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 python3-venv \
 && mkdir -p /usr/share/rapport \
 && grep -H -E '^(Origin|Label|Suite|Codename|Version|Date):' /var/lib/apt/lists/*Release > /usr/share/rapport/apt-release.txt \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -m venv /opt/venv \
 && groupadd --system --gid 999 rapport \
 && useradd --system --uid 999 --gid 999 --home-dir /nonexistent --shell /usr/sbin/nologin rapport
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY requirements.txt /tmp/wheels/requirements.txt
COPY deps/ /tmp/wheels/deps/
RUN pip install --no-cache-dir --no-index --find-links /tmp/wheels/deps --require-hashes --no-deps \
      -r /tmp/wheels/requirements.txt \
 && pip check \
 && cp /tmp/wheels/requirements.txt /usr/share/rapport/requirements.locked.txt \
 && (cd /tmp/wheels/deps && sha256sum *.whl) > /usr/share/rapport/wheels-runtime.sha256 \
 && rm -rf /tmp/wheels
# Every service's registration (name, order, Kafka access; `python -m rapport_tools.services --json`):
# the tools acting on the whole deployment from one service's image read it (rapport_tools/services.py).
COPY services.json /usr/share/rapport/services.json
USER rapport
