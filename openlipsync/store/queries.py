"""Repository functions: every query is scoped by organisation, so tenancy is enforced here once
rather than remembered in each route (another organisation's row simply does not exist)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, case, delete, func, or_, select
from sqlalchemy.orm import Session

from openlipsync.store.models import Asset, Batch, Generation, WebhookDelivery

ACTIVE = ("PENDING", "PROCESSING")
FAILED = ("FAILED", "REJECTED")


def get_generation(session: Session, organization_id: str, generation_id: str) -> Generation | None:
    return session.scalars(
        select(Generation).where(
            Generation.id == generation_id, Generation.organization_id == organization_id
        )
    ).first()


def list_generations(
    session: Session,
    organization_id: str,
    statuses: Sequence[str] = (),
    ids: Sequence[str] = (),
    limit: int | None = None,
    after: Generation | None = None,
) -> list[Generation]:
    """Newest first; `after` is the last row of the previous page (keyset pagination)."""
    query = select(Generation).where(Generation.organization_id == organization_id)
    if statuses:
        query = query.where(Generation.status.in_(statuses))
    if ids:
        query = query.where(Generation.id.in_(ids))
    if after is not None:
        query = query.where(
            or_(
                Generation.created_at < after.created_at,
                and_(Generation.created_at == after.created_at, Generation.id < after.id),
            )
        )
    query = query.order_by(Generation.created_at.desc(), Generation.id.desc())
    if limit is not None:
        query = query.limit(limit)
    return list(session.scalars(query))


def count_generations(session: Session, organization_id: str, statuses: Sequence[str] = ()) -> int:
    query = select(func.count()).select_from(Generation)
    query = query.where(Generation.organization_id == organization_id)
    if statuses:
        query = query.where(Generation.status.in_(statuses))
    return session.scalar(query) or 0


def find_by_idempotency_key(session: Session, organization_id: str, key: str) -> Generation | None:
    return session.scalars(
        select(Generation).where(
            Generation.organization_id == organization_id, Generation.idempotency_key == key
        )
    ).first()


def delete_generation(session: Session, generation: Generation) -> None:
    session.execute(delete(WebhookDelivery).where(WebhookDelivery.generation_id == generation.id))
    session.delete(generation)


def get_asset(session: Session, organization_id: str, asset_id: str) -> Asset | None:
    return session.scalars(
        select(Asset).where(Asset.id == asset_id, Asset.organization_id == organization_id)
    ).first()


def assets_by_id(session: Session, organization_id: str, ids: Iterable[str]) -> dict[str, Asset]:
    wanted = list(set(ids))
    if not wanted:
        return {}
    rows = session.scalars(
        select(Asset).where(Asset.organization_id == organization_id, Asset.id.in_(wanted))
    )
    return {asset.id: asset for asset in rows}


ASSET_SORTS: dict[str, tuple[Any, bool]] = {
    "nameAsc": (Asset.name, False),
    "nameDesc": (Asset.name, True),
    "dateAsc": (Asset.created_at, False),
    "dateDesc": (Asset.created_at, True),
    "durationAsc": (Asset.duration_seconds, False),
    "durationDesc": (Asset.duration_seconds, True),
    "sizeAsc": (Asset.size, False),
    "sizeDesc": (Asset.size, True),
    "kindAsc": (Asset.type, False),
    "kindDesc": (Asset.type, True),
}


def list_assets(
    session: Session,
    organization_id: str,
    types: Sequence[str] = (),
    search: str | None = None,
    sort: str = "dateDesc",
    offset: int = 0,
    limit: int = 10,
) -> tuple[list[Asset], int]:
    """One page and the total number of matches (offset paging keeps every sort order exact)."""
    query: Select = select(Asset).where(Asset.organization_id == organization_id)
    if types:
        query = query.where(Asset.type.in_(types))
    if search:
        escaped = search.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        query = query.where(func.lower(Asset.name).like(f"%{escaped}%", escape="\\"))
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    column, descending = ASSET_SORTS[sort]
    # NULLs last in both directions, then id as a stable tie-breaker.
    nulls_last = case((column.is_(None), 1), else_=0)
    order = column.desc() if descending else column.asc()
    tie = Asset.id.desc() if descending else Asset.id.asc()
    rows = session.scalars(query.order_by(nulls_last, order, tie).offset(offset).limit(limit))
    return list(rows), total


def get_batch(session: Session, organization_id: str, batch_id: str) -> Batch | None:
    return session.scalars(
        select(Batch).where(Batch.id == batch_id, Batch.organization_id == organization_id)
    ).first()


def list_batches(
    session: Session,
    organization_id: str,
    status: str | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
) -> list[Batch]:
    query = select(Batch).where(Batch.organization_id == organization_id)
    if status:
        query = query.where(Batch.status == status)
    if created_after:
        query = query.where(Batch.created_at >= created_after)
    if created_before:
        query = query.where(Batch.created_at <= created_before)
    return list(session.scalars(query.order_by(Batch.created_at.desc(), Batch.id.desc())))


def count_active_batches(session: Session, organization_id: str) -> int:
    return (
        session.scalar(
            select(func.count())
            .select_from(Batch)
            .where(
                Batch.organization_id == organization_id,
                Batch.status.in_(("PENDING", "JOBS_CREATED", "PROCESSING")),
            )
        )
        or 0
    )


def batch_metrics(session: Session, batches: Sequence[Batch]) -> dict[str, dict[str, int]]:
    """`metrics` per batch; lines not yet expanded into generations count as pending."""
    ids = [batch.id for batch in batches]
    counts: dict[str, dict[str, int]] = {bid: {"done": 0, "failed": 0} for bid in ids}
    if ids:
        rows = session.execute(
            select(
                Generation.batch_id,
                func.sum(case((Generation.status == "COMPLETED", 1), else_=0)),
                func.sum(case((Generation.status.in_(FAILED), 1), else_=0)),
            )
            .where(Generation.batch_id.in_(ids))
            .group_by(Generation.batch_id)
        )
        for batch_id, done, failed in rows:
            counts[batch_id] = {"done": int(done or 0), "failed": int(failed or 0)}
    result = {}
    for batch in batches:
        done, failed = counts[batch.id]["done"], counts[batch.id]["failed"]
        result[batch.id] = {
            "total_generations": batch.total,
            "success_count": done,
            "failed_count": failed,
            "pending_count": max(0, batch.total - done - failed),
        }
    return result


def input_source(
    session: Session, organization_id: str, item: dict[str, Any]
) -> tuple[str | None, str | None]:
    """Where a stored input's media lives: (storage key, None) or (None, URL to fetch).

    For the worker: `assetId` inputs resolve to the asset's stored file (uploads) or the URL
    it was registered with; `url` inputs are fetched as given. (None, None) if the asset is gone.
    """
    if item.get("url"):
        return None, item["url"]
    asset = get_asset(session, organization_id, item.get("assetId") or "")
    if asset is None:
        return None, None
    return asset.storage_key, asset.source_url
