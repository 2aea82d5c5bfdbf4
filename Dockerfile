# Threadline: the wheel installed into a virtualenv, copied into a slim runtime that runs as a non-root user.
#
#   docker build -t threadline .
#   docker run -p 8000:8000 -e DATABASE_URL=postgresql://… -e REDIS_URL=redis://… \
#     -e THREADLINE_JWT_SECRET=… threadline
#
# The embedded PostgreSQL and Redis are for development. In a container, set DATABASE_URL (PostgreSQL
# with pgvector) and REDIS_URL, and THREADLINE_JWT_SECRET so that every replica accepts the same tokens.

FROM python:3.11-slim AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN python -m venv /opt/venv

WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
COPY migrations ./migrations

# The wheel carries the migrations as threadline/_migrations (see pyproject.toml), so the runtime needs
# nothing from the source tree.
RUN /opt/venv/bin/pip wheel --no-deps --wheel-dir /wheels . \
    && /opt/venv/bin/pip install /wheels/threadline-*.whl


FROM python:3.11-slim

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOST=0.0.0.0 \
    PORT=8000 \
    THREADLINE_DATA_DIR=/var/lib/threadline

RUN useradd --system --user-group --uid 10001 --home-dir /var/lib/threadline --no-create-home \
        --shell /usr/sbin/nologin threadline \
    && install -d -o threadline -g threadline -m 700 /var/lib/threadline

COPY --from=builder /opt/venv /opt/venv

USER threadline
WORKDIR /var/lib/threadline

EXPOSE 8000

# python:3.11-slim has no curl; urlopen raises, so the check fails, on anything but a 2xx.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('PORT', '8000'), timeout=4)"]

# Exec form: threadline is PID 1 and receives SIGTERM itself. Give `docker stop` time to drain, e.g.
# `docker stop -t 75` (see docs/operations.md#shutdown).
CMD ["threadline", "serve"]
