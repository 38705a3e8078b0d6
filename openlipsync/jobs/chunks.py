"""Long generations in parallel: plan once, render chunks on any free worker, join once.

    generate task (claims the generation as `run`)
        fetch inputs ─► engine plan for the whole clip ─► plan + source into file storage
        ─► one `generation_chunks` row per frame range ─► one render_chunk message each
    render_chunk task (any engine worker; claims its chunk row with a compare-and-set)
        plan + source from storage ─► H.264 of its frames ─► storage (one fixed key per chunk)
        ─► the last chunk done sends join_chunks
    join_chunks task (claims the generation's join: stage chunks → joining)
        chunk files ─► one MP4 (packets copied, audio muxed once) ─► COMPLETED + webhook outbox

The database stays the truth: chunk rows carry their own claim, heartbeat and attempts, and
the generation keeps its planner's claim (`worker_id == run`) until the join finishes it, so
`finish` runs once. Chunk workers beat the generation too; the reaper (`reap_chunks`)
re-sends chunks whose worker died, chunk messages that were lost and a lost join.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from openlipsync.jobs import dispatch
from openlipsync.jobs.claims import claimable, claimed_values, heartbeat_stale, held
from openlipsync.jobs.generation import (
    CODE_TOO_MANY_ATTEMPTS,
    WORKDIR_PREFIX,
    Finished,
    Heartbeat,
    finish,
    worker_token,
)
from openlipsync.settings import Settings
from openlipsync.store.files import Storage, discard
from openlipsync.store.models import SPLIT_STAGES, Generation, GenerationChunk, utcnow

log = logging.getLogger(__name__)

CHUNK_STAGE, JOIN_STAGE = SPLIT_STAGES
PLAN_NAME = "plan.npz"
SOUND_NAME = "plan.sound.npy"  # engine.chunks.sound_path(PLAN_NAME): read by the join only
TRACK_NAME = "plan.track.npy"  # engine.chunks.track_path(PLAN_NAME): read by chunks only
CODE_STORAGE = "generation_storage_error"
UNSENT_GRACE_SECONDS = 10.0


def wanted(settings: Settings, request: Any, has_speech_file: bool) -> bool:
    """Split when chunking is on and the output will last at least `chunk_min_seconds`.

    Segment outputs and synthesized speech (both stored beside the output by the single-pass
    path) stay single-pass."""
    if settings.chunk_seconds <= 0 or request.segments or has_speech_file:
        return False
    from openlipsync.engine.chunks import expected_seconds

    return expected_seconds(request) >= max(settings.chunk_min_seconds, settings.chunk_seconds)


def _source_key(work_key: str) -> str:
    """The source video beside the plan (media is recognised by content, not by name)."""
    return f"{work_key}/source"


def _work_keys(work_key: str) -> list[str]:
    """The plan, the source, the plan's sound and track: what chunks and the join read."""
    names = (PLAN_NAME, SOUND_NAME, TRACK_NAME)
    plan, sound, track = (f"{work_key}/{name}" for name in names)
    return [plan, _source_key(work_key), sound, track]


def chunk_key(work_key: str, index: int) -> str:
    """One fixed key per chunk: a re-run overwrites it with the same frames, never adds one."""
    return f"{work_key}/chunk-{index:04d}.mp4"


def hand_off(
    generation_id: str,
    token: str,
    request: Any,
    sessions: sessionmaker[Session],
    storage: Storage,
    settings: Settings,
    beat: Heartbeat,
) -> bool:
    """Plan the whole clip, publish the plan and the chunk rows; False if the claim was lost.

    Engine and storage errors propagate to the caller, which fails the generation."""
    from openlipsync.engine.chunks import chunk_bounds, sound_path, track_path, write_plan

    plan_path = request.output.parent / PLAN_NAME
    summary = write_plan(request, plan_path, beat.progress, beat.should_cancel)
    bounds = chunk_bounds(summary.frame_count, summary.fps, settings.chunk_seconds)
    work_key = f"generations/{generation_id}/chunks-{uuid.uuid4().hex[:8]}"
    keys = _work_keys(work_key)
    try:
        paths = (plan_path, request.video, sound_path(plan_path), track_path(plan_path))
        for key, path in zip(keys, paths, strict=True):
            storage.put_file(key, path)
    except Exception as exc:
        discard(storage, keys)
        from openlipsync.jobs.inputs import InputError

        raise InputError(CODE_STORAGE, f"cannot store the render plan: {exc}") from exc
    beat.progress(CHUNK_STAGE, 0.5)
    with sessions() as session:
        taken = session.execute(
            update(Generation)
            .where(held(Generation, generation_id, token))
            .values(stage=CHUNK_STAGE, heartbeat_at=utcnow(), progress=50.0, updated_at=utcnow())
        )
        if taken.rowcount != 1:
            session.rollback()
            discard(storage, keys)
            return False
        rows = [
            GenerationChunk(
                generation_id=generation_id,
                run=token,
                index=index,
                start_frame=start,
                stop_frame=stop,
                work_key=work_key,
            )
            for index, (start, stop) in enumerate(bounds)
        ]
        session.add_all(rows)
        session.commit()
        ids = [row.id for row in rows]
    for chunk_id in ids:
        send_chunk(sessions, chunk_id)
    log.info("generation %s: %d chunks of %s", generation_id, len(ids), bounds)
    return True


def send_chunk(sessions: sessionmaker[Session], chunk_id: str) -> None:
    """Publish a chunk and note when, so the reaper can tell sent from never sent."""
    if not dispatch.send_render_chunk(chunk_id):
        return
    try:
        with sessions() as session:
            session.execute(
                update(GenerationChunk)
                .where(GenerationChunk.id == chunk_id)
                .values(sent_at=utcnow(), updated_at=utcnow())
            )
            session.commit()
    except SQLAlchemyError as exc:  # only costs one extra, harmless re-send
        log.warning("could not mark chunk %s sent: %s", chunk_id, exc)


# -- one chunk --------------------------------------------------------------------------------


def claim_chunk(session: Session, chunk_id: str, token: str, settings: Settings) -> bool:
    """PENDING → PROCESSING, or take over a chunk whose worker stopped beating."""
    result = session.execute(
        update(GenerationChunk)
        .where(claimable(GenerationChunk, chunk_id, settings))
        .values(**claimed_values(GenerationChunk, token))
    )
    session.commit()
    return result.rowcount == 1


class ChunkBeat:
    """Keeps the chunk and its generation alive while rendering; notices a lost claim or a
    generation that ended (failed elsewhere, timed out, deleted) and asks the engine to stop."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        chunk: GenerationChunk,
        token: str,
        settings: Settings,
    ) -> None:
        self.sessions, self.chunk, self.token = sessions, chunk, token
        self.interval = min(1.0, settings.job_heartbeat_seconds)
        self.every = settings.job_heartbeat_seconds
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chunk-heartbeat", daemon=True)

    def __enter__(self) -> ChunkBeat:
        self._beat()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def should_cancel(self) -> bool:
        return self.lost.is_set()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self._beat()

    def _beat(self) -> None:
        now = utcnow()
        try:
            with self.sessions() as session:
                mine = session.execute(
                    update(GenerationChunk)
                    .where(held(GenerationChunk, self.chunk.id, self.token))
                    .values(heartbeat_at=now)
                )
                parent = session.execute(
                    update(Generation)
                    .where(
                        held(Generation, self.chunk.generation_id, self.chunk.run),
                        Generation.stage == CHUNK_STAGE,
                    )
                    .values(heartbeat_at=now)
                )
                session.commit()
                if mine.rowcount == 0 or parent.rowcount == 0:
                    self.lost.set()
        except Exception as exc:  # a busy database must not kill the render; retry next beat
            log.warning("heartbeat for chunk %s failed: %s", self.chunk.id, exc)


@dataclass
class ChunkDone:
    status: str  # DONE | FAILED
    finished: Finished | None = None  # the generation, when this chunk's failure ended it


def run_chunk(
    chunk_id: str, sessions: sessionmaker[Session], storage: Storage, settings: Settings
) -> ChunkDone | None:
    """Render one chunk if it is ours to render; None when there was nothing to do."""
    token = worker_token()
    with sessions() as session:
        if not claim_chunk(session, chunk_id, token, settings):
            return _chunk_not_claimed(session, chunk_id, storage, settings)
        chunk = session.get(GenerationChunk, chunk_id)
        assert chunk is not None
        session.expunge(chunk)
    workdir = Path(tempfile.mkdtemp(prefix=f"{WORKDIR_PREFIX}{chunk.generation_id[:8]}-c-"))
    try:
        with ChunkBeat(sessions, chunk, token, settings) as beat:
            status, fields = _render(chunk, storage, workdir, beat)
        if beat.lost.is_set():
            return None
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    with sessions() as session:
        updated = session.execute(
            update(GenerationChunk)
            .where(held(GenerationChunk, chunk_id, token))
            .values(status=status, updated_at=utcnow(), **fields)
        )
        session.commit()
        if updated.rowcount != 1:
            return None
        if status == "FAILED":
            message = f"chunk {chunk.index} (frames {chunk.start_frame}-{chunk.stop_frame - 1}): "
            done = finish(
                session,
                chunk.generation_id,
                "FAILED",
                storage,
                settings,
                token=chunk.run,
                error=message + str(fields.get("error")),
                error_code=fields.get("error_code"),
            )
            return ChunkDone(status, done)
        if _all_done(session, chunk):
            dispatch.send_join(chunk.generation_id)
    return ChunkDone(status)


def _render(
    chunk: GenerationChunk, storage: Storage, workdir: Path, beat: ChunkBeat
) -> tuple[str, dict[str, Any]]:
    """(DONE | FAILED, column values): every failure becomes a precise error_code."""
    from openlipsync.engine import EngineError
    from openlipsync.engine.chunks import load_plan, render_chunk

    plan_key = f"{chunk.work_key}/{PLAN_NAME}"
    try:
        plan_path = storage.download(plan_key, workdir / PLAN_NAME)
        storage.download(f"{chunk.work_key}/{TRACK_NAME}", workdir / TRACK_NAME)
        source = storage.download(_source_key(chunk.work_key), workdir / "source")
    except Exception as exc:
        return "FAILED", {
            "error": f"the render plan is unavailable: {exc}",
            "error_code": CODE_STORAGE,
        }
    try:
        plan = load_plan(plan_path)
        out = workdir / "chunk.mp4"
        render_chunk(
            plan, source, chunk.start_frame, chunk.stop_frame, out, should_cancel=beat.should_cancel
        )
    except EngineError as exc:
        return "FAILED", {"error": exc.message, "error_code": exc.code}
    except SQLAlchemyError:
        raise
    except Exception as exc:
        log.exception("chunk %s crashed", chunk.id)
        return "FAILED", {
            "error": f"internal error: {type(exc).__name__}: {exc}",
            "error_code": "generation_pipeline_failed",
        }
    key = chunk_key(chunk.work_key, chunk.index)
    try:
        storage.put_file(key, out)
    except Exception as exc:
        return "FAILED", {"error": f"cannot store the chunk: {exc}", "error_code": CODE_STORAGE}
    return "DONE", {"output_key": key, "error": None, "error_code": None}


def _all_done(session: Session, chunk: GenerationChunk) -> bool:
    """Every chunk of this run is DONE: the caller sends the join (duplicates are harmless)."""
    counts = dict(
        session.execute(
            select(GenerationChunk.status, func.count())
            .where(
                GenerationChunk.generation_id == chunk.generation_id,
                GenerationChunk.run == chunk.run,
            )
            .group_by(GenerationChunk.status)
        ).all()
    )
    done, total = counts.get("DONE", 0), sum(counts.values())
    session.execute(
        update(Generation)
        .where(held(Generation, chunk.generation_id, chunk.run), Generation.stage == CHUNK_STAGE)
        .values(progress=round(50.0 + 50.0 * done / max(total, 1), 1), updated_at=utcnow())
    )
    session.commit()
    return done == total


def _chunk_not_claimed(
    session: Session, chunk_id: str, storage: Storage, settings: Settings
) -> ChunkDone | None:
    """A chunk out of attempts whose last worker died ends its generation FAILED."""
    chunk = session.get(GenerationChunk, chunk_id)
    if chunk is None or chunk.status not in ("PENDING", "PROCESSING"):
        return None
    if chunk.attempts < settings.job_max_attempts:
        return None
    if not heartbeat_stale(chunk.worker_id, chunk.heartbeat_at, settings):
        return None
    return ChunkDone("FAILED", _fail_exhausted(session, chunk, storage, settings))


def _fail_exhausted(
    session: Session, chunk: GenerationChunk, storage: Storage, settings: Settings
) -> Finished | None:
    return finish(
        session,
        chunk.generation_id,
        "FAILED",
        storage,
        settings,
        token=chunk.run,
        error=(
            f"rendering chunk {chunk.index} stopped unexpectedly "
            f"{settings.job_max_attempts} times; giving up"
        ),
        error_code=CODE_TOO_MANY_ATTEMPTS,
    )


# -- the join ---------------------------------------------------------------------------------


def run_join(
    generation_id: str, sessions: sessionmaker[Session], storage: Storage, settings: Settings
) -> Finished | None:
    """Join the chunks of a generation whose chunks are all DONE; None when not (yet) ours."""
    with sessions() as session:
        generation = session.get(Generation, generation_id)
        if generation is None or generation.status != "PROCESSING":
            return None
        if generation.stage != CHUNK_STAGE or generation.worker_id is None:
            return None
        run = generation.worker_id
        chunks = _chunks_of(session, generation_id, run)
        if not chunks or any(chunk.status != "DONE" for chunk in chunks):
            return None
        taken = session.execute(
            update(Generation)
            .where(held(Generation, generation_id, run), Generation.stage == CHUNK_STAGE)
            .values(stage=JOIN_STAGE, heartbeat_at=utcnow(), updated_at=utcnow())
        )
        session.commit()
        if taken.rowcount != 1:
            return None
    workdir = Path(tempfile.mkdtemp(prefix=f"{WORKDIR_PREFIX}{generation_id[:8]}-j-"))
    try:
        with Heartbeat(sessions, generation_id, run, settings) as beat:
            beat.progress(JOIN_STAGE, 1.0)
            status, fields = _join(generation_id, chunks, storage, workdir)
        if beat.lost.is_set():
            discard(storage, [fields.get("output_key")])
            return None
        with sessions() as session:
            done = finish(session, generation_id, status, storage, settings, token=run, **fields)
        if done is None:
            discard(storage, [fields.get("output_key")])
            return None
        return done  # finish swept the plan, the source copy and the chunk files
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _chunks_of(session: Session, generation_id: str, run: str) -> list[GenerationChunk]:
    rows = session.scalars(
        select(GenerationChunk)
        .where(GenerationChunk.generation_id == generation_id, GenerationChunk.run == run)
        .order_by(GenerationChunk.index)
    ).all()
    for row in rows:
        session.expunge(row)
    return list(rows)


def _join(
    generation_id: str, chunks: list[GenerationChunk], storage: Storage, workdir: Path
) -> tuple[str, dict[str, Any]]:
    from openlipsync.engine import EngineError
    from openlipsync.engine.chunks import join, load_plan

    work_key = chunks[0].work_key
    try:
        plan_path = storage.download(f"{work_key}/{PLAN_NAME}", workdir / PLAN_NAME)
        storage.download(f"{work_key}/{SOUND_NAME}", workdir / SOUND_NAME)
        parts = [
            storage.download(chunk.output_key or "", workdir / f"chunk-{chunk.index:04d}.mp4")
            for chunk in chunks
        ]
    except Exception as exc:
        return "FAILED", {"error": f"a chunk is unavailable: {exc}", "error_code": CODE_STORAGE}
    try:
        result = join(load_plan(plan_path, sound=True), parts, workdir / "output.mp4")
    except EngineError as exc:
        return "FAILED", {"error": exc.message, "error_code": exc.code}
    except Exception as exc:
        log.exception("joining generation %s crashed", generation_id)
        return "FAILED", {
            "error": f"internal error: {type(exc).__name__}: {exc}",
            "error_code": "generation_pipeline_failed",
        }
    key = f"generations/{generation_id}/{uuid.uuid4().hex[:8]}/output.mp4"
    try:
        storage.put_file(key, result.output)
    except Exception as exc:
        discard(storage, [key])
        return "FAILED", {"error": f"cannot store the output: {exc}", "error_code": CODE_STORAGE}
    return "COMPLETED", {"output_key": key, "output_duration": round(float(result.duration), 3)}


# -- the reaper's part ------------------------------------------------------------------------


@dataclass
class ChunkReport:
    resumed: int = 0
    resent: int = 0
    joins: int = 0
    exhausted: list[Finished] | None = None


def reap_chunks(
    session: Session, sessions: sessionmaker[Session], storage: Storage, settings: Settings
) -> ChunkReport:
    """Stale chunks are released and re-sent (or end the generation after N attempts), lost
    chunk messages are re-sent, and a lost or abandoned join is sent again."""
    report = ChunkReport(exhausted=[])
    stale = utcnow() - timedelta(seconds=settings.job_stale_seconds)
    live = and_(
        Generation.id == GenerationChunk.generation_id,
        Generation.status == "PROCESSING",
        Generation.worker_id == GenerationChunk.run,
    )
    dead = session.scalars(
        select(GenerationChunk).where(
            GenerationChunk.status == "PROCESSING",
            or_(GenerationChunk.heartbeat_at.is_(None), GenerationChunk.heartbeat_at < stale),
            select(Generation.id).where(live).exists(),
        )
    ).all()
    for chunk in dead:
        if chunk.attempts >= settings.job_max_attempts:
            done = _fail_exhausted(session, chunk, storage, settings)
            if done is not None:
                report.exhausted.append(done)
            continue
        released = session.execute(
            update(GenerationChunk)
            .where(
                GenerationChunk.id == chunk.id,
                GenerationChunk.status == "PROCESSING",
                or_(GenerationChunk.heartbeat_at.is_(None), GenerationChunk.heartbeat_at < stale),
            )
            .values(worker_id=None, heartbeat_at=utcnow(), updated_at=utcnow())
            .execution_options(synchronize_session=False)  # rows loaded above: SQLite is naive
        )
        session.commit()
        if released.rowcount == 1:
            send_chunk(sessions, chunk.id)
            report.resumed += 1
    report.resent = _resend_unsent(session, sessions, settings, live)
    report.joins = _resend_joins(session, stale)
    return report


def _resend_unsent(
    session: Session, sessions: sessionmaker[Session], settings: Settings, live: Any
) -> int:
    never_sent = and_(
        GenerationChunk.sent_at.is_(None),
        GenerationChunk.created_at < utcnow() - timedelta(seconds=UNSENT_GRACE_SECONDS),
    )
    long_waiting = GenerationChunk.sent_at < utcnow() - timedelta(
        seconds=settings.job_requeue_seconds
    )
    ids = session.scalars(
        select(GenerationChunk.id).where(
            GenerationChunk.status == "PENDING",
            or_(never_sent, long_waiting),
            select(Generation.id).where(live).exists(),
        )
    ).all()
    for chunk_id in ids:
        send_chunk(sessions, chunk_id)
    return len(ids)


def _resend_joins(session: Session, stale: Any) -> int:
    """All chunks DONE but no join running: the join message was lost or its worker died."""
    rows = session.execute(
        select(Generation.id, Generation.stage, Generation.worker_id).where(
            Generation.status == "PROCESSING",
            Generation.stage.in_((CHUNK_STAGE, JOIN_STAGE)),
            or_(Generation.heartbeat_at.is_(None), Generation.heartbeat_at < stale),
        )
    ).all()
    sent = 0
    for generation_id, stage, run in rows:
        pending = session.scalar(
            select(func.count()).where(
                GenerationChunk.generation_id == generation_id,
                GenerationChunk.run == run,
                GenerationChunk.status != "DONE",
            )
        )
        if pending:
            continue
        session.execute(
            update(Generation)
            .where(Generation.id == generation_id, Generation.stage == stage)
            .values(stage=CHUNK_STAGE, heartbeat_at=utcnow(), updated_at=utcnow())
        )
        session.commit()
        dispatch.send_join(generation_id)
        sent += 1
    return sent
