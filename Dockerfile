# syntax=docker/dockerfile:1
#
# Parley server image.
#
#   docker build -t parley .
#   docker run --rm -p 8000:8000 parley                  # embedded: SQLite under /app/var
#   docker run --rm parley migrate                       # any `parley` subcommand
#
# Configuration is PARLEY_* environment variables only (see config/settings.py).
# Both Python stages use the same base image so the venv's interpreter path
# (/usr/local/bin/python3.11) exists in the runtime stage. The web client is
# built in a Node stage; only its static files reach the image.

ARG PYTHON_IMAGE=python:3.11-slim
ARG NODE_IMAGE=node:22-slim

# --------------------------------------------------------------------------
# web: the browser client (web/, TypeScript + Vite) built to /web/dist.
# --------------------------------------------------------------------------
FROM ${NODE_IMAGE} AS web

WORKDIR /web

# Dependencies first: this layer is rebuilt only when the lock file changes.
COPY web/package.json web/package-lock.json ./
RUN npm ci --no-audit --no-fund

COPY web/ ./
RUN npm run build

# --------------------------------------------------------------------------
# builder: resolve nothing, install exactly what requirements.lock pins.
# --------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src

# Dependencies first: this layer is rebuilt only when the lock file changes.
COPY requirements.lock ./
RUN pip install -r requirements.lock

# Then the project itself, without touching the pinned dependencies.
COPY . .
RUN pip install --no-deps .

# --------------------------------------------------------------------------
# runtime: the venv, the built web client, a non-root user, nothing else.
# --------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PARLEY_SERVER_HOST=0.0.0.0 \
    PARLEY_SERVER_PORT=8000 \
    PARLEY_SERVER_WEB_DIR=/app/web

# Fixed uid/gid so volume ownership is predictable across rebuilds and hosts.
RUN groupadd --system --gid 10001 parley \
    && useradd --system --uid 10001 --gid parley --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin parley

COPY --from=builder /opt/venv /opt/venv

WORKDIR /app

# Relative defaults (SQLite file, var/keys, var/media) resolve under /app/var.
# The sub-directories exist in the image, owned by parley, so a fresh named
# volume mounted on any of them inherits that ownership (keys stay mode 0700).
RUN mkdir -p /app/var/keys /app/var/media \
    && chmod 0700 /app/var/keys \
    && chown -R parley:parley /app
VOLUME ["/app/var"]

# The web client, served at / (owned by root: the server only reads it).
COPY --from=web /web/dist /app/web

USER 10001:10001

EXPOSE 8000

# Liveness only (/readyz also checks the database and Redis). slim has no curl.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; port = os.environ.get('PARLEY_SERVER_PORT') or '8000'; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:' + port + '/healthz', timeout=4).status == 200 else 1)"]

# SIGTERM reaches uvicorn directly (exec form), which drains gracefully.
ENTRYPOINT ["parley"]
CMD ["serve"]
