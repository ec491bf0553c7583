"""``/api/v1/<analysis>``: stale calls, blockers and flow metrics, from the analytics cache."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/api/v1", tags=["analytics"])
