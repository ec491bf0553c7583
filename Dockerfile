# ticketflow: the CLI and (later) the API server, on the embedded SQLite warehouse by default.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app

# dependencies first, so code changes do not reinstall them
COPY pyproject.toml README.md ./
RUN mkdir app connectors analytics && touch app/__init__.py connectors/__init__.py analytics/__init__.py \
    && pip install . && pip uninstall -y ticketflow

COPY app ./app
COPY connectors ./connectors
COPY analytics ./analytics
RUN pip install --no-deps .

RUN useradd --create-home ticketflow && mkdir /data && chown ticketflow /data
USER ticketflow
WORKDIR /data
ENV TICKETFLOW_WAREHOUSE_URL=sqlite:////data/ticketflow.db
ENTRYPOINT ["ticketflow"]
CMD ["--help"]
