# syntax=docker/dockerfile:1
# The modelway gateway: `docker build -t modelway .`, then
#   docker run -p 4000:4000 -e MODELWAY_MASTER_KEY=... -e ZHIPUAI_API_KEY=... modelway
# serves every provider whose key is in the environment (deploy/docker/modelway.yaml); mount your own config over
# /etc/modelway/modelway.yaml (see modelway.example.yaml). docker-compose.yaml runs a fleet, deploy/helm a chart.
# The base is pinned to a Debian release (bookworm) so that the apt pin below stays valid.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# -- build: the modelway wheel, and wheels of every dependency of modelway[server,postgres] -------------------------
FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY src ./src
# pip builds the wheel with the backend pyproject.toml names (hatchling) in an isolated environment
RUN pip wheel --no-cache-dir --wheel-dir /wheels ".[server,postgres]"

# -- runtime ------------------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="modelway" \
      org.opencontainers.image.description="One API and one OpenAI-compatible gateway for every LLM provider" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.base.name="docker.io/library/python:3.11-slim-bookworm"

# tini is PID 1: it passes SIGTERM to modelway (which drains, then exits 0) and reaps any orphaned process
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini=0.19.0-1+b3 \
    && rm -rf /var/lib/apt/lists/*

# only the wheels built above, no index: the image gets exactly what the build stage resolved
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels "modelway[server,postgres]==${VERSION}"

# a user of its own; /var/lib/modelway holds the usage journal and spill file (a volume in compose, an emptyDir
# in Kubernetes), /etc/modelway the config
RUN groupadd --system --gid 10001 modelway \
    && useradd --system --uid 10001 --gid modelway --home-dir /var/lib/modelway --shell /usr/sbin/nologin modelway \
    && install -d -o modelway -g modelway -m 0750 /var/lib/modelway \
    && install -d -m 0755 /etc/modelway
COPY deploy/docker/modelway.yaml /etc/modelway/modelway.yaml

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MODELWAY_CONFIG=/etc/modelway/modelway.yaml
USER 10001:10001
WORKDIR /var/lib/modelway
EXPOSE 4000

# readiness, not liveness: 503 while starting or draining; the image has no curl, Python has urllib
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:4000/health/readiness', timeout=2)"]

STOPSIGNAL SIGTERM
ENTRYPOINT ["tini", "--", "modelway"]
# the config's server.host is for a machine; in a container the gateway listens on every interface
CMD ["serve", "--host", "0.0.0.0"]
