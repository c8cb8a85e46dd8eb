# syntax=docker/dockerfile:1
# Multi-stage build: compile and install in `build`, run as a non-root user in `runtime`.
# The offline models are joined and verified at build time (baked into the image), so the
# container downloads nothing when it starts.

FROM python:3.11-slim-bookworm AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential cmake \
    && rm -rf /var/lib/apt/lists/*
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    CMAKE_ARGS="-DGGML_NATIVE=OFF" \
    VOICEBOT_CACHE_DIR=/opt/voicebot/models
WORKDIR /app
COPY requirements-bootstrap.lock requirements.lock ./
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --require-hashes -r requirements-bootstrap.lock \
    && /opt/venv/bin/pip install --require-hashes -r requirements.lock
COPY pyproject.toml README.md server.py ./
COPY bot ./bot
COPY transports ./transports
RUN /opt/venv/bin/pip install --no-deps . \
    && /opt/venv/bin/voicebot models

FROM python:3.11-slim-bookworm AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 --shell /usr/sbin/nologin voicebot
COPY --from=build /opt/venv /opt/venv
COPY --from=build --chown=voicebot:voicebot /opt/voicebot/models /opt/voicebot/models
WORKDIR /app
COPY pipelines ./pipelines
ENV PATH="/opt/venv/bin:$PATH" \
    VOICEBOT_CACHE_DIR=/opt/voicebot/models \
    VOICEBOT_PIPELINE=/app/pipelines/local.yaml \
    PYTHONUNBUFFERED=1
USER voicebot
EXPOSE 7860
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:7860/healthz', timeout=4)"]
CMD ["voicebot", "serve", "--host", "0.0.0.0", "--port", "7860"]
