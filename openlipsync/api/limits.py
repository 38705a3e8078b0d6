"""Per-key request rates and per-organisation concurrency, enforced through the shared database.

Counters live in `rate_limit_windows` (fixed one-minute windows, one upsert per request), so
several API processes behind a load balancer enforce one limit between them.
"""

from __future__ import annotations

import random
import time

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from openlipsync.api.errors import ApiError
from openlipsync.store.models import Generation, Organization, RateLimitWindow

WINDOW_SECONDS = 60
ACTIVE_STATUSES = ("PENDING", "PROCESSING")
MAX_RETRY_AFTER = 30  # the Python SDK ignores Retry-After above 30 s


def hit(session: Session, bucket: str, limit: int, now: float | None = None) -> None:
    """Count one request in the current window; raise 429 once the limit is exceeded."""
    if limit <= 0:
        return
    now = time.time() if now is None else now
    window = int(now // WINDOW_SECONDS) * WINDOW_SECONDS
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    statement = (
        insert(RateLimitWindow)
        .values(bucket=bucket, window_start=window, count=1)
        .on_conflict_do_update(
            index_elements=["bucket", "window_start"],
            set_={"count": RateLimitWindow.count + 1},
        )
        .returning(RateLimitWindow.count)
    )
    count = session.execute(statement).scalar_one()
    if random.random() < 0.01:  # occasional cleanup keeps the table at ~2 windows per key
        session.execute(
            delete(RateLimitWindow).where(RateLimitWindow.window_start < window - WINDOW_SECONDS)
        )
    session.commit()
    if count > limit:
        retry_after = max(1, min(MAX_RETRY_AFTER, int(window + WINDOW_SECONDS - now) + 1))
        raise ApiError(
            429,
            "Rate limit exceeded. Please try again later.",
            "rate_limit_exceeded",
            headers={
                "Retry-After": str(retry_after),
                "X-RateLimit-Limit": str(limit),
                "X-RateLimit-Remaining": "0",
            },
        )


def lock_organization(session: Session, organization_id: str) -> None:
    """Serialise creates of one organisation until commit.

    PostgreSQL takes the row lock; SQLite takes the database write lock. Either way the count
    below and the insert that follows it are atomic with respect to other API processes.
    """
    session.execute(
        update(Organization)
        .where(Organization.id == organization_id)
        .values(name=Organization.name)
    )


def check_concurrency(session: Session, organization_id: str, limit: int) -> None:
    """Raise 429 when the organisation already has `limit` generations queued or running.

    Call after `lock_organization` in the same transaction. Batch generations do not count.
    """
    if limit <= 0:
        return
    active = session.scalar(
        select(func.count())
        .select_from(Generation)
        .where(
            Generation.organization_id == organization_id,
            Generation.status.in_(ACTIVE_STATUSES),
            Generation.batch_id.is_(None),
        )
    )
    if (active or 0) >= limit:
        session.rollback()
        raise ApiError(
            429,
            f"Generation concurrency limit reached ({limit} queued or running). "
            "Wait for one to finish and retry.",
            "concurrency_limit_reached",
            headers={"Retry-After": "5"},
        )
