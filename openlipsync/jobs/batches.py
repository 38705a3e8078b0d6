"""Batches: expand the uploaded JSONL into generations, then close the batch when all finish.

PENDING → JOBS_CREATED (one generation per line, inserted with the status change in one
transaction, so a re-delivered expansion cannot create the lines twice) → PROCESSING (all
queued) → COMPLETED once every generation is terminal, with a results JSONL (§13.3) and the
batch webhook. FAILED means the batch itself is unusable (its lines file is gone or unreadable).
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from openlipsync.jobs import webhooks
from openlipsync.settings import Settings
from openlipsync.store.files import Storage
from openlipsync.store.models import Batch, Generation, utcnow

log = logging.getLogger(__name__)

TERMINAL = ("COMPLETED", "FAILED", "REJECTED")


def parse_lines(data: bytes) -> list[dict[str, Any]]:
    """The JSONL records; blank lines are skipped (the API validated the file at upload)."""
    records = []
    for number, raw in enumerate(data.decode("utf-8").splitlines(), start=1):
        if not raw.strip():
            continue
        record = json.loads(raw)
        if not isinstance(record, dict):
            raise ValueError(f"line {number} is not a JSON object")
        records.append(record)
    return records


def _generation_for(batch: Batch, record: dict[str, Any]) -> Generation:
    """A PENDING generation for a valid line, or an already FAILED one explaining the problem."""
    from openlipsync.api.errors import ApiError
    from openlipsync.api.validation import validate_generation

    payload = record.get("payload")
    common = {
        "organization_id": batch.organization_id,
        "batch_id": batch.id,
        "request_id": str(record.get("request_id", ""))[:255] or None,
    }
    try:
        body = validate_generation(payload)
    except ApiError as exc:
        raw = payload if isinstance(payload, dict) else {}
        model = raw.get("model")
        raw_input = raw.get("input")
        return Generation(
            **common,
            status="FAILED",
            model=model[:64] if isinstance(model, str) else "lipsync-2",
            input=raw_input if isinstance(raw_input, list) else [],
            options={},
            error=_message(exc),
            error_code=getattr(exc, "error_code", None) or "generation_input_validation_failed",
            finished_at=utcnow(),
        )
    return Generation(
        **common,
        model=body["model"],
        input=body["input"],
        options=body["options"] or {},
        segments=body["segments"],
        webhook_url=body["webhookUrl"] or None,
        output_file_name=body["outputFileName"],
    )


def _message(exc: Exception) -> str:
    message = getattr(exc, "message", None) or str(exc)
    return "; ".join(message) if isinstance(message, list) else str(message)


@dataclass
class Expansion:
    queue: list[str] = field(default_factory=list)  # generation ids still to be queued
    delivery_id: str | None = None  # the webhook of a batch that failed outright


def expand(session: Session, batch_id: str, storage: Storage, settings: Settings) -> Expansion:
    """Create the batch's generations once and list the ones that still need queueing."""
    batch = session.get(Batch, batch_id)
    if batch is None:
        return Expansion()
    if batch.status == "PENDING":
        try:
            records = parse_lines(_read(storage, batch.lines_key))
        except Exception as exc:
            message = f"cannot read the batch file: {exc}"
            return Expansion(delivery_id=_fail_batch(session, batch, storage, settings, message))
        claimed = session.execute(
            update(Batch)
            .where(Batch.id == batch_id, Batch.status == "PENDING")
            .values(status="JOBS_CREATED", total=len(records))
        )
        if claimed.rowcount != 1:
            session.rollback()
            return Expansion()
        session.add_all(_generation_for(batch, record) for record in records)
        session.commit()
    elif batch.status != "JOBS_CREATED":
        return Expansion()
    return Expansion(
        queue=list(
            session.scalars(
                select(Generation.id).where(
                    Generation.batch_id == batch_id, Generation.status == "PENDING"
                )
            )
        )
    )


def mark_processing(session: Session, batch_id: str) -> None:
    session.execute(
        update(Batch)
        .where(Batch.id == batch_id, Batch.status == "JOBS_CREATED")
        .values(status="PROCESSING")
    )
    session.commit()


def _read(storage: Storage, key: str | None) -> bytes:
    if not key:
        raise ValueError("the batch has no lines file")
    with tempfile.TemporaryDirectory() as tmp:
        return storage.download(key, Path(tmp) / "lines.jsonl").read_bytes()


def _fail_batch(
    session: Session, batch: Batch, storage: Storage, settings: Settings, message: str
) -> str | None:
    log.warning("batch %s failed: %s", batch.id, message)
    failed = session.execute(
        update(Batch).where(Batch.id == batch.id, Batch.status == "PENDING").values(status="FAILED")
    )
    if failed.rowcount != 1:
        session.rollback()
        return None
    session.refresh(batch)
    delivery_id = _record_webhook(session, batch, storage, settings)
    session.commit()
    return delivery_id


def _record_webhook(
    session: Session, batch: Batch, storage: Storage, settings: Settings
) -> str | None:
    if not batch.webhook_url:
        return None
    from openlipsync.api.schemas import batch_json

    delivery = webhooks.record(
        session,
        organization_id=batch.organization_id,
        url=batch.webhook_url,
        payload=batch_json(batch, metrics(session, batch), storage, settings),
        batch_id=batch.id,
    )
    return delivery.id


def metrics(session: Session, batch: Batch) -> dict[str, int]:
    counts = dict(
        session.execute(
            select(Generation.status, func.count())
            .where(Generation.batch_id == batch.id)
            .group_by(Generation.status)
        ).all()
    )
    total = max(batch.total or 0, sum(counts.values()))
    success = counts.get("COMPLETED", 0)
    failed = counts.get("FAILED", 0) + counts.get("REJECTED", 0)
    return {
        "total_generations": total,
        "success_count": success,
        "failed_count": failed,
        "pending_count": total - success - failed,
    }


def results_jsonl(session: Session, batch: Batch, storage: Storage, settings: Settings) -> bytes:
    """One line per input line, in input order, with the generation as the API returns it."""
    from openlipsync.api.schemas import generation_json

    lines = []
    generations = session.scalars(
        select(Generation).where(Generation.batch_id == batch.id).order_by(Generation.created_at)
    )
    for generation in generations:
        response = generation_json(generation, storage, settings)
        record = {
            "request_id": generation.request_id,
            "status": generation.status,
            "generation_id": generation.id,
            "outputUrl": response["outputUrl"],
            "response": response,
            "error": generation.error,
        }
        lines.append(webhooks.compact_json(record))
    return ("\n".join(lines) + "\n").encode("ascii") if lines else b""


def complete_if_done(
    session: Session, batch_id: str, storage: Storage, settings: Settings
) -> str | None:
    """Close the batch when nothing is left to run; returns the webhook delivery id, if any."""
    batch = session.get(Batch, batch_id)
    if batch is None or batch.status not in ("JOBS_CREATED", "PROCESSING"):
        return None
    counts = metrics(session, batch)
    if counts["pending_count"] > 0:
        return None
    key = f"batches/{batch_id}/results.jsonl"
    storage.put_bytes(key, results_jsonl(session, batch, storage, settings))
    closed = session.execute(
        update(Batch)
        .where(Batch.id == batch_id, Batch.status.in_(("JOBS_CREATED", "PROCESSING")))
        .values(status="COMPLETED", output_key=key)
    )
    if closed.rowcount != 1:
        session.rollback()
        return None
    session.refresh(batch)
    delivery_id = _record_webhook(session, batch, storage, settings)
    session.commit()
    return delivery_id
