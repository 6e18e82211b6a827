# agent-gateway: one process, the web chat and health on port 8080.
#   docker build -t agent-gateway .
#   docker run --rm -p 127.0.0.1:8080:8080 -v agent-gateway-data:/data agent-gateway
# Tokens and model keys come from the environment (-e OPENAI_API_KEY=... etc.).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies and code first, configuration last: editing a prompt rebuilds one layer.
COPY pyproject.toml README.md LICENSE ./
COPY runtime ./runtime
COPY adapters ./adapters
COPY gateway ./gateway
RUN pip install . \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin gateway \
    && mkdir /data \
    && chown gateway:gateway /data
COPY config ./config

# Listen beyond the container's loopback so the published port reaches the server;
# publish it on the host's loopback only (the web chat has no login).
ENV AGENT_GATEWAY_HOST=0.0.0.0 \
    AGENT_GATEWAY_PORT=8080 \
    AGENT_GATEWAY_DB=/data/gateway.db

USER gateway
VOLUME ["/data"]
EXPOSE 8080

HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('AGENT_GATEWAY_PORT', '8080'), timeout=4)"]

ENTRYPOINT ["agent-gateway"]
CMD ["run"]
