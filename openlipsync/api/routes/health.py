"""Unauthenticated liveness probe that also proves the database answers."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from sqlalchemy import text
from sqlalchemy.orm import Session

from openlipsync.api.deps import get_session

router = APIRouter(tags=["health"])


@router.get("/health", summary="Health check")
@router.get("/v2/health", summary="Health check")
def health(session: Session = Depends(get_session)) -> dict[str, str]:
    session.execute(text("SELECT 1"))
    return {"status": "ok"}
