"""Hand work to the queue without ever failing or stalling the HTTP request that created it.

The database row is the truth and the broker message only a wake-up call: if publishing fails,
the row stays PENDING with no `stage` and the reaper publishes it again later. A published
generation is marked `stage = "queued"` so the reaper can tell the two apart.

Callers must commit the row before calling these functions (the worker may start at once).
"""

from __future__ import annotations

import logging

from sqlalchemy import update

from openlipsync.jobs.celery_app import ASSETS_QUEUE, DEFAULT_QUEUE, ENGINE_QUEUE, current_app
from openlipsync.store.models import Generation, utcnow

log = logging.getLogger(__name__)

GENERATE_TASK = "openlipsync.generate"
EXPAND_BATCH_TASK = "openlipsync.expand_batch"
REFRESH_BATCH_TASK = "openlipsync.refresh_batch"
DELIVER_TASK = "openlipsync.deliver_webhook"
REAP_TASK = "openlipsync.reap"
RENDER_CHUNK_TASK = "openlipsync.render_chunk"
JOIN_TASK = "openlipsync.join_chunks"
THUMBNAIL_TASK = "openlipsync.make_thumbnail"
QUEUED_STAGE = "queued"


def _send(task: str, object_id: str, queue: str, countdown: float | None = None) -> bool:
    try:
        current_app().send_task(task, args=[object_id], queue=queue, countdown=countdown)
    except Exception as exc:  # any broker failure: the reaper is the fallback
        log.warning("could not queue %s(%s): %s; the reaper will retry", task, object_id, exc)
        return False
    return True


def enqueue_generation(generation_id: str) -> None:
    """Queue a committed PENDING generation for the engine workers."""
    if send_generation(generation_id):
        mark_queued(generation_id)


def enqueue_batch(batch_id: str) -> None:
    """Queue the expansion of a committed PENDING batch into its generations."""
    _send(EXPAND_BATCH_TASK, batch_id, DEFAULT_QUEUE)


def send_generation(generation_id: str) -> bool:
    return _send(GENERATE_TASK, generation_id, ENGINE_QUEUE)


def send_render_chunk(chunk_id: str) -> bool:
    return _send(RENDER_CHUNK_TASK, chunk_id, ENGINE_QUEUE)


def send_join(generation_id: str) -> bool:
    return _send(JOIN_TASK, generation_id, ENGINE_QUEUE)


def send_delivery(delivery_id: str, countdown: float | None = None) -> bool:
    return _send(DELIVER_TASK, delivery_id, DEFAULT_QUEUE, countdown)


def send_thumbnail(asset_id: str) -> bool:
    """Queue an asset's thumbnail for the service worker (jobs/thumbnails.py)."""
    return _send(THUMBNAIL_TASK, asset_id, ASSETS_QUEUE)


def send_refresh_batch(batch_id: str) -> bool:
    return _send(REFRESH_BATCH_TASK, batch_id, DEFAULT_QUEUE)


def mark_queued(generation_id: str) -> None:
    from openlipsync.jobs.context import sessions

    try:
        with sessions()() as session, session.begin():
            session.execute(
                update(Generation)
                .where(
                    Generation.id == generation_id,
                    Generation.status == "PENDING",
                    Generation.stage.is_(None),
                )
                .values(stage=QUEUED_STAGE, updated_at=utcnow())
            )
    except Exception as exc:  # a lost marker only means one extra, harmless re-dispatch
        log.warning("could not mark generation %s queued: %s", generation_id, exc)
