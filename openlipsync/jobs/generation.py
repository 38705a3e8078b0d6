"""Run one generation: claim it, fetch inputs, call the engine, store the output, finish it.

Brokers deliver at least once and workers die, so every step is guarded by the database:
a claim is a compare-and-set that bumps `attempts` and stamps a unique `worker_id`; the terminal
transition only succeeds for the holder of that claim, so a duplicate or resurrected run can
neither finish a generation twice nor leave a second output behind.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import or_, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from openlipsync.jobs import webhooks
from openlipsync.jobs.claims import claimable, claimed_values, heartbeat_stale, held
from openlipsync.jobs.inputs import InputError, LocalInputs, fetch_inputs, plan_inputs
from openlipsync.settings import Settings
from openlipsync.store.db import is_unavailable
from openlipsync.store.files import Storage, discard
from openlipsync.store.models import SPLIT_STAGES, Asset, Generation, utcnow

log = logging.getLogger(__name__)

TERMINAL = ("COMPLETED", "FAILED", "REJECTED")
CODE_TOO_MANY_ATTEMPTS = "generation_pipeline_failed"
CODE_TIMEOUT = "generation_timeout"
HANDED_OFF = "HANDED_OFF"  # planned and split into chunks: the join finishes it (jobs/chunks.py)
WORKDIR_PREFIX = "olps-job-"
FINISH_RETRY_SECONDS = 0.5


@dataclass
class Finished:
    """What the caller must do after the commit: notify webhooks, update the batch."""

    status: str
    delivery_id: str | None
    batch_id: str | None


def worker_token() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def claim(session: Session, generation_id: str, token: str, settings: Settings) -> bool:
    """PENDING → PROCESSING, or take over an orphaned PROCESSING row; False if not ours to run."""
    # Split into chunks: alive while its chunks are (jobs/chunks.py reaps them).
    unsplit = or_(Generation.stage.is_(None), Generation.stage.not_in(SPLIT_STAGES))
    result = session.execute(
        update(Generation)
        .where(claimable(Generation, generation_id, settings, unsplit))
        .values(**claimed_values(Generation, token), stage="starting", progress=0.0)
    )
    session.commit()
    return result.rowcount == 1


def finish(
    session: Session,
    generation_id: str,
    status: str,
    storage: Storage,
    settings: Settings,
    *,
    token: str | None,
    **fields: Any,
) -> Finished | None:
    """Move a non-terminal generation to COMPLETED/FAILED and queue its webhook, atomically.

    With a `token` only the claim holder may finish; None finishes any non-terminal row (reaper).
    """
    now = utcnow()
    conditions = [Generation.id == generation_id, Generation.status.not_in(TERMINAL)]
    if token is not None:
        conditions.append(held(Generation, generation_id, token))
    values = {"status": status, "finished_at": now, "updated_at": now, **fields}
    if status == "COMPLETED":
        values.update(progress=100.0, stage="done")
    result = session.execute(update(Generation).where(*conditions).values(**values))
    if result.rowcount != 1:
        session.rollback()
        return None
    generation = session.get(Generation, generation_id)
    assert generation is not None
    session.refresh(generation)
    if generation.synthesized_audio_key and status == "COMPLETED":
        session.add(_speech_asset(generation, now))
    _sweep_orphans(storage, generation)  # before the commit: whoever sees the end sees no orphans
    delivery_id = None
    if generation.webhook_url:
        delivery = webhooks.record(
            session,
            organization_id=generation.organization_id,
            url=generation.webhook_url,
            payload=notification(generation, storage, settings),
            generation_id=generation.id,
        )
        delivery_id = delivery.id
    session.commit()
    return Finished(status, delivery_id, generation.batch_id)


def _sweep_orphans(storage: Storage, generation: Generation) -> None:
    """Delete what runs that died before finishing left under the generation's folder.

    A worker killed after storing its output but before finishing the row leaves a file nobody
    references; retention only removes referenced keys, so it would stay forever.
    """
    kept = {generation.output_key, generation.segment_output_key, generation.synthesized_audio_key}
    try:
        orphans = [k for k in storage.keys(f"generations/{generation.id}") if k not in kept]
    except Exception as exc:
        log.warning("could not list the files of %s: %s", generation.id, exc)
        return
    discard(storage, orphans)


def _speech_asset(generation: Generation, now: datetime) -> Asset:
    """The speech a text input was turned into joins the media library (inputType TTS)."""
    key = generation.synthesized_audio_key
    assert key is not None
    return Asset(
        organization_id=generation.organization_id,
        created_at=now,
        updated_at=now,
        type="AUDIO",
        input_type="TTS",
        name=f"speech-{generation.id}{Path(key).suffix}",
        storage_key=key,
        format=Path(key).suffix.lstrip(".") or None,
    )


def notification(generation: Generation, storage: Storage, settings: Settings) -> dict[str, Any]:
    """The webhook body: the GET representation at this moment, minus `segments` (§15.1)."""
    from openlipsync.api.schemas import generation_json

    body = generation_json(generation, storage, settings)
    body.pop("segments", None)
    return body


class Heartbeat:
    """Writes progress and a heartbeat while the engine runs; notices deletion and lost claims.

    A thread rather than the progress callback, because an engine stage may run a long time
    between callbacks and a silent worker must not look dead.
    """

    def __init__(
        self, sessions: sessionmaker[Session], generation_id: str, token: str, settings: Settings
    ) -> None:
        self.sessions, self.generation_id, self.token = sessions, generation_id, token
        self.interval = settings.job_heartbeat_seconds
        self.deadline = time.monotonic() + settings.generation_timeout_seconds
        self.stage, self.fraction = "starting", 0.0
        self.lost = threading.Event()
        self._dirty = True
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def progress(self, stage: str, fraction: float) -> None:
        if stage != self.stage or abs(fraction - self.fraction) >= 0.01:
            self._dirty = True
        self.stage, self.fraction = stage, fraction

    def should_cancel(self) -> bool:
        return self.lost.is_set() or self.timed_out()

    def timed_out(self) -> bool:
        return time.monotonic() > self.deadline

    def _run(self) -> None:
        last = 0.0
        while not self._stop.wait(min(1.0, self.interval)):
            if self._dirty or time.monotonic() - last >= self.interval:
                self._beat()
                last = time.monotonic()

    def _beat(self) -> None:
        self._dirty = False
        try:
            with self.sessions() as session:
                result = session.execute(
                    update(Generation)
                    .where(held(Generation, self.generation_id, self.token))
                    .values(
                        heartbeat_at=utcnow(),
                        stage=self.stage[:32],
                        progress=round(min(max(self.fraction, 0.0), 1.0) * 100, 1),
                    )
                )
                session.commit()
                if result.rowcount == 0:
                    self.lost.set()  # deleted, or another worker took it over
        except Exception as exc:  # a busy database must not kill the run; retry next beat
            log.warning("heartbeat for %s failed: %s", self.generation_id, exc)


def run_generation(
    generation_id: str, sessions: sessionmaker[Session], storage: Storage, settings: Settings
) -> Finished | None:
    """Process one generation if it is ours to process; None when there was nothing to do."""
    token = worker_token()
    with sessions() as session:
        if not claim(session, generation_id, token, settings):
            return _not_claimed(session, generation_id, storage, settings)
    workdir = Path(tempfile.mkdtemp(prefix=f"{WORKDIR_PREFIX}{generation_id[:8]}-"))
    try:
        with Heartbeat(sessions, generation_id, token, settings) as beat:
            status, fields = _process(generation_id, sessions, storage, settings, workdir, beat)
        if beat.lost.is_set():
            _discard_outputs(storage, fields)
            return None
        if status == HANDED_OFF:
            return None
        try:
            done = _finish_when_reachable(
                sessions, generation_id, status, storage, settings, token, fields
            )
        except Exception:
            _discard_outputs(storage, fields)  # the rerun the reaper starts writes its own
            raise
        if done is None:
            _discard_outputs(storage, fields)
        return done
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _finish_when_reachable(
    sessions: sessionmaker[Session],
    generation_id: str,
    status: str,
    storage: Storage,
    settings: Settings,
    token: str,
    fields: dict[str, Any],
) -> Finished | None:
    """`finish`, retried through a short database outage so a finished render is not thrown away.

    Gives up once the claim may have gone stale (another worker may take the row over then).
    """
    deadline = time.monotonic() + settings.job_stale_seconds
    while True:
        try:
            with sessions() as session:
                return finish(
                    session, generation_id, status, storage, settings, token=token, **fields
                )
        except Exception as exc:
            if not is_unavailable(exc) or time.monotonic() > deadline:
                raise
            log.warning("database unavailable while finishing %s: %s", generation_id, exc)
            time.sleep(FINISH_RETRY_SECONDS)


def _not_claimed(
    session: Session, generation_id: str, storage: Storage, settings: Settings
) -> Finished | None:
    """A claim fails when the row is finished, running elsewhere, gone, or out of attempts."""
    generation = session.get(Generation, generation_id)
    if generation is None or generation.status in TERMINAL:
        return None
    if generation.attempts >= settings.job_max_attempts and _orphaned(generation, settings):
        return fail_exhausted(session, generation_id, storage, settings)
    return None


def _orphaned(generation: Generation, settings: Settings) -> bool:
    if generation.status == "PENDING":
        return True
    return heartbeat_stale(generation.worker_id, generation.heartbeat_at, settings)


def fail_exhausted(
    session: Session, generation_id: str, storage: Storage, settings: Settings
) -> Finished | None:
    return finish(
        session,
        generation_id,
        "FAILED",
        storage,
        settings,
        token=None,
        error=(
            f"processing stopped unexpectedly {settings.job_max_attempts} times"
            f"{_last_stage(session, generation_id)}; giving up (an input that crashes the engine?)"
        ),
        error_code=CODE_TOO_MANY_ATTEMPTS,
    )


def _last_stage(session: Session, generation_id: str) -> str:
    """Where the last attempt was when it died, for the error message (best effort)."""
    generation = session.get(Generation, generation_id)
    stage = generation.stage if generation is not None else None
    if not stage or stage in ("queued", "requeued", "starting"):
        return ""
    return f" (last seen at stage '{stage}')"


def fail_timed_out(
    session: Session, generation_id: str, storage: Storage, settings: Settings
) -> Finished | None:
    limit = settings.generation_timeout_seconds
    return finish(
        session,
        generation_id,
        "FAILED",
        storage,
        settings,
        token=None,
        error=f"processing took longer than {limit:g} s",
        error_code=CODE_TIMEOUT,
    )


def _process(
    generation_id: str,
    sessions: sessionmaker[Session],
    storage: Storage,
    settings: Settings,
    workdir: Path,
    beat: Heartbeat,
) -> tuple[str, dict[str, Any]]:
    """(terminal status, column values); every failure becomes FAILED with a precise code."""
    from openlipsync.engine import EngineError
    from openlipsync.engine.errors import Cancelled

    try:
        beat.progress("fetching", 0.0)
        with sessions() as session:
            generation = session.get(Generation, generation_id)
            if generation is None:
                beat.lost.set()
                return "FAILED", {}
            plan = plan_inputs(session, generation)
            session.expunge(generation)
        inputs = fetch_inputs(plan, workdir, storage, settings)
        if beat.should_cancel():
            raise Cancelled("stopped before the engine started")
        request = _engine_request(generation, inputs, workdir)
        if _split(request, inputs, settings):
            from openlipsync.jobs.chunks import hand_off

            if hand_off(generation_id, beat.token, request, sessions, storage, settings, beat):
                return HANDED_OFF, {}
            beat.lost.set()  # claimed by another run meanwhile
            return "FAILED", {}
        result = _run_engine(request, beat)
        beat.progress("uploading", 1.0)
        fields = _store_outputs(generation, inputs, result, storage)
        return "COMPLETED", fields
    except InputError as exc:
        return "FAILED", {"error": exc.message, "error_code": exc.code}
    except Cancelled as exc:
        if beat.timed_out():
            limit = settings.generation_timeout_seconds
            return "FAILED", {
                "error": f"processing took longer than {limit:g} s",
                "error_code": CODE_TIMEOUT,
            }
        return "FAILED", {"error": exc.message, "error_code": exc.code}
    except EngineError as exc:
        return "FAILED", {"error": exc.message, "error_code": exc.code}
    except SQLAlchemyError:
        raise  # the database is unwell, not the job: the reaper resumes it once it recovers
    except Exception as exc:
        log.exception("generation %s crashed", generation_id)
        return "FAILED", {
            "error": f"internal error: {type(exc).__name__}: {exc}",
            "error_code": "generation_pipeline_failed",
        }


def _split(request: Any, inputs: LocalInputs, settings: Settings) -> bool:
    from openlipsync.jobs.chunks import wanted

    return wanted(settings, request, inputs.synthesized_audio is not None)


def _run_engine(request: Any, beat: Heartbeat):  # type: ignore[no-untyped-def]
    from openlipsync.engine import generate

    return generate(request, progress=beat.progress, should_cancel=beat.should_cancel)


def _engine_request(generation: Generation, inputs: LocalInputs, workdir: Path) -> Any:
    from openlipsync.engine import GenerateRequest
    from openlipsync.engine.request import DEFAULT_SYNC_MODE

    options = dict(generation.options or {})
    temperature = options.get("temperature")
    return GenerateRequest(
        video=inputs.video,
        audio=inputs.audio,
        output=workdir / "output.mp4",
        sync_mode=options.get("sync_mode") or DEFAULT_SYNC_MODE,
        temperature=0.5 if temperature is None else float(temperature),
        model=generation.model,
        options=options,
        phonemes=inputs.phonemes,
        transcript=_transcript(generation),
        segments=inputs.segments,
        segment_output=workdir / "segments.mp4" if inputs.segments else None,
    )


def _transcript(generation: Generation) -> str | None:
    """The audio input's `transcript` (an openlipsync extension): phone-exact mouth shapes."""
    audio = next((i for i in generation.input or [] if i.get("type") == "audio"), None)
    return audio.get("transcript") if audio else None


def _store_outputs(
    generation: Generation,
    inputs: LocalInputs,
    result: Any,
    storage: Storage,
) -> dict[str, Any]:
    # A fresh key per run: a duplicate run never overwrites the output a client may be reading.
    prefix = f"generations/{generation.id}/{uuid.uuid4().hex[:8]}"
    fields: dict[str, Any] = {"output_key": f"{prefix}/output.mp4"}
    try:
        storage.put_file(fields["output_key"], Path(result.output))
        if result.segment_output is not None:  # spec §8: the segment parts alone
            fields["segment_output_key"] = f"{prefix}/segments.mp4"
            storage.put_file(fields["segment_output_key"], Path(result.segment_output))
        if inputs.synthesized_audio is not None:
            fields["synthesized_audio_key"] = f"{prefix}/speech{inputs.synthesized_audio.suffix}"
            storage.put_file(fields["synthesized_audio_key"], inputs.synthesized_audio)
    except Exception as exc:
        discard(storage, fields.values())
        raise InputError("generation_storage_error", f"cannot store the output: {exc}") from exc
    fields["output_duration"] = round(float(result.duration), 3)
    return fields


def _discard_outputs(storage: Storage, fields: dict[str, Any]) -> None:
    discard(storage, [fields.get("output_key"), fields.get("segment_output_key")])
