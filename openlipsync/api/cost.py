"""Cost estimate (spec §3.5, §14): output frames after `sync_mode` × the model's frame price.

Durations come from what the server already knows without network access: probed assets
(uploads) and TTS scripts (estimated at a speaking rate). Plain URLs are not fetched inside a
request, so when a duration that matters is unknown the estimate is 0 frames / 0 USD and the
extra field `durationKnown` is false (the SDK keeps unknown fields).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from openlipsync.settings import Settings
from openlipsync.store import queries

DEFAULT_FPS = 25.0
WORDS_PER_SECOND = 2.5  # ~150 words per minute, typical read speech


def estimate(
    session: Session, settings: Settings, organization_id: str, body: dict[str, Any]
) -> dict[str, Any]:
    inputs = body["input"]
    assets = queries.assets_by_id(
        session, organization_id, [item["assetId"] for item in inputs if "assetId" in item]
    )
    visual = next(item for item in inputs if item["type"] in ("video", "image"))
    visual_asset = assets.get(visual.get("assetId", ""))
    fps = DEFAULT_FPS
    if visual_asset is not None and visual_asset.type == "VIDEO":
        fps = _asset_fps(visual_asset) or DEFAULT_FPS
    seconds = _output_seconds(body, visual, visual_asset, assets)
    frames = 0 if seconds is None else int(round(seconds * fps))
    price = settings.prices_per_frame.get(body["model"], 0.0)
    return {
        "estimatedFrameCount": frames,
        "estimatedGenerationCost": round(frames * price, 6),
        "durationKnown": seconds is not None,
    }


def _asset_fps(asset: Any) -> float | None:
    fps = asset.fps
    return fps if fps and 1 <= fps <= 240 else None


def _output_seconds(
    body: dict[str, Any], visual: dict, visual_asset: Any, assets: dict[str, Any]
) -> float | None:
    if body["segments"]:
        return sum(segment["endTime"] - segment["startTime"] for segment in body["segments"])
    driver = next(item for item in body["input"] if item["type"] in ("audio", "text"))
    audio = _driver_seconds(driver, assets)
    if visual["type"] == "image":
        return audio
    video = visual_asset.duration_seconds if visual_asset is not None else None
    ranges = visual.get("segments_secs")
    if ranges:
        return sum(end - start for start, end in ranges)
    if audio is None or video is None:
        return None
    return output_duration(video, audio, body["options"].get("sync_mode", "loop"))


def _driver_seconds(driver: dict[str, Any], assets: dict[str, Any]) -> float | None:
    if driver["type"] == "text":
        words = len(driver.get("provider", {}).get("script", "").split())
        return max(1.0, words / WORDS_PER_SECOND)
    asset = assets.get(driver.get("assetId", ""))
    return asset.duration_seconds if asset is not None else None


def output_duration(video: float, audio: float, sync_mode: str) -> float:
    """The §7 matrix: cut_off keeps the shorter, silence the longer, the rest follow the audio."""
    if sync_mode == "cut_off":
        return min(video, audio)
    if sync_mode == "silence":
        return max(video, audio)
    return audio
