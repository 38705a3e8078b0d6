"""Key-less file links: signed GET downloads (with Range) and signed PUT uploads.

Only used with local storage; S3 storage hands out presigned bucket URLs instead.
"""

from __future__ import annotations

import tempfile

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse

from openlipsync.api.errors import ApiError
from openlipsync.api.schemas import errors
from openlipsync.store.files import LocalStorage, StorageKeyError

router = APIRouter(tags=["files"])


def _local(request: Request) -> LocalStorage:
    storage = request.app.state.storage
    if not isinstance(storage, LocalStorage):
        raise ApiError(404, "File links are served by the storage backend", "not_found")
    return storage


def _forbidden() -> ApiError:
    return ApiError(403, "The link is invalid or has expired", "invalid_signature")


@router.get(
    "/v2/files/{key:path}",
    summary="Download a file via a signed link (Range supported)",
    responses={200: {"content": {"application/octet-stream": {}}}, **errors(403, 404)},
)
@router.head("/v2/files/{key:path}", include_in_schema=False)
def download_file(
    key: str, request: Request, exp: str = "", sig: str = "", filename: str = ""
) -> FileResponse:
    storage = _local(request)
    if not storage.verify("GET", key, exp, sig, filename):
        raise _forbidden()
    path = storage.path(key)
    if not path.is_file():
        raise ApiError(404, "File not found", "file_not_found")
    media_type = "video/mp4" if path.suffix == ".mp4" else None
    return FileResponse(
        path,
        media_type=media_type,
        filename=filename or None,
        headers={"Cache-Control": "private, max-age=3600"},
    )


@router.put(
    "/v2/uploads/{key:path}",
    summary="Upload bytes to a signed upload URL",
    responses=errors(403, 404, 413),
)
async def upload_file(key: str, request: Request, exp: str = "", sig: str = "") -> JSONResponse:
    storage = _local(request)
    if not storage.verify("PUT", key, exp, sig):
        raise _forbidden()
    limit = request.app.state.settings.max_upload_bytes
    scratch = request.app.state.settings.data_dir / "tmp"
    scratch.mkdir(parents=True, exist_ok=True)
    size = 0
    with tempfile.NamedTemporaryFile(dir=scratch, prefix="put-") as handle:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ApiError(
                    413, f"upload exceeds {limit} bytes", "generation_input_validation_failed"
                )
            handle.write(chunk)
        handle.flush()
        try:
            stored = await run_in_threadpool(storage.put_file, key, handle.name)
        except StorageKeyError:
            raise _forbidden() from None
    return JSONResponse({"key": key, "size": stored})
