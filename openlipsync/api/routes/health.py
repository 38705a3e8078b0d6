"""Unauthenticated probes: `/health` (database answers), liveness and readiness.

`/health/live` only proves the process serves HTTP (a restart cures nothing else), while
`/health/ready` checks every dependency a request may touch, so an orchestrator stops routing
to a node whose database, broker or storage is unreachable without killing it.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from openlipsync.api import readiness
from openlipsync.api.deps import get_session

router = APIRouter(tags=["health"])


@router.get("/health", summary="Health check")
@router.get("/v2/health", summary="Health check")
def health(session: Session = Depends(get_session)) -> dict[str, str]:
    session.execute(text("SELECT 1"))
    return {"status": "ok"}


@router.get("/health/live", summary="Liveness probe")
def live() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/health/ready",
    summary="Readiness probe",
    responses={503: {"description": "A dependency (database, broker, storage) is unreachable"}},
)
async def ready(request: Request) -> JSONResponse:
    state = request.app.state
    checks = [
        await run_in_threadpool(readiness.check_database, state.sessions),
        await run_in_threadpool(readiness.check_broker, state.settings),
        await run_in_threadpool(readiness.check_storage, state.storage),
    ]
    failing = [check.component for check in checks if not check.ok]
    body = {
        "status": "unavailable" if failing else "ok",
        "checks": {check.component: check.detail for check in checks},
        "failing": failing,
    }
    return JSONResponse(body, status_code=503 if failing else 200)
