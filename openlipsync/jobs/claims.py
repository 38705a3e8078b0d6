"""The claim that makes a task run once: one compare-and-set shape for generations and chunks.

A row is claimed by moving it to PROCESSING with the claimant's token; only the token holder
may then write to it, and a claim whose holder stopped heart-beating may be taken over.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, or_

from openlipsync.settings import Settings
from openlipsync.store.models import utcnow


def claimable(model: Any, row_id: str, settings: Settings, *takeover: Any) -> ColumnElement[bool]:
    """PENDING with attempts left, or PROCESSING whose holder is gone (and `takeover` allows)."""
    stale = utcnow() - timedelta(seconds=settings.job_stale_seconds)
    return and_(
        model.id == row_id,
        model.attempts < settings.job_max_attempts,
        or_(
            model.status == "PENDING",
            and_(
                model.status == "PROCESSING",
                or_(model.worker_id.is_(None), model.heartbeat_at < stale),
                *takeover,
            ),
        ),
    )


def claimed_values(model: Any, token: str) -> dict[str, Any]:
    """What a successful claim writes: one more attempt, under the claimant's token."""
    now = utcnow()
    return {
        "status": "PROCESSING",
        "attempts": model.attempts + 1,
        "worker_id": token,
        "heartbeat_at": now,
        "started_at": now,
        "updated_at": now,
    }


def held(model: Any, row_id: str, token: str) -> ColumnElement[bool]:
    """The row is still PROCESSING under this token: nobody took it over or ended it."""
    return and_(model.id == row_id, model.status == "PROCESSING", model.worker_id == token)


def heartbeat_stale(worker_id: str | None, beat: datetime | None, settings: Settings) -> bool:
    """Nobody holds the claim, or its holder stopped beating for longer than the stale limit."""
    if worker_id is None or beat is None:
        return True
    if beat.tzinfo is None:  # SQLite hands back naive UTC
        beat = beat.replace(tzinfo=utcnow().tzinfo)
    return (utcnow() - beat).total_seconds() > settings.job_stale_seconds
