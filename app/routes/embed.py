"""``/api/v1/embed-tokens``: signed, expiring tokens for chart iframes (admin scope)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

from fastapi import APIRouter, HTTPException, Request

from app.deps import AdminAccess
from app.routes.charts import available_charts
from app.schemas import EmbedTokenCreate, EmbedTokenRead
from app.security import ALL_CHARTS, DASHBOARD, EmbedSigner

router = APIRouter(prefix="/api/v1/embed-tokens", tags=["embeds"])


@router.post(
    "",
    response_model=EmbedTokenRead,
    status_code=201,
    summary="Mint an embed token",
    responses={409: {"description": "no signing key is configured"}},
)
def create_embed_token(
    body: EmbedTokenCreate, _caller: AdminAccess, request: Request
) -> EmbedTokenRead:
    """A token that opens the named charts (and/or the dashboard), optionally for one team or
    source only, until it expires; with the paths to put in ``<iframe src=...>``."""
    signer: EmbedSigner | None = request.app.state.signer
    if signer is None:
        raise HTTPException(
            status_code=409,
            detail="embed tokens are disabled: set api.embed_key_env or api.embed_key_file",
        )
    known = {*available_charts(), DASHBOARD, ALL_CHARTS}
    unknown = sorted(set(body.charts) - known)
    if unknown:
        raise HTTPException(
            status_code=422,
            detail=f"unknown charts: {', '.join(unknown)}; known: {', '.join(sorted(known))}",
        )
    pins = {k: v for k, v in (("team", body.team), ("source", body.source)) if v is not None}
    try:
        grant = signer.mint(
            charts=body.charts,
            pins=pins,
            lifetime=timedelta(hours=body.lifetime_hours),
            now=datetime.now(UTC),
        )
    except ValueError as e:
        raise HTTPException(status_code=422, detail=str(e)) from None
    query = urlencode({"token": grant.token})
    names = sorted(available_charts()) if ALL_CHARTS in grant.charts else list(grant.charts)
    urls = {
        name: ("/?" if name == DASHBOARD else f"/charts/{name}?") + query
        for name in [*names, *([DASHBOARD] if ALL_CHARTS in grant.charts else [])]
    }
    return EmbedTokenRead(
        token=grant.token,
        charts=list(grant.charts),
        pins=dict(grant.pins),
        expires_at=grant.expires_at,
        urls=urls,
    )
