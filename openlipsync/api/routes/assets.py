"""The media library: list/get/delete assets, and the upload → PUT → register flow (§4.1)."""

from __future__ import annotations

import base64
import binascii
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from openlipsync.api import schemas
from openlipsync.api.creation import asset_from_info, safe_file_name
from openlipsync.api.deps import Caller, current_caller, get_session
from openlipsync.api.enqueue import safely
from openlipsync.api.errors import ApiError, bad_request, not_found
from openlipsync.api.probe import NotMediaError, probe
from openlipsync.api.query import enum_values, integer, single
from openlipsync.api.routes.generations import read_json
from openlipsync.api.validation import Problems, check_http_url
from openlipsync.store import queries
from openlipsync.store.files import UPLOADS_ROUTE, LocalStorage, discard
from openlipsync.store.models import Asset, new_id, utcnow

router = APIRouter(tags=["assets"])

ASSET_TYPES = ("AUDIO", "VIDEO", "IMAGE")
VISIBILITIES = ("USER", "ORGANIZATION")
UPLOAD_URL_TTL = 3600


def _render(request: Request, asset: Asset) -> dict[str, Any]:
    return schemas.asset_json(asset, request.app.state.storage, request.app.state.settings)


def encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"o:{offset}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        prefix, value = raw.split(":", 1)
        offset = int(value)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise bad_request("cursor is invalid (pass nextCursor from the previous page)") from None
    if prefix != "o" or not 0 <= offset <= 10_000_000:
        raise bad_request("cursor is invalid (pass nextCursor from the previous page)")
    return offset


@router.get(
    "/v2/assets",
    summary="List assets",
    responses={200: {"model": schemas.AssetPage}, **schemas.errors(400, 401)},
)
def list_assets(
    request: Request,
    caller: Caller = Depends(current_caller),
    session: Session = Depends(get_session),
) -> JSONResponse:
    types = enum_values(request, "types", ASSET_TYPES)
    limit = integer(request, "limit", 10, 1, 100) or 10
    sort = single(request, "sortBy") or "dateDesc"
    if sort not in queries.ASSET_SORTS:
        raise bad_request(
            f"sortBy must be one of the following values: {', '.join(queries.ASSET_SORTS)}"
        )
    cursor = single(request, "cursor")
    offset = decode_cursor(cursor) if cursor else 0
    if single(request, "projectId") is not None:
        # Projects are not implemented, so no asset belongs to one.
        return JSONResponse({"items": [], "nextCursor": None, "totalCount": 0})
    rows, total = queries.list_assets(
        session, caller.organization_id, types, single(request, "searchQuery"), sort, offset, limit
    )
    more = offset + len(rows) < total
    return JSONResponse(
        {
            "items": [_render(request, asset) for asset in rows],
            "nextCursor": encode_cursor(offset + len(rows)) if more else None,
            "totalCount": total,
        }
    )


@router.get(
    "/v2/assets/count",
    summary="Count assets (same filters as the list, without paging)",
    responses={
        200: {"content": {"application/json": {"schema": {"type": "integer"}}}},
        **schemas.errors(400, 401),
    },
)
def count_assets(
    request: Request,
    caller: Caller = Depends(current_caller),
    session: Session = Depends(get_session),
) -> JSONResponse:
    types = enum_values(request, "types", ASSET_TYPES)
    if single(request, "projectId") is not None:
        return JSONResponse(0)
    _, total = queries.list_assets(
        session, caller.organization_id, types, single(request, "searchQuery"), limit=0
    )
    return JSONResponse(total)


@router.get(
    "/v2/assets/{asset_id}",
    summary="Get an asset",
    responses={200: {"model": schemas.AssetOut}, **schemas.errors(401, 404)},
)
def get_asset(
    asset_id: str,
    request: Request,
    caller: Caller = Depends(current_caller),
    session: Session = Depends(get_session),
) -> JSONResponse:
    asset = queries.get_asset(session, caller.organization_id, asset_id)
    if asset is None:
        raise not_found("Asset", "asset_not_found")
    return JSONResponse(_render(request, asset))


@router.delete(
    "/v2/assets/{asset_id}",
    summary="Delete an asset and its stored file",
    responses={200: {"model": schemas.AssetOut}, **schemas.errors(401, 404)},
)
def delete_asset(
    asset_id: str,
    request: Request,
    caller: Caller = Depends(current_caller),
    session: Session = Depends(get_session),
) -> JSONResponse:
    asset = queries.get_asset(session, caller.organization_id, asset_id)
    if asset is None:
        raise not_found("Asset", "asset_not_found")
    body = _render(request, asset)
    keys = [asset.storage_key, asset.thumbnail_key]
    session.delete(asset)
    session.commit()
    discard(request.app.state.storage, keys)  # the row is gone; a file left over is harmless
    return JSONResponse(body)


@router.post(
    "/v2/assets/upload",
    status_code=201,
    summary="Get a signed URL to PUT a file to, then register it with POST /v2/assets",
    responses={201: {"model": schemas.UploadOut}, **schemas.errors(400, 401, 422)},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/UploadRequest"}}
            },
        }
    },
)
async def create_upload(request: Request, caller: Caller = Depends(current_caller)) -> JSONResponse:
    body = await read_json(request)
    problems = Problems()
    if not isinstance(body, dict):
        raise bad_request("request body must be a JSON object")
    name, content_type, size = body.get("fileName"), body.get("contentType"), body.get("size")
    if not isinstance(name, str) or not name.strip() or len(name) > 255:
        problems.add("fileName must be a non-empty string (max 255 characters)")
    if not isinstance(content_type, str) or not content_type.strip():
        problems.add("contentType must be a MIME type string")
    if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
        problems.add("size must be a positive integer (bytes)")
    problems.raise_if_any()
    settings = request.app.state.settings
    if size > settings.max_upload_bytes:
        raise ApiError(
            422,
            f"size exceeds the upload limit of {settings.max_upload_bytes} bytes",
            "file_size_exceeds_plan_limit",
        )
    safe = safe_file_name(name, "upload", "bin")
    key = f"uploads/{caller.organization_id}/{new_id()}/{safe}"
    storage = request.app.state.storage
    upload_url = storage.upload_url(key, UPLOAD_URL_TTL, content_type)
    base = settings.public_base_url.rstrip("/")
    return JSONResponse(
        {
            "uploadUrl": upload_url,
            "url": f"{base}{UPLOADS_ROUTE}{key}",
            "expiresIn": UPLOAD_URL_TTL,
        },
        status_code=201,
    )


@router.post(
    "/v2/assets",
    status_code=201,
    summary="Register an uploaded file or a public URL as an asset",
    responses={201: {"model": schemas.AssetOut}, **schemas.errors(400, 401, 422)},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/RegisterAsset"}}
            },
        }
    },
)
async def register_asset(
    request: Request,
    caller: Caller = Depends(current_caller),
    session: Session = Depends(get_session),
) -> JSONResponse:
    body = await read_json(request)
    if not isinstance(body, dict):
        raise bad_request("request body must be a JSON object")
    problems = Problems()
    url = check_http_url(body.get("url"), "url", problems)
    kind = body.get("type")
    if kind not in ASSET_TYPES:
        problems.add(f"type must be one of the following values: {', '.join(ASSET_TYPES)}")
    visibility = body.get("visibility") or "USER"
    if visibility not in VISIBILITIES:
        problems.add(f"visibility must be one of the following values: {', '.join(VISIBILITIES)}")
    name = body.get("name")
    if name is not None and (not isinstance(name, str) or len(name) > 512):
        problems.add("name must be a string (max 512 characters)")
    if body.get("projectId") is not None:
        raise ApiError(
            422, "projectId does not exist (projects are not supported)", "project_not_found"
        )
    problems.raise_if_any()
    assert url is not None
    key = _own_upload_key(request, url, caller.organization_id)
    if key is None:
        asset = Asset(
            organization_id=caller.organization_id,
            type=kind,
            input_type="URL",
            name=name or _url_name(url),
            source_url=url,
            format=_extension(_url_name(url)),
        )
    else:
        asset = await run_in_threadpool(_probe_upload, request, key, kind, name, caller)
    asset.visibility = visibility
    asset.created_at = asset.updated_at = utcnow()
    session.add(asset)
    await run_in_threadpool(session.commit)
    if asset.storage_key is None or asset.type in ("VIDEO", "IMAGE"):  # a URL: described too
        await run_in_threadpool(safely, request.app.state.enqueue, "thumbnail", asset.id)
    return JSONResponse(_render(request, asset), status_code=201)


def _own_upload_key(request: Request, url: str, organization_id: str) -> str | None:
    base = request.app.state.settings.public_base_url.rstrip("/") + UPLOADS_ROUTE
    if not url.startswith(base):
        return None
    key = unquote(urlparse(url).path.split(UPLOADS_ROUTE, 1)[1])
    if not key.startswith(f"uploads/{organization_id}/"):
        raise bad_request("url refers to another organisation's upload")
    return key


def _probe_upload(request: Request, key: str, kind: str, name: str | None, caller: Caller) -> Asset:
    storage = request.app.state.storage
    if not storage.exists(key):
        raise bad_request("nothing was uploaded to this url yet (PUT the file to uploadUrl first)")
    with tempfile.TemporaryDirectory(dir=_scratch(request)) as scratch:
        if isinstance(storage, LocalStorage):
            path = storage.path(key)
        else:
            path = storage.download(key, Path(scratch) / "probe")
        try:
            info = probe(path)
        except NotMediaError as exc:
            raise bad_request(
                f"the uploaded file is not a readable media file: {exc}", "invalid_media"
            ) from None
    if (kind == "AUDIO" and not info.has_audio) or (kind != "AUDIO" and info.kind != kind):
        raise bad_request(f"the uploaded file is {info.kind}, not {kind}", "invalid_media")
    file_name = key.rsplit("/", 1)[-1]
    asset = asset_from_info(info, caller.organization_id, name or file_name, storage.size(key) or 0)
    asset.type = kind
    asset.storage_key = key
    return asset


def _scratch(request: Request) -> Path:
    path = request.app.state.settings.data_dir / "tmp"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _url_name(url: str) -> str:
    return unquote(urlparse(url).path.rsplit("/", 1)[-1])[:255] or urlparse(url).hostname or url


def _extension(name: str) -> str | None:
    if "." not in name:
        return None
    ext = name.rsplit(".", 1)[-1].lower()
    return ext[:16] if ext.isalnum() else None
