# syntax=docker/dockerfile:1
# mirror: MirrorMaker 2.0-compatible Kafka replication.
#
#   docker build -t mirror .
#   docker run --rm -p 8080:8080 -v "$PWD/mm2.properties:/etc/mirror/mm2.properties:ro" mirror
#   docker run --rm mirror validate --config /etc/mirror/mm2.properties --offline
#
# Linted in CI by tests/unit/test_deploy.py (hadolint from the dev dependencies, plus our own checks).
ARG PYTHON_IMAGE=python:3.11-slim

# --- build: a virtualenv with the locked dependencies, then mirror itself ------------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    VIRTUAL_ENV=/opt/mirror \
    PATH=/opt/mirror/bin:$PATH
RUN python -m venv /opt/mirror
WORKDIR /src

# The dependencies get their own layer, rebuilt only when pyproject.toml or constraints.txt change:
# the runtime requirements of pyproject.toml, at the versions locked in constraints.txt.
COPY pyproject.toml constraints.txt ./
RUN python -c "import tomllib; print(*tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies'], sep='\n')" > requirements.txt \
    && pip install -c constraints.txt -r requirements.txt

# The source changes often; installing it without dependencies keeps the layer above cached.
COPY README.md ./
COPY mirror ./mirror
RUN pip install --no-deps -c constraints.txt . \
    && mirror --version

# --- runtime: the virtualenv only, as a non-root user ---------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="mirror" \
      org.opencontainers.image.description="MirrorMaker 2.0-compatible Kafka replication on asyncio" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 mirror \
    && useradd --system --uid 10001 --gid mirror --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin mirror
COPY --from=build /opt/mirror /opt/mirror
# The HTTP server listens on 127.0.0.1 by default; in a container it must listen on every interface.
ENV PATH=/opt/mirror/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MIRROR_SERVICE__HTTP_HOST=0.0.0.0 \
    MIRROR_SERVICE__HTTP_PORT=8080 \
    MIRROR_SERVICE__LOG_FORMAT=json
WORKDIR /etc/mirror
USER 10001:10001
EXPOSE 8080
# No curl in a slim image: the liveness check is Python's urllib against /healthz.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('MIRROR_SERVICE__HTTP_PORT', '8080') + '/healthz', timeout=4)"]
ENTRYPOINT ["mirror"]
CMD ["run", "--config", "/etc/mirror/mm2.properties"]
