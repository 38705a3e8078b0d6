"""GET /metrics: Prometheus scrape endpoint (no API key, like the health probes).

It shows counts and timings only, never ids, keys or URLs, so it can sit beside /health on the
operator network; put it behind the reverse proxy's access rules if the API is public.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from sqlalchemy.orm import Session

from openlipsync.api import metrics
from openlipsync.api.deps import get_session, get_settings
from openlipsync.settings import Settings

router = APIRouter(tags=["health"])


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Text exposition format"}},
)
def scrape(
    session: Session = Depends(get_session), settings: Settings = Depends(get_settings)
) -> Response:
    return Response(metrics.render(session, settings), media_type=metrics.CONTENT_TYPE)
