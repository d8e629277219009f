# rapport/<svc>:<version> — one Rapport service (intake, scheduler, outcomes, notifier).
# Build context: deploy/.build/python (made by deploy/build-images.sh on the host, which reaches
# PyPI; the build itself needs no index):
#   requirements.txt  third-party pins (uv export of the four services, union)
#   deps/             their wheels            app/  rapport-shared + the four service wheels
#   docker build --network host -f deploy/service.Dockerfile --build-arg SERVICE=intake deploy/.build/python
ARG BASE_IMAGE=rapport/base:bookworm
FROM ${BASE_IMAGE}
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 python3-venv \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -m venv /opt/venv \
 && groupadd --system --gid 999 rapport \
 && useradd --system --uid 999 --gid 999 --home-dir /nonexistent --shell /usr/sbin/nologin rapport
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# Third-party dependencies first: this layer is shared by the four service images.
COPY requirements.txt /tmp/wheels/requirements.txt
COPY deps/ /tmp/wheels/deps/
RUN pip install --no-cache-dir --no-index --find-links /tmp/wheels/deps -r /tmp/wheels/requirements.txt \
 && rm -rf /tmp/wheels
ARG SERVICE
COPY app/ /tmp/wheels/app/
RUN test -n "$SERVICE" \
 && pip install --no-cache-dir --no-index --no-deps /tmp/wheels/app/rapport_shared-*.whl /tmp/wheels/app/rapport_${SERVICE}-*.whl \
 && rm -rf /tmp/wheels \
 && ln -s "/opt/venv/bin/rapport-${SERVICE}" /usr/local/bin/rapport-service \
 && test -x "/opt/venv/bin/rapport-${SERVICE}"
ENV RAPPORT_SERVICE_NAME=${SERVICE}
USER rapport
# `rapport-<svc> migrate` applies the service's SQL migrations; `rapport-<svc> run` serves.
ENTRYPOINT ["/usr/local/bin/rapport-service"]
CMD ["run"]
