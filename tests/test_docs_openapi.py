"""docs/openapi.json is the app's OpenAPI description, and the prose docs name every route.

The comparison is on the skeleton (paths, methods, parameters, status codes, schema names and
their properties), so a FastAPI upgrade that only rewords generated text does not fail it,
while a new, removed or changed route does.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from app.docs_gen import openapi_json

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "openapi.json"
REGENERATE = "run `.venv/bin/python -m app.docs_gen` and commit docs/openapi.json"


def skeleton(schema: dict[str, Any]) -> dict[str, Any]:
    paths = {}
    for path, methods in schema["paths"].items():
        for method, op in methods.items():
            params = sorted((p["in"], p["name"]) for p in op.get("parameters", []))
            body = op.get("requestBody", {}).get("content", {})
            paths[f"{method.upper()} {path}"] = {
                "params": params,
                "body": sorted(body),
                "responses": sorted(op.get("responses", {})),
                "summary": op.get("summary"),
            }
    components = {
        name: sorted(s.get("properties", {}))
        for name, s in schema.get("components", {}).get("schemas", {}).items()
    }
    return {"paths": paths, "schemas": components}


def test_openapi_json_is_current() -> None:
    committed = json.loads(DOC.read_text())
    current = json.loads(openapi_json())
    assert skeleton(committed) == skeleton(current), f"docs/openapi.json is stale: {REGENERATE}"
    assert committed["info"]["title"] == "ticketflow"


def _documented_routes() -> set[str]:
    text = (REPO / "docs" / "api.md").read_text() + (REPO / "docs" / "alerts.md").read_text()
    found = set()
    for method, path in re.findall(r"`(GET|POST|PUT|PATCH|DELETE) (/[^`?\s]*)", text):
        found.add(f"{method} {_anonymous(path)}")
    return found


def _anonymous(path: str) -> str:
    """`/a/{id}` and `/a/{episode_id}` are the same route."""
    return re.sub(r"\{[^}]*\}", "{}", path)


def test_every_route_is_in_the_prose_docs() -> None:
    """docs/api.md (or docs/alerts.md for the alert routes) has a row for every operation."""
    schema = json.loads(DOC.read_text())
    operations = {
        f"{method.upper()} {_anonymous(path)}"
        for path, ops in schema["paths"].items()
        for method in ops
    }
    missing = sorted(operations - _documented_routes())
    assert not missing, f"routes without a row in docs/api.md or docs/alerts.md: {missing}"
