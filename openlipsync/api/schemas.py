"""Wire shapes: rendering rows to JSON with the exact (mixed) casing of the spec, and pydantic
models that document the same shapes in OpenAPI.

Responses are built as plain dicts rather than through `response_model`, because the wire
format has deliberate quirks (`error_code` and `errorCode`, snake_case batch fields, explicit
nulls) that must not be "fixed" by a serializer.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from openlipsync.settings import Settings
from openlipsync.store.files import Storage
from openlipsync.store.models import Asset, Batch, Generation


def iso(value: datetime | None) -> str | None:
    """RFC 3339 UTC with milliseconds and `Z`, like the hosted API."""
    if value is None:
        return None
    if value.tzinfo is None:  # SQLite drops the zone; everything is stored in UTC
        value = value.replace(tzinfo=UTC)
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def _url(storage: Storage, key: str | None, ttl: int, filename: str | None = None) -> str | None:
    return storage.signed_url(key, ttl, filename) if key else None


def generation_json(
    generation: Generation, storage: Storage, settings: Settings, include_progress: bool = False
) -> dict[str, Any]:
    ttl = settings.output_url_ttl_seconds
    completed = generation.status == "COMPLETED"
    name = f"{generation.output_file_name or generation.id}.mp4"
    body: dict[str, Any] = {
        "id": generation.id,
        "createdAt": iso(generation.created_at),
        "status": generation.status,
        "model": generation.model,
        "input": generation.input,
        "options": generation.options or {},
        "segments": generation.segments,
        "webhookUrl": generation.webhook_url,
        "outputUrl": _url(storage, generation.output_key, ttl, name) if completed else None,
        "outputDuration": generation.output_duration if completed else None,
        "segmentOutputUrl": _url(storage, generation.segment_output_key, ttl)
        if completed
        else None,
        "error": generation.error,
        "error_code": generation.error_code,
        "errorCode": generation.error_code,
        "outputFileName": generation.output_file_name,
    }
    if generation.synthesized_audio_key:
        body["synthesizedAudioUrl"] = _url(storage, generation.synthesized_audio_key, ttl)
    if include_progress:
        body["progress_percent"] = _progress(generation)
    return body


def _progress(generation: Generation) -> int:
    if generation.status == "COMPLETED":
        return 100
    return max(0, min(99, int(generation.progress or 0)))


def asset_json(asset: Asset, storage: Storage, settings: Settings) -> dict[str, Any]:
    ttl = settings.output_url_ttl_seconds
    url = _url(storage, asset.storage_key, ttl, asset.name) or asset.source_url
    return {
        "id": asset.id,
        "createdAt": iso(asset.created_at),
        "updatedAt": iso(asset.updated_at),
        "name": asset.name,
        "url": url,
        "size": asset.size,
        "format": asset.format,
        "type": asset.type,
        "inputType": asset.input_type,
        "durationSeconds": asset.duration_seconds,
        "thumbnailUrl": _url(storage, asset.thumbnail_key, ttl),
        "visibility": asset.visibility,
        "width": asset.width,
        "height": asset.height,
    }


def batch_json(
    batch: Batch, metrics: dict[str, int], storage: Storage, settings: Settings
) -> dict[str, Any]:
    output = _url(storage, batch.output_key, settings.output_url_ttl_seconds, "results.jsonl")
    return {
        "id": batch.id,
        "created_at": iso(batch.created_at),
        "status": batch.status,
        "metrics": metrics,
        "webhookUrl": batch.webhook_url,
        "outputUrl": output or "",
    }


# ---- OpenAPI documentation models (mirror the dicts above) ---------------------------------

ModelName = Literal["lipsync-2", "lipsync-1.9.0-beta", "lipsync-2-pro", "react-1", "sync-3"]
GenerationStatus = Literal["PENDING", "PROCESSING", "COMPLETED", "FAILED", "REJECTED"]
BatchStatus = Literal["PENDING", "JOBS_CREATED", "PROCESSING", "COMPLETED", "FAILED"]
AssetType = Literal["AUDIO", "VIDEO", "IMAGE"]


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class ErrorBody(_Open):
    statusCode: int
    message: str | list[str]
    error: str | None = None
    errorCode: str | None = None


class InputItem(_Open):
    type: Literal["video", "audio", "text", "image"]
    url: str | None = Field(None, description="Public http(s) URL (fetched by the worker).")
    assetId: str | None = Field(None, description="An asset id of your organisation.")
    refId: str | None = None
    provider: dict[str, Any] | None = Field(
        None, description="TTS: {name: elevenlabs, voiceId, script, stability?, similarityBoost?}"
    )
    segments_secs: list[list[float]] | None = None
    segments_frames: list[list[int]] | None = None


class GenerateBody(_Open):
    model: ModelName
    input: list[InputItem]
    options: dict[str, Any] | None = Field(
        None,
        description="sync_mode (default loop), model_mode, prompt, temperature, "
        "active_speaker_detection, occlusion_detection_enabled. snake_case keys.",
    )
    segments: list[dict[str, Any]] | None = None
    webhookUrl: str | None = None
    outputFileName: str | None = None


class GenerationOut(_Open):
    id: str
    createdAt: str
    status: GenerationStatus
    model: str
    input: list[dict[str, Any]]
    options: dict[str, Any] | None
    segments: list[dict[str, Any]] | None
    webhookUrl: str | None
    outputUrl: str | None
    outputDuration: float | None
    segmentOutputUrl: str | None
    error: str | None
    error_code: str | None
    errorCode: str | None
    outputFileName: str | None = None
    progress_percent: int | None = None


class CostOut(BaseModel):
    estimatedFrameCount: float
    estimatedGenerationCost: float


class EstimateOut(BaseModel):
    estimatedFrameCount: float
    estimatedGenerationCost: float
    estimatedCredits: float | None


class CountOut(BaseModel):
    count: int


class ModelOut(BaseModel):
    id: str
    name: str
    type: Literal["lipsync", "react"]
    version: str
    description: str | None
    deprecatedAt: str | None


class AssetOut(_Open):
    id: str
    createdAt: str
    updatedAt: str
    name: str | None
    url: str | None
    size: int | None
    format: str | None
    type: AssetType
    inputType: str | None
    durationSeconds: float | None
    thumbnailUrl: str | None
    visibility: Literal["USER", "ORGANIZATION"]
    width: int | None
    height: int | None


class AssetPage(BaseModel):
    items: list[AssetOut]
    nextCursor: str | None
    totalCount: int | None


class UploadRequest(BaseModel):
    fileName: str
    contentType: str
    size: int


class UploadOut(BaseModel):
    uploadUrl: str
    url: str
    expiresIn: int


class RegisterAsset(_Open):
    url: str
    type: AssetType
    name: str | None = None
    visibility: Literal["USER", "ORGANIZATION"] | None = None


class BatchMetricsOut(BaseModel):
    total_generations: int
    success_count: int
    failed_count: int
    pending_count: int


class BatchOut(BaseModel):
    id: str
    created_at: str
    status: BatchStatus
    metrics: BatchMetricsOut
    webhookUrl: str | None
    outputUrl: str


class ValidatedOut(BaseModel):
    status: Literal["VALIDATED"]


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for the §17 error body."""
    return {status: {"model": ErrorBody} for status in statuses}
