# rapport/python-runtime:bookworm — what the four service images share: Debian python3, a venv,
# the user `rapport` (uid/gid 999, pinned so Kubernetes' runAsUser can name it) and every
# third-party wheel the services' locked dependencies need. Each service's own Dockerfile
# (services/<svc>/Dockerfile) adds its two wheels on top, so this layer is stored once.
# Build context: deploy/.build/python (made by deploy/build-images.sh on the host, which reaches
# PyPI; the build itself needs no index):
#   requirements.txt  third-party pins (uv export of the four services, union)   deps/  their wheels
#   docker build --network host -f deploy/python-runtime.Dockerfile -t rapport/python-runtime:bookworm deploy/.build/python
ARG BASE_IMAGE=rapport/base:bookworm
FROM ${BASE_IMAGE}
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 python3-venv \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -m venv /opt/venv \
 && groupadd --system --gid 999 rapport \
 && useradd --system --uid 999 --gid 999 --home-dir /nonexistent --shell /usr/sbin/nologin rapport
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY requirements.txt /tmp/wheels/requirements.txt
COPY deps/ /tmp/wheels/deps/
RUN pip install --no-cache-dir --no-index --find-links /tmp/wheels/deps -r /tmp/wheels/requirements.txt \
 && rm -rf /tmp/wheels
USER rapport
