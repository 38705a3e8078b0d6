"""The periodic sweep that repairs what lost messages and dead workers leave behind.

Every rule is a compare-and-set on the database, so several reapers (one per worker) running at
once only cost duplicate, harmless messages. It also deletes files past their retention.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from openlipsync.jobs import batches, chunks, dispatch, thumbnails, webhooks
from openlipsync.jobs.generation import WORKDIR_PREFIX, fail_exhausted, fail_timed_out
from openlipsync.settings import Settings
from openlipsync.store.files import Storage
from openlipsync.store.models import Batch, Generation, utcnow

log = logging.getLogger(__name__)

UNQUEUED_GRACE_SECONDS = 10.0  # the API marks a row queued right after its commit
DELIVERY_GRACE_SECONDS = 30.0
LOST_MESSAGE_GRACE_SECONDS = 30.0  # queued this long with an empty engine queue: re-send


@dataclass
class Report:
    requeued: int = 0
    orphans_resumed: int = 0
    exhausted: int = 0
    deliveries: int = 0
    batches: int = 0
    expired_files: int = 0
    thumbnails: int = 0


def reap(sessions: sessionmaker[Session], storage: Storage, settings: Settings) -> Report:
    report = Report()
    with sessions() as session:
        _orphans(session, storage, settings, report)
        _chunks(session, sessions, storage, settings, report)
        _unqueued(session, settings, report)
        _deliveries(session, report)
        _batches(session, storage, settings, report)
        _expire(session, storage, settings, report)
        _thumbnails(session, report)
    _remove_abandoned_workdirs(settings)
    if any(vars(report).values()):
        log.info("reaper: %s", report)
    return report


def _ago(seconds: float):  # type: ignore[no-untyped-def]
    return utcnow() - timedelta(seconds=seconds)


def _orphans(session: Session, storage: Storage, settings: Settings, report: Report) -> None:
    """PROCESSING rows whose worker stopped beating: resume them, or give up after N attempts."""
    stale = _ago(settings.job_stale_seconds)
    overdue = _ago(settings.generation_timeout_seconds)
    rows = session.execute(
        select(
            Generation.id,
            Generation.attempts,
            Generation.batch_id,
            Generation.started_at < overdue,
            Generation.stage,
        ).where(
            Generation.status == "PROCESSING",
            or_(Generation.heartbeat_at.is_(None), Generation.heartbeat_at < stale),
        )
    ).all()
    for generation_id, attempts, batch_id, timed_out, stage in rows:
        if timed_out:  # killed by the hard time limit: the run itself was too long
            done = fail_timed_out(session, generation_id, storage, settings)
            if done is not None:
                report.exhausted += 1
                _after_finish(done.delivery_id, batch_id)
            continue
        if stage in (chunks.CHUNK_STAGE, chunks.JOIN_STAGE):
            continue  # its chunks carry their own claims: reap_chunks looks after them
        if attempts >= settings.job_max_attempts:
            done = fail_exhausted(session, generation_id, storage, settings)
            if done is not None:
                report.exhausted += 1
                _after_finish(done.delivery_id, batch_id)
            continue
        # Releasing the claim (worker_id NULL) lets the next delivered message take it over;
        # the fresh heartbeat keeps this reaper from re-sending it every pass.
        released = session.execute(
            update(Generation)
            .where(
                Generation.id == generation_id,
                Generation.status == "PROCESSING",
                or_(Generation.heartbeat_at.is_(None), Generation.heartbeat_at < stale),
            )
            .values(worker_id=None, heartbeat_at=utcnow(), stage="requeued")
        )
        session.commit()
        if released.rowcount == 1:
            dispatch.send_generation(generation_id)
            report.orphans_resumed += 1


def _chunks(
    session: Session,
    sessions: sessionmaker[Session],
    storage: Storage,
    settings: Settings,
    report: Report,
) -> None:
    """Chunked generations: the chunks' own claims decide (see jobs/chunks.py)."""
    found = chunks.reap_chunks(session, sessions, storage, settings)
    report.orphans_resumed += found.resumed + found.joins
    report.requeued += found.resent
    for done in found.exhausted or []:
        report.exhausted += 1
        _after_finish(done.delivery_id, done.batch_id)


def _unqueued(session: Session, settings: Settings, report: Report) -> None:
    """PENDING rows whose message was never sent (broker down) or is presumed lost."""
    never_sent = and_(
        Generation.stage.is_(None), Generation.created_at < _ago(UNQUEUED_GRACE_SECONDS)
    )
    long_waiting = and_(
        Generation.stage == dispatch.QUEUED_STAGE,
        Generation.updated_at < _ago(settings.job_requeue_seconds),
    )
    waiting = [never_sent, long_waiting]
    lost = and_(
        Generation.stage == dispatch.QUEUED_STAGE,
        Generation.updated_at < _ago(LOST_MESSAGE_GRACE_SECONDS),
    )
    if _any(session, lost) and _engine_queue_empty(settings):
        # Rows wait as queued yet the broker holds no engine message: theirs is reserved by a
        # busy worker (a re-send is a harmless duplicate) or died with a broker killed before
        # it persisted it (a re-send is the only way out before job_requeue_seconds).
        waiting.append(lost)
    ids = session.scalars(
        select(Generation.id).where(Generation.status == "PENDING", or_(*waiting))
    ).all()
    for generation_id in ids:
        session.execute(
            update(Generation).where(Generation.id == generation_id).values(updated_at=utcnow())
        )
        session.commit()
        if dispatch.send_generation(generation_id):
            dispatch.mark_queued(generation_id)
            report.requeued += 1


def _any(session: Session, condition) -> bool:  # type: ignore[no-untyped-def]
    query = select(Generation.id).where(Generation.status == "PENDING", condition).limit(1)
    return session.scalar(query) is not None


def _engine_queue_empty(settings: Settings) -> bool:
    from openlipsync.api.readiness import broker_queue_length

    try:
        return broker_queue_length(settings) == 0
    except Exception as exc:  # broker down: nothing can be re-sent anyway
        log.info("reaper: broker queue length unavailable: %s", exc)
        return False


def _deliveries(session: Session, report: Report) -> None:
    for delivery_id in webhooks.due_deliveries(session, DELIVERY_GRACE_SECONDS):
        if dispatch.send_delivery(delivery_id):
            report.deliveries += 1


def _batches(session: Session, storage: Storage, settings: Settings, report: Report) -> None:
    """Batches stuck before or between steps, and batches whose closing message was lost."""
    rows = session.execute(
        select(Batch.id, Batch.status).where(
            Batch.status.in_(("PENDING", "JOBS_CREATED", "PROCESSING")),
            Batch.created_at < _ago(UNQUEUED_GRACE_SECONDS),
        )
    ).all()
    for batch_id, status in rows:
        if status in ("PENDING", "JOBS_CREATED"):
            dispatch.enqueue_batch(batch_id)
            report.batches += 1
            continue
        delivery_id = batches.complete_if_done(session, batch_id, storage, settings)
        if delivery_id is not None:
            dispatch.send_delivery(delivery_id)
            report.batches += 1


def _thumbnails(session: Session, report: Report) -> None:
    """Assets left without a thumbnail (a lost message, or stored before thumbnails were)."""
    for asset_id in thumbnails.missing(session):
        if dispatch.send_thumbnail(asset_id):
            report.thumbnails += 1


def _expire(session: Session, storage: Storage, settings: Settings, report: Report) -> None:
    """Delete outputs and results older than the retention period; the rows stay for history."""
    if settings.retention_seconds <= 0:
        return
    cutoff = _ago(settings.retention_seconds)
    generations = session.scalars(
        select(Generation).where(
            Generation.finished_at < cutoff,
            or_(Generation.output_key.is_not(None), Generation.synthesized_audio_key.is_not(None)),
        )
    ).all()
    for generation in generations:
        for key in (
            generation.output_key,
            generation.segment_output_key,
            generation.synthesized_audio_key,
        ):
            report.expired_files += _delete(storage, key)
        generation.output_key = generation.segment_output_key = None
        generation.synthesized_audio_key = None
    for batch in session.scalars(
        select(Batch).where(Batch.created_at < cutoff, Batch.output_key.is_not(None))
    ).all():
        report.expired_files += _delete(storage, batch.output_key)
        batch.output_key = None
    session.commit()


def _delete(storage: Storage, key: str | None) -> int:
    if not key:
        return 0
    try:
        storage.delete(key)
    except Exception as exc:
        log.warning("could not delete expired file %s: %s", key, exc)
        return 0
    return 1


def _after_finish(delivery_id: str | None, batch_id: str | None) -> None:
    if delivery_id is not None:
        dispatch.send_delivery(delivery_id)
    if batch_id is not None:
        dispatch.send_refresh_batch(batch_id)


def _remove_abandoned_workdirs(settings: Settings) -> None:
    """Scratch directories of runs whose worker was killed (normal runs delete their own)."""
    cutoff = time.time() - settings.generation_timeout_seconds - 3600
    for path in Path(tempfile.gettempdir()).glob(f"{WORKDIR_PREFIX}*"):
        try:
            if path.is_dir() and path.stat().st_mtime < cutoff:
                shutil.rmtree(path, ignore_errors=True)
        except OSError:
            continue
