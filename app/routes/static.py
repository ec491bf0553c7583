"""``/static``: plotly.js (from the installed plotly package, no CDN) and the pages' own files."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from app.charts import static_file
from app.errors import NotFoundError

router = APIRouter(prefix="/static", tags=["static"], include_in_schema=False)


@router.get("/{name}")
def get_static(name: str, request: Request) -> Response:
    """A static file, gzipped when the client accepts it, cacheable for a day (ETag)."""
    found = static_file(name)
    if found is None:
        raise NotFoundError(f"static file `{name}`")
    headers = {
        "ETag": found.etag,
        "Cache-Control": "public, max-age=86400",
        "Vary": "Accept-Encoding",
    }
    if request.headers.get("if-none-match") == found.etag:
        return Response(status_code=304, headers=headers)
    if "gzip" in request.headers.get("accept-encoding", ""):
        headers["Content-Encoding"] = "gzip"
        return Response(found.gzipped, media_type=found.media_type, headers=headers)
    return Response(found.body, media_type=found.media_type, headers=headers)
