"""The Celery tasks: thin wrappers that open the database and storage and call the job logic.

All of them take only an id, are safe to run twice (the logic compare-and-sets on the database)
and never raise for a business failure, so Celery's own retry machinery stays out of the way.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

from celery import Celery
from celery.exceptions import Reject

from openlipsync.jobs import batches, chunks, dispatch, reaper, thumbnails, webhooks
from openlipsync.jobs.celery_app import current_settings
from openlipsync.jobs.context import sessions, storage
from openlipsync.jobs.generation import Finished, run_generation
from openlipsync.logs import bind_generation
from openlipsync.store.db import is_unavailable

log = logging.getLogger(__name__)

DATABASE_RETRY_SECONDS = 1.0  # pace of redeliveries while the database is unreachable


@contextmanager
def requeue_if_database_down(object_id: str) -> Iterator[None]:
    """Acking a message whose work met a database outage would lose the only message of a
    still-PENDING row: hand it back to the broker instead (paced), and let it run again."""
    try:
        yield
    except Exception as exc:
        if not is_unavailable(exc):
            raise
        log.warning("database unavailable for %s (%s); requeued", object_id, exc)
        time.sleep(DATABASE_RETRY_SECONDS)
        raise Reject(exc, requeue=True) from exc


def generate(generation_id: str) -> str:
    settings = current_settings()
    # Every record of this run carries generation_id.
    with bind_generation(generation_id), requeue_if_database_down(generation_id):
        done = run_generation(generation_id, sessions(settings), storage(settings), settings)
    return _after(done)


def render_chunk(chunk_id: str) -> str:
    settings = current_settings()
    with requeue_if_database_down(chunk_id):
        outcome = chunks.run_chunk(chunk_id, sessions(settings), storage(settings), settings)
    if outcome is None:
        return "skipped"
    _after(outcome.finished)
    return outcome.status


def join_chunks(generation_id: str) -> str:
    settings = current_settings()
    with bind_generation(generation_id), requeue_if_database_down(generation_id):
        done = chunks.run_join(generation_id, sessions(settings), storage(settings), settings)
    return _after(done)


def _after(done: Finished | None) -> str:
    """Notify once a generation is terminal: its webhook and its batch."""
    if done is None:
        return "skipped"
    if done.delivery_id is not None:
        dispatch.send_delivery(done.delivery_id)
    if done.batch_id is not None:
        dispatch.send_refresh_batch(done.batch_id)
    return done.status


def expand_batch(batch_id: str) -> int:
    settings = current_settings()
    with sessions(settings)() as session:
        expansion = batches.expand(session, batch_id, storage(settings), settings)
        for generation_id in expansion.queue:
            dispatch.enqueue_generation(generation_id)
        batches.mark_processing(session, batch_id)
    if expansion.delivery_id is not None:
        dispatch.send_delivery(expansion.delivery_id)
    # Lines that failed validation are already terminal; an all-invalid batch closes now.
    dispatch.send_refresh_batch(batch_id)
    return len(expansion.queue)


def refresh_batch(batch_id: str) -> str:
    settings = current_settings()
    with sessions(settings)() as session:
        delivery_id = batches.complete_if_done(session, batch_id, storage(settings), settings)
    if delivery_id is not None:
        dispatch.send_delivery(delivery_id)
        return "completed"
    return "running"


def deliver_webhook(delivery_id: str) -> str:
    settings = current_settings()
    with sessions(settings)() as session:
        outcome = webhooks.deliver(session, delivery_id, settings)
    if outcome.state == "retry" and outcome.retry_in is not None:
        log.info(
            "webhook %s: %s; retrying in %.1f s", delivery_id, outcome.detail, outcome.retry_in
        )
        dispatch.send_delivery(delivery_id, countdown=outcome.retry_in)
    return outcome.state


def make_thumbnail(asset_id: str) -> str:
    settings = current_settings()
    return thumbnails.make_thumbnail(sessions(settings), storage(settings), settings, asset_id)


def reap() -> str:
    settings = current_settings()
    return str(reaper.reap(sessions(settings), storage(settings), settings))


def register_tasks(app: Celery) -> None:
    """Register on `app` under stable names (the names are the wire contract with old workers)."""
    # The hard limit only catches an engine that ignores cancellation; the soft deadline inside
    # the run normally ends it first with `generation_timeout`.
    hard_limit = current_settings().generation_timeout_seconds + 300
    app.task(name=dispatch.GENERATE_TASK, acks_late=True, time_limit=hard_limit)(generate)
    app.task(name=dispatch.RENDER_CHUNK_TASK, acks_late=True, time_limit=hard_limit)(render_chunk)
    app.task(name=dispatch.JOIN_TASK, acks_late=True, time_limit=hard_limit)(join_chunks)
    app.task(name=dispatch.EXPAND_BATCH_TASK, acks_late=True)(expand_batch)
    app.task(name=dispatch.REFRESH_BATCH_TASK, acks_late=True)(refresh_batch)
    app.task(name=dispatch.DELIVER_TASK, acks_late=True)(deliver_webhook)
    app.task(name=dispatch.REAP_TASK, acks_late=True)(reap)
    app.task(name=dispatch.THUMBNAIL_TASK, acks_late=True)(make_thumbnail)
