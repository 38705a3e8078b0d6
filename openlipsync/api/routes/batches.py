"""Batches (spec §3.9–3.11, §13): a JSONL file of generate requests, validated up front.

Every line is checked before anything is created (so a bad line 437 is reported now, with its
line number, not discovered by the worker). The stored input holds the normalized payloads, so
the worker that expands the batch never re-validates.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from openlipsync.api import schemas
from openlipsync.api.creation import check_assets
from openlipsync.api.deps import Caller, current_caller, get_session
from openlipsync.api.enqueue import safely
from openlipsync.api.errors import ApiError, bad_request, not_found
from openlipsync.api.guards import NUL_MESSAGE, contains_nul
from openlipsync.api.limits import lock_organization
from openlipsync.api.multipart import Form, UploadedFile, read_form
from openlipsync.api.query import single, timestamp
from openlipsync.api.validation import (
    Problems,
    as_bool,
    check_http_url,
    parse_json,
    validate_generation,
)
from openlipsync.settings import Settings
from openlipsync.store import queries
from openlipsync.store.files import discard
from openlipsync.store.models import Batch, new_id

router = APIRouter(tags=["batch"])

BATCH_STATUSES = ("PENDING", "JOBS_CREATED", "PROCESSING", "COMPLETED", "FAILED")
MAX_REPORTED_PROBLEMS = 50
CODE = "batch_validation_failed"


def _render(request: Request, session: Session, batches: list[Batch]) -> list[dict[str, Any]]:
    metrics = queries.batch_metrics(session, batches)
    state = request.app.state
    return [schemas.batch_json(b, metrics[b.id], state.storage, state.settings) for b in batches]


@router.post(
    "/v2/batch",
    status_code=201,
    summary="Create a batch from a JSONL file (dry_run=true only validates)",
    responses={
        201: {"model": schemas.BatchOut | schemas.ValidatedOut},
        **schemas.errors(400, 401, 429),
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["input"],
                        "properties": {
                            "input": {"type": "string", "format": "binary"},
                            "webhook_url": {"type": "string"},
                            "dry_run": {"type": "string", "enum": ["true", "false"]},
                        },
                    }
                }
            },
        }
    },
)
async def create_batch(
    request: Request,
    caller: Caller = Depends(current_caller),
    session: Session = Depends(get_session),
) -> JSONResponse:
    settings: Settings = request.app.state.settings
    limit = settings.batch_max_bytes

    def too_large(_upload: UploadedFile) -> ApiError:
        return ApiError(400, f"batch input file exceeds {limit} bytes", CODE)

    form = await read_form(request, settings.data_dir / "tmp", {"input"}, limit, too_large)
    try:
        dry_run, webhook, raw = _form_parts(form)
    finally:
        form.cleanup()
    lines = _parse_lines(raw, settings)
    await run_in_threadpool(_check_line_assets, session, caller.organization_id, lines)
    if dry_run:
        return JSONResponse({"status": "VALIDATED"}, status_code=201)
    batch = await run_in_threadpool(
        _store_batch, session, request, caller.organization_id, webhook, lines
    )
    await run_in_threadpool(safely, request.app.state.enqueue, "batch", batch.id)
    body = await run_in_threadpool(_render, request, session, [batch])
    return JSONResponse(body[0], status_code=201)


def _form_parts(form: Form) -> tuple[bool, str | None, bytes]:
    raw_dry = form.first("dry_run")
    dry_run = False
    if raw_dry not in (None, ""):
        parsed = as_bool(raw_dry)
        if parsed is None:
            raise bad_request("dry_run must be true or false")
        dry_run = parsed
    if any(contains_nul(value) for _, value in form.fields):
        raise bad_request(NUL_MESSAGE)
    webhook = form.first("webhook_url") or None
    if webhook is not None:
        problems = Problems()
        webhook = check_http_url(webhook, "webhook_url", problems)
        problems.raise_if_any()
    upload = form.file("input")
    if upload is None:
        text = form.first("input")  # a curl user may send the JSONL as a plain text part
        if text is None:
            raise bad_request("input file (JSONL) is required", CODE)
        return dry_run, webhook, text.encode()
    return dry_run, webhook, upload.path.read_bytes()


def _parse_lines(raw: bytes, settings: Settings) -> list[tuple[int, dict[str, Any]]]:
    """[(line number, normalized record)], or 400 listing the bad lines."""
    if contains_nul(raw):
        raise bad_request(NUL_MESSAGE, CODE)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise bad_request("input file must be UTF-8 encoded JSON Lines", CODE) from None
    numbered = [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    low, high = settings.batch_min_lines, settings.batch_max_lines
    if not low <= len(numbered) <= high:
        raise bad_request(
            f"input file must contain between {low} and {high} records (found {len(numbered)})",
            CODE,
        )
    problems: list[str] = []
    records: list[tuple[int, dict[str, Any]]] = []
    seen: dict[str, int] = {}
    for number, line in numbered:
        record = _parse_line(number, line, seen, problems)
        if record is not None:
            records.append((number, record))
    if problems:
        raise bad_request(_cap(problems), CODE)
    return records


def _parse_line(
    number: int, line: str, seen: dict[str, int], problems: list[str]
) -> dict[str, Any] | None:
    try:
        item = parse_json(line)
    except (ValueError, RecursionError):
        problems.append(f"line {number}: not valid JSON")
        return None
    if not isinstance(item, dict):
        problems.append(f"line {number}: must be a JSON object")
        return None
    request_id = item.get("request_id")
    if not isinstance(request_id, str) or not request_id.strip() or len(request_id) > 255:
        problems.append(f"line {number}: request_id must be a non-empty string (max 255)")
    elif request_id in seen:
        problems.append(
            f"line {number}: duplicate request_id '{request_id}' (first on line {seen[request_id]})"
        )
    else:
        seen[request_id] = number
    if item.get("endpoint") != "/v2/generate":
        problems.append(f'line {number}: endpoint must be "/v2/generate"')
    try:
        payload = validate_generation(item.get("payload"))
    except ApiError as exc:
        messages = exc.message if isinstance(exc.message, list) else [exc.message]
        problems.extend(f"line {number}: payload: {message}" for message in messages)
        return None
    return {"request_id": request_id, "endpoint": "/v2/generate", "payload": payload}


def _cap(problems: list[str]) -> list[str]:
    if len(problems) <= MAX_REPORTED_PROBLEMS:
        return problems
    hidden = len(problems) - MAX_REPORTED_PROBLEMS
    return [*problems[:MAX_REPORTED_PROBLEMS], f"... and {hidden} more problems"]


def _check_line_assets(
    session: Session, organization_id: str, lines: list[tuple[int, dict[str, Any]]]
) -> None:
    problems = []
    for number, record in lines:
        try:
            check_assets(session, organization_id, record["payload"]["input"])
        except ApiError as exc:
            messages = exc.message if isinstance(exc.message, list) else [exc.message]
            problems.extend(f"line {number}: payload: {message}" for message in messages)
    if problems:
        raise bad_request(_cap(problems), CODE)


def _store_batch(
    session: Session,
    request: Request,
    organization_id: str,
    webhook: str | None,
    lines: list[tuple[int, dict[str, Any]]],
) -> Batch:
    settings: Settings = request.app.state.settings
    storage = request.app.state.storage
    batch_id = new_id()
    key = f"batches/{batch_id}/input.jsonl"
    payload = "".join(json.dumps(record, separators=(",", ":")) + "\n" for _, record in lines)
    lock_organization(session, organization_id)
    active = queries.count_active_batches(session, organization_id)
    if active >= settings.batch_concurrency_limit > 0:
        session.rollback()
        raise ApiError(
            429,
            f"Batch concurrency limit reached ({settings.batch_concurrency_limit} batches "
            "in progress). Retry when one finishes.",
            "concurrency_limit_reached",
            headers={"Retry-After": "30"},
        )
    storage.put_bytes(key, payload.encode())
    batch = Batch(
        id=batch_id,
        organization_id=organization_id,
        webhook_url=webhook,
        total=len(lines),
        lines_key=key,
    )
    session.add(batch)
    try:
        session.commit()
    except BaseException:
        session.rollback()
        discard(storage, [key])  # best effort: the commit's error is the one to report
        raise
    return batch


@router.get(
    "/v2/batch/{batch_id}",
    summary="Get a batch",
    responses={200: {"model": schemas.BatchOut}, **schemas.errors(401, 404)},
)
def get_batch(
    batch_id: str,
    request: Request,
    caller: Caller = Depends(current_caller),
    session: Session = Depends(get_session),
) -> JSONResponse:
    batch = queries.get_batch(session, caller.organization_id, batch_id)
    if batch is None:
        raise not_found("Batch", "batch_not_found")
    return JSONResponse(_render(request, session, [batch])[0])


@router.get(
    "/v2/batch",
    summary="List batches (newest first)",
    responses={200: {"model": list[schemas.BatchOut]}, **schemas.errors(400, 401)},
)
def list_batches(
    request: Request,
    caller: Caller = Depends(current_caller),
    session: Session = Depends(get_session),
) -> JSONResponse:
    status = single(request, "status")
    if status is not None and status not in BATCH_STATUSES:
        raise bad_request(
            f"status must be one of the following values: {', '.join(BATCH_STATUSES)}"
        )
    batches = queries.list_batches(
        session,
        caller.organization_id,
        status,
        timestamp(request, "created_after"),
        timestamp(request, "created_before"),
    )
    return JSONResponse(_render(request, session, batches))
