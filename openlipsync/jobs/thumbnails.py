"""Asset thumbnails: a small JPEG of a stored video or photo, for `thumbnailUrl`; and, for
an asset registered by a public URL, what an upload's probe tells at registration (its size,
duration, frame rate, width and height), which nothing filled in before.

Made by the service worker, not the API: it means decoding the file (and fetching a URL),
which the API never does (headers only, fast and safe on hostile input). The API queues one
for each VIDEO or IMAGE asset it stores and for each URL it registers; the reaper queues the
ones a lost message or a dead worker left without, and those of assets from before this
(`missing`). A file that cannot be fetched or decoded gets `NONE`, so that it is tried once:
`thumbnailUrl` stays null; so does a URL's sound, which has no picture but was read.
"""

from __future__ import annotations

import logging
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from openlipsync.jobs.fetch import FetchError, fetch_within_limits
from openlipsync.media.probe import MediaInfo, VideoInfo, probe
from openlipsync.settings import Settings
from openlipsync.store.files import LocalStorage, Storage
from openlipsync.store.models import Asset, utcnow

log = logging.getLogger(__name__)

WIDTH = 480  # px, at most; the height follows the picture's shape
AT_SECONDS = 1.0  # into a video (a first frame is often black or a fade), or its middle if shorter
JPEG_QUALITY = 85
NONE = ""  # thumbnail_key of an asset tried and found without a picture: no retry
RETRY_SECONDS = 60.0  # how long a queued thumbnail may take before the reaper queues it again
PICTURES = ("VIDEO", "IMAGE")


def make_thumbnail(
    sessions: sessionmaker[Session], storage: Storage, settings: Settings, asset_id: str
) -> str:
    """Make and store the thumbnail of asset `asset_id` (describing a URL's file on the way);
    returns what happened (for the log)."""
    with sessions() as session:
        asset = session.get(Asset, asset_id)
        if asset is None or not _wanted(asset):
            return "none needed"
        if asset.thumbnail_key is not None:
            return "exists"
        kind, source_key, url = asset.type, asset.storage_key, asset.source_url
    with tempfile.TemporaryDirectory(prefix="openlipsync-thumb-") as scratch:
        try:
            if source_key is not None:
                path, size = _stored(storage, source_key, Path(scratch)), None
            else:
                assert url is not None
                path, size = _fetched(url, Path(scratch), settings)
            info = probe(path)  # reads every packet: once for both
            details = {} if size is None else _details(info, size)
            picture = _picture(path, info.video) if kind in PICTURES else None
        except Exception as exc:  # noqa: BLE001 - any unreadable file: no thumbnail, no retry
            log.info("thumbnail of asset %s: not made (%s)", asset_id, exc)
            _settle(sessions, asset_id, NONE, {})
            return "unreadable"
    if picture is None:
        _settle(sessions, asset_id, NONE, details)
        return "described"
    key = f"thumbnails/{asset_id}.jpg"
    storage.put_bytes(key, _jpeg(*picture))
    _settle(sessions, asset_id, key, details)
    return "made"


def _wanted(asset: Asset) -> bool:
    """A stored picture (a thumbnail to make), or a registered URL (a file to describe)."""
    if asset.storage_key is not None:
        return asset.type in PICTURES
    return asset.source_url is not None


def _stored(storage: Storage, key: str, scratch: Path) -> Path:
    if isinstance(storage, LocalStorage):  # read in place: no copy of a long video
        return storage.path(key)
    return storage.download(key, scratch / "source")


def _fetched(url: str, scratch: Path, settings: Settings) -> tuple[Path, int]:
    """The URL's file (and its size), fetched under the same limits as a generation's inputs."""
    try:
        fetched = fetch_within_limits(url, scratch / "source", settings)
    except FetchError as exc:
        raise ValueError(f"{url} could not be fetched: {exc.message}") from exc
    return fetched.path, fetched.size


def _details(info: MediaInfo, size: int) -> dict[str, Any]:
    """The asset's columns an upload's probe fills (None where the file has no such thing)."""
    video, audio = info.video, info.audio
    moving = video is not None and not video.is_still
    duration = video.duration if moving else (audio.duration if audio is not None else None)
    return {
        "size": size,
        "duration_seconds": duration,
        "fps": video.fps if moving else None,
        "width": video.width if video is not None else None,
        "height": video.height if video is not None else None,
    }


def missing(session: Session, limit: int = 100) -> list[str]:
    """Stored VIDEO and IMAGE assets and registered URLs without a thumbnail or a try at one,
    untouched for RETRY_SECONDS; each is touched, so that it is queued again at most that
    often."""
    stored_picture = Asset.storage_key.is_not(None) & Asset.type.in_(PICTURES)
    registered_url = Asset.storage_key.is_(None) & Asset.source_url.is_not(None)
    ids = session.scalars(
        select(Asset.id)
        .where(
            or_(stored_picture, registered_url),
            Asset.thumbnail_key.is_(None),
            Asset.updated_at < utcnow() - timedelta(seconds=RETRY_SECONDS),
        )
        .limit(limit)
    ).all()
    for asset_id in ids:
        session.execute(update(Asset).where(Asset.id == asset_id).values(updated_at=utcnow()))
    session.commit()
    return list(ids)


def _settle(
    sessions: sessionmaker[Session], asset_id: str, key: str, details: dict[str, Any]
) -> None:
    with sessions() as session, session.begin():
        session.execute(
            update(Asset)
            .where(Asset.id == asset_id, Asset.thumbnail_key.is_(None))
            .values(thumbnail_key=key, updated_at=utcnow(), **details)
        )


def _picture(path: Path, video: VideoInfo | None) -> tuple[np.ndarray, float]:
    """(RGB of the frame shown AT_SECONDS in, or halfway through a shorter video, or a photo's
    one; the shape of its pixels, width / height); `video` is the file's probe."""
    from openlipsync.media.video import VideoReader

    if video is None:
        raise ValueError("no picture")
    index = min(round(AT_SECONDS * video.fps), video.frame_count // 2)
    with VideoReader(path, source=video) as reader:
        for number, picture in enumerate(reader.pictures()):
            if number == index:
                return picture.fresh_rgb(), float(video.aspect)
    raise ValueError("no frame")


def _jpeg(rgb: np.ndarray, aspect: float) -> bytes:
    """At most WIDTH wide, in the shape it is shown in (anamorphic pixels made square)."""
    height, width = rgb.shape[:2]
    shown = width * aspect
    out_width = min(WIDTH, max(1, round(shown)))
    out_height = max(1, round(height * out_width / shown))
    if (out_width, out_height) != (width, height):
        rgb = cv2.resize(rgb, (out_width, out_height), interpolation=cv2.INTER_AREA)
    ok, data = cv2.imencode(
        ".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
    )
    if not ok:
        raise ValueError("JPEG encoding failed")
    return data.tobytes()
