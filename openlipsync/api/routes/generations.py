"""Generations: create (JSON or multipart), get (with long-poll), list, delete, download, cost."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, PlainTextResponse
from sqlalchemy.orm import Session
from starlette.datastructures import State

from openlipsync.api import cost, schemas
from openlipsync.api.creation import (
    UPLOAD_PLACEHOLDER,
    PendingUpload,
    check_assets,
    create_generation,
    idempotency_key,
)
from openlipsync.api.deps import Caller, current_caller, generating_caller, get_session
from openlipsync.api.enqueue import safely
from openlipsync.api.errors import ApiError, bad_request, not_found
from openlipsync.api.guards import NUL_MESSAGE, contains_nul
from openlipsync.api.multipart import Form, read_form
from openlipsync.api.probe import NotMediaError, probe
from openlipsync.api.query import boolean, enum_values, integer, multi, single
from openlipsync.api.validation import parse_json, validate_generation
from openlipsync.store import queries
from openlipsync.store.files import discard
from openlipsync.store.models import Generation

router = APIRouter(tags=["generations"])

STATUSES = ("PENDING", "PROCESSING", "COMPLETED", "FAILED", "REJECTED")
TERMINAL = ("COMPLETED", "FAILED", "REJECTED")
FILE_SLOTS = ("video", "audio", "image")
WAIT_DEFAULT_SECONDS, WAIT_MAX_SECONDS, WAIT_POLL_SECONDS = 5, 10, 0.25

_GENERATE_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/GenerateBody"}},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["model"],
                    "properties": {
                        "model": {"type": "string"},
                        "video": {"type": "string", "format": "binary"},
                        "audio": {"type": "string", "format": "binary"},
                        "image": {"type": "string", "format": "binary"},
                        "input": {"type": "string", "description": "JSON array or object"},
                        "options": {"type": "string", "description": "JSON object"},
                        "segments": {"type": "string", "description": "JSON array"},
                        "webhookUrl": {"type": "string"},
                        "outputFileName": {"type": "string"},
                    },
                }
            },
        },
    }
}


def _json(request: Request, generation: Generation, status: int = 200, **kw: Any) -> JSONResponse:
    state = request.app.state
    body = schemas.generation_json(generation, state.storage, state.settings, **kw)
    return JSONResponse(body, status_code=status)


async def read_json(request: Request) -> Any:
    """The JSON body, bounded in size; malformed JSON is a 400 like any validation error."""
    limit = request.app.state.settings.max_json_body_bytes
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"JSON body exceeds {limit} bytes", "payload_too_large")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if contains_nul(raw):
        raise bad_request(NUL_MESSAGE)
    if not raw.strip():
        raise bad_request("request body must be a JSON object")
    try:
        return parse_json(raw)
    except (ValueError, RecursionError):
        raise bad_request("request body is not valid JSON") from None


def _is_multipart(request: Request) -> bool:
    return request.headers.get("content-type", "").lower().startswith("multipart/form-data")


@router.post(
    "/v2/generate",
    status_code=201,
    summary="Create a generation (JSON or multipart with files)",
    responses={201: {"model": schemas.GenerationOut}, **schemas.errors(400, 401, 409, 413, 429)},
    openapi_extra=_GENERATE_BODY,
)
async def create(
    request: Request,
    caller: Caller = Depends(generating_caller),
    session: Session = Depends(get_session),
) -> JSONResponse:
    key = idempotency_key(request.headers.getlist("idempotency-key"))
    state = request.app.state
    form: Form | None = None
    try:
        if _is_multipart(request):
            form = await read_form(
                request,
                state.settings.data_dir / "tmp",
                set(FILE_SLOTS),
                state.settings.max_upload_bytes,
            )
            raw = form_body(form)
        else:
            raw = await read_json(request)
        body = validate_generation(raw)
        uploads = await run_in_threadpool(_sniff_uploads, form, body) if form else []
        generation, created = await run_in_threadpool(
            _create, session, state, caller, body, uploads, key
        )
    finally:
        if form is not None:
            form.cleanup()
    if created:
        await run_in_threadpool(safely, state.enqueue, "generation", generation.id)
        for upload in uploads:
            if upload.info.kind in ("VIDEO", "IMAGE"):
                await run_in_threadpool(safely, state.enqueue, "thumbnail", upload.asset_id)
    return _json(request, generation, 201)


def _create(
    session: Session,
    state: State,
    caller: Caller,
    body: dict[str, Any],
    uploads: list[PendingUpload],
    key: str | None,
) -> tuple[Generation, bool]:
    check_assets(session, caller.organization_id, body["input"])
    return create_generation(
        session, state.storage, state.settings, caller.organization_id, body, uploads, key
    )


def form_body(form: Form) -> dict[str, Any]:
    """The multipart parts as a create body; uploaded files win over URLs of the same slot."""
    if any(contains_nul(value) or contains_nul(key) for key, value in form.fields):
        raise bad_request(NUL_MESSAGE)
    body: dict[str, Any] = {"model": form.first("model")}
    for name in ("webhookUrl", "outputFileName"):
        value = form.first(name)
        if value not in (None, ""):
            body[name] = value
    for name in ("options", "segments"):
        value = form.first(name)
        if value not in (None, ""):
            body[name] = _json_part(name, value)
    inputs: list[Any] = []
    for value in form.values("input"):
        parsed = _json_part("input", value)
        inputs.extend(parsed if isinstance(parsed, list) else [parsed])
    for slot in FILE_SLOTS:
        upload = form.file(slot)
        if upload is None:
            continue
        if upload.size == 0:
            raise bad_request(f"{slot} file is empty")
        placeholder = {"assetId": UPLOAD_PLACEHOLDER + slot}
        index = next(
            (
                i
                for i, item in enumerate(inputs)
                if isinstance(item, dict) and item.get("type") == slot
            ),
            None,
        )
        if index is None:
            inputs.append({"type": slot, **placeholder})
        else:
            merged = {k: v for k, v in inputs[index].items() if k not in ("url", "assetId")}
            inputs[index] = {**merged, **placeholder}
    body["input"] = inputs if (inputs or form.values("input")) else None
    return body


def _json_part(name: str, value: str) -> Any:
    try:
        return parse_json(value)
    except (ValueError, RecursionError):
        raise bad_request(f"{name} must be a JSON string") from None


def _sniff_uploads(form: Form, body: dict[str, Any]) -> list[PendingUpload]:
    """Refuse non-media now (400) rather than failing later in the worker."""
    uploads = []
    used = {item.get("assetId") for item in body["input"]}
    for slot in FILE_SLOTS:
        upload = form.file(slot)
        if upload is None or UPLOAD_PLACEHOLDER + slot not in used:
            continue
        try:
            info = probe(upload.path)
        except NotMediaError as exc:
            raise bad_request(
                f"{slot} file is not a readable media file: {exc}", "invalid_media"
            ) from None
        if slot == "video" and info.kind != "VIDEO":
            raise bad_request("video file has no video stream", "invalid_media")
        if slot == "audio" and not info.has_audio:
            raise bad_request("audio file has no audio stream", "invalid_media")
        if slot == "image" and info.kind != "IMAGE":
            raise bad_request("image file is not an image", "invalid_media")
        uploads.append(
            PendingUpload(
                slot=slot,
                path=upload.path,
                filename=upload.filename,
                size=upload.size,
                sha256=upload.sha256,
                info=info,
            )
        )
    return uploads


@router.get(
    "/v2/generate/{generation_id}",
    summary="Get a generation (optionally long-poll with wait=true)",
    responses={200: {"model": schemas.GenerationOut}, **schemas.errors(400, 401, 404)},
)
async def get_generation(
    generation_id: str,
    request: Request,
    caller: Caller = Depends(current_caller),
    session: Session = Depends(get_session),
) -> JSONResponse:
    wait = boolean(request, "wait")
    include = set(multi(request, "include"))
    unknown = include - {"progress"}
    if unknown:
        raise bad_request("include must be one of the following values: progress")
    progress = "progress" in include
    if wait and progress:
        raise bad_request("wait cannot be combined with include=progress")
    timeout = integer(request, "timeout", WAIT_DEFAULT_SECONDS, 1, WAIT_MAX_SECONDS)
    org = caller.organization_id
    generation = await run_in_threadpool(queries.get_generation, session, org, generation_id)
    if generation is None:
        raise not_found("Generation", "generation_not_found")
    if not wait:
        return _json(request, generation, include_progress=progress)
    deadline = time.monotonic() + (timeout or WAIT_DEFAULT_SECONDS)
    while generation.status not in TERMINAL and time.monotonic() < deadline:
        await asyncio.sleep(WAIT_POLL_SECONDS)
        await run_in_threadpool(session.expire_all)
        found = await run_in_threadpool(queries.get_generation, session, org, generation_id)
        if found is None:
            raise not_found("Generation", "generation_not_found")
        generation = found
    response = _json(request, generation)
    response.headers["Retry-After"] = "2"
    response.headers["X-Sync-Wait-Mode"] = "long_poll"
    response.headers["X-Sync-Wait-Timeout-Seconds"] = str(timeout)
    return response


@router.get(
    "/v2/generations",
    summary="List generations (newest first)",
    responses={200: {"model": list[schemas.GenerationOut]}, **schemas.errors(400, 401)},
)
def list_generations(
    request: Request,
    caller: Caller = Depends(current_caller),
    session: Session = Depends(get_session),
) -> JSONResponse:
    statuses = enum_values(request, "status", STATUSES)
    ids = multi(request, "ids")
    limit = integer(request, "limit", None, 1, 100)
    cursor = single(request, "cursor")
    after = None
    if cursor is not None:
        after = queries.get_generation(session, caller.organization_id, cursor)
        if after is None:
            raise bad_request(
                "cursor is invalid (use the id of the last item of the previous page)"
            )
    if single(request, "projectId") is not None:
        return JSONResponse([])  # projects are not implemented: no generation belongs to one
    rows = queries.list_generations(session, caller.organization_id, statuses, ids, limit, after)
    state = request.app.state
    return JSONResponse([schemas.generation_json(g, state.storage, state.settings) for g in rows])


@router.get(
    "/v2/generations/count",
    summary="Count generations (optionally by status)",
    responses={200: {"model": schemas.CountOut}, **schemas.errors(400, 401)},
)
def count_generations(
    request: Request,
    caller: Caller = Depends(current_caller),
    session: Session = Depends(get_session),
) -> JSONResponse:
    statuses = enum_values(request, "status", STATUSES)
    return JSONResponse(
        {"count": queries.count_generations(session, caller.organization_id, statuses)}
    )


@router.delete(
    "/v2/generations/{generation_id}",
    summary="Delete a finished generation and its files",
    responses={200: {"model": schemas.GenerationOut}, **schemas.errors(401, 404, 409)},
)
def delete_generation(
    generation_id: str,
    request: Request,
    caller: Caller = Depends(current_caller),
    session: Session = Depends(get_session),
) -> JSONResponse:
    generation = queries.get_generation(session, caller.organization_id, generation_id)
    if generation is None:
        raise not_found("Generation", "generation_not_found")
    if generation.status not in TERMINAL:
        raise ApiError(
            409,
            f"Generation is {generation.status}; it can be deleted once it has finished",
            "generation_not_deletable_while_processing",
        )
    body = schemas.generation_json(
        generation, request.app.state.storage, request.app.state.settings
    )
    body["outputUrl"] = body["segmentOutputUrl"] = None
    keys = [generation.output_key, generation.segment_output_key, generation.synthesized_audio_key]
    queries.delete_generation(session, generation)
    session.commit()
    discard(request.app.state.storage, keys)  # the row is gone; a file left over is harmless
    return JSONResponse(body)


@router.get(
    "/v2/generations/{generation_id}/download",
    summary="The output's signed URL as text/plain",
    responses={
        200: {"content": {"text/plain": {"schema": {"type": "string"}}}},
        **schemas.errors(401, 404),
    },
)
def download(
    generation_id: str,
    request: Request,
    caller: Caller = Depends(current_caller),
    session: Session = Depends(get_session),
) -> PlainTextResponse:
    generation = queries.get_generation(session, caller.organization_id, generation_id)
    if generation is None:
        raise not_found("Generation", "generation_not_found")
    if generation.status != "COMPLETED" or not generation.output_key:
        raise ApiError(
            404, f"Generation is {generation.status}; no output yet", "generation_output_not_found"
        )
    state = request.app.state
    name = f"{generation.output_file_name or generation.id}.mp4"
    url = state.storage.signed_url(
        generation.output_key, state.settings.output_url_ttl_seconds, name
    )
    return PlainTextResponse(url)


@router.post(
    "/v2/analyze/cost",
    summary="Estimate frames and cost of a generation body (nothing is created)",
    responses={200: {"model": list[schemas.CostOut]}, **schemas.errors(400, 401)},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/GenerateBody"}}
            },
        }
    },
)
async def estimate_cost(
    request: Request,
    caller: Caller = Depends(current_caller),
    session: Session = Depends(get_session),
) -> JSONResponse:
    body = validate_generation(await read_json(request))

    def run() -> dict[str, Any]:
        check_assets(session, caller.organization_id, body["input"])
        return cost.estimate(session, request.app.state.settings, caller.organization_id, body)

    return JSONResponse([await run_in_threadpool(run)])
