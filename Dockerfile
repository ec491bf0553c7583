# ticketflow: the API server (`ticketflow serve`), the scheduler (`ticketflow worker`) and the CLI.
#
#   docker build -t ticketflow .
#   docker run -p 8000:8000 -v ticketflow-data:/data ticketflow            # SQLite in /data
#   (a host directory mounted on /data must be writable by uid 10001, the image's user)
#   docker run ... -e TICKETFLOW_WAREHOUSE_URL=postgresql://user:pw@db:5432/ticketflow ticketflow
#   docker run ... ticketflow worker                                       # any subcommand
#
# Configuration comes from the environment (TICKETFLOW_WAREHOUSE_URL, TICKETFLOW_<SECTION>__<KEY>)
# and an optional TOML file named by TICKETFLOW_CONFIG (mount it read-only). Secrets are never in
# the file: it names the environment variables that hold them (password_env, key_env, secret_env).
# See docs/configuration.md and compose.yaml. tests/test_dockerfile.py lints this file and
# replays its pip steps in a fresh virtual environment.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
WORKDIR /app

# dependency layer: only pyproject.toml decides it, so a code change does not reinstall pandas & co.
# (empty stand-in packages let pip resolve and install the dependencies, then ticketflow goes again)
COPY pyproject.toml README.md ./
RUN mkdir -p app connectors analytics \
    && touch app/__init__.py connectors/__init__.py analytics/__init__.py \
    && pip install . \
    && pip uninstall -y ticketflow \
    && rm -rf app connectors analytics build ./*.egg-info

COPY app ./app
COPY connectors ./connectors
COPY analytics ./analytics
RUN pip install --no-deps . && rm -rf build ./*.egg-info

RUN useradd --system --uid 10001 --user-group --home-dir /data --no-create-home ticketflow \
    && mkdir /data && chown ticketflow:ticketflow /data
USER 10001
WORKDIR /data
VOLUME ["/data"]

# the embedded SQLite warehouse by default; point it at PostgreSQL for production
ENV TICKETFLOW_WAREHOUSE_URL=sqlite:////data/ticketflow.db \
    TICKETFLOW_API__PORT=8000
EXPOSE 8000

# no curl in the slim image: the standard library asks /healthz (200 ok, 503 warehouse down)
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('TICKETFLOW_API__PORT', '8000') + '/healthz', timeout=4)"]

ENTRYPOINT ["ticketflow"]
CMD ["serve", "--host", "0.0.0.0"]
