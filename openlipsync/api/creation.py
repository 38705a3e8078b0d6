"""Creating a generation: asset checks, idempotency, concurrency, insert, then enqueue.

Everything after validation happens in one transaction that first locks the organisation, so
the concurrency count, the idempotency lookup and the insert cannot interleave with another
API process creating for the same organisation.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from openlipsync.api import limits
from openlipsync.api.errors import ApiError
from openlipsync.api.probe import MediaInfo
from openlipsync.settings import Settings
from openlipsync.store import queries
from openlipsync.store.files import Storage, discard
from openlipsync.store.models import Asset, Generation, new_id

IDEMPOTENCY_KEY = re.compile(r"^[A-Za-z0-9._~-]{1,128}$")
# Which asset types may feed which input slot (a video's soundtrack can drive the lips).
SLOT_ASSET_TYPES = {"video": ("VIDEO",), "audio": ("AUDIO", "VIDEO"), "image": ("IMAGE",)}
UPLOAD_PLACEHOLDER = "upload:"


@dataclass
class PendingUpload:
    """A multipart file already sniffed, waiting to become an asset in the create transaction."""

    slot: str
    path: Path
    filename: str | None
    size: int
    sha256: str
    info: MediaInfo
    asset_id: str = field(default_factory=new_id)


def idempotency_key(headers: list[str]) -> str | None:
    if not headers:
        return None
    if len(headers) > 1 or not IDEMPOTENCY_KEY.match(headers[0]):
        raise ApiError(
            400,
            "Idempotency-Key must be one header of 1-128 characters from [A-Za-z0-9._~-]",
            "INVALID_IDEMPOTENCY_KEY",
        )
    return headers[0]


def request_hash(body: dict[str, Any], uploads: list[PendingUpload]) -> str:
    canonical = json.dumps(
        {"body": body, "files": sorted((u.slot, u.sha256) for u in uploads)},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def check_assets(session: Session, organization_id: str, inputs: list[dict[str, Any]]) -> None:
    """Unknown, foreign or wrong-kind asset references are a synchronous 400 (spec §12)."""
    wanted = [
        item["assetId"]
        for item in inputs
        if "assetId" in item and not item["assetId"].startswith(UPLOAD_PLACEHOLDER)
    ]
    found = queries.assets_by_id(session, organization_id, wanted)
    problems = []
    for index, item in enumerate(inputs):
        asset_id = item.get("assetId")
        if asset_id is None or asset_id.startswith(UPLOAD_PLACEHOLDER):
            continue
        asset = found.get(asset_id)
        if asset is None:
            problems.append(f"input[{index}].assetId {asset_id} not found")
        elif asset.type not in SLOT_ASSET_TYPES[item["type"]]:
            problems.append(
                f"input[{index}].assetId {asset_id} is a {asset.type} asset, "
                f"not usable as {item['type']} input"
            )
    if problems:
        raise ApiError(400, problems, "asset_not_found")


def create_generation(
    session: Session,
    storage: Storage,
    settings: Settings,
    organization_id: str,
    body: dict[str, Any],
    uploads: list[PendingUpload],
    key: str | None,
) -> tuple[Generation, bool]:
    """Insert (or replay) a generation; returns (row, created). Caller enqueues when created."""
    digest = request_hash(body, uploads) if key else None
    limits.lock_organization(session, organization_id)
    if key:
        existing = queries.find_by_idempotency_key(session, organization_id, key)
        if existing is not None:
            session.rollback()
            return _replay(existing, digest)
    limits.check_concurrency(session, organization_id, settings.concurrency_limit)
    stored: list[str] = []
    try:
        inputs = _attach_uploads(session, storage, organization_id, body["input"], uploads, stored)
        generation = Generation(
            organization_id=organization_id,
            model=body["model"],
            input=inputs,
            options=body["options"],
            segments=body["segments"],
            webhook_url=body["webhookUrl"],
            output_file_name=body["outputFileName"],
            idempotency_key=key,
            request_hash=digest,
        )
        session.add(generation)
        session.commit()
    except IntegrityError:
        session.rollback()
        discard(storage, stored)  # an orphan is harmless; masking the error is not
        existing = queries.find_by_idempotency_key(session, organization_id, key) if key else None
        if existing is None:
            raise
        return _replay(existing, digest)
    except BaseException:
        session.rollback()
        discard(storage, stored)  # an orphan is harmless; masking the error is not
        raise
    return generation, True


def _replay(existing: Generation, digest: str | None) -> tuple[Generation, bool]:
    if existing.request_hash != digest:
        raise ApiError(
            409,
            "Idempotency-Key was already used with a different request body",
            "IDEMPOTENCY_KEY_REUSED",
            generationId=existing.id,
        )
    return existing, False


def _attach_uploads(
    session: Session,
    storage: Storage,
    organization_id: str,
    inputs: list[dict[str, Any]],
    uploads: list[PendingUpload],
    stored: list[str],
) -> list[dict[str, Any]]:
    by_slot = {upload.slot: upload for upload in uploads}
    result = []
    for item in inputs:
        asset_id = item.get("assetId", "")
        if asset_id.startswith(UPLOAD_PLACEHOLDER):
            upload = by_slot[asset_id.removeprefix(UPLOAD_PLACEHOLDER)]
            asset = store_upload(session, storage, organization_id, upload)
            stored.append(asset.storage_key or "")
            item = {**item, "assetId": asset.id}
        result.append(item)
    return result


def store_upload(
    session: Session, storage: Storage, organization_id: str, upload: PendingUpload
) -> Asset:
    name = safe_file_name(upload.filename, upload.slot, upload.info.container)
    key = f"assets/{organization_id}/{upload.asset_id}/{name}"
    size = storage.put_file(key, upload.path)
    asset = asset_from_info(upload.info, organization_id, name, size)
    asset.id = upload.asset_id
    asset.storage_key = key
    session.add(asset)
    return asset


def asset_from_info(info: MediaInfo, organization_id: str, name: str, size: int) -> Asset:
    extension = name.rsplit(".", 1)[-1].lower() if "." in name else info.container
    return Asset(
        organization_id=organization_id,
        type=info.kind,
        input_type="UPLOAD",
        visibility="USER",
        name=name,
        size=size,
        format=extension[:16],
        duration_seconds=info.duration,
        fps=info.fps,
        width=info.width,
        height=info.height,
    )


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_file_name(filename: str | None, slot: str, extension: str) -> str:
    """A storage-safe name; SDK placeholders (`upload`, `blob`) become `<slot>.<extension>`."""
    base = (filename or "").replace("\\", "/").rsplit("/", 1)[-1]
    base = _UNSAFE.sub("_", base).strip("._")[:120]
    if not base or base in ("upload", "blob"):
        return f"{slot}.{extension}"
    return base
