"""Asset thumbnails: a small JPEG of a stored video or photo, for `thumbnailUrl`.

Made by the service worker, not the API: it means decoding the file, which the API never does
for an upload (headers only, fast and safe on hostile input). The API queues one for each
VIDEO or IMAGE asset it stores; the reaper queues the ones a lost message or a dead worker
left without, and those of assets stored before thumbnails existed (`missing`). A file that
cannot be decoded gets `NONE`, so that it is tried once: `thumbnailUrl` stays null.
"""

from __future__ import annotations

import logging
import tempfile
from datetime import timedelta
from pathlib import Path

import cv2
import numpy as np
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from openlipsync.store.files import LocalStorage, Storage
from openlipsync.store.models import Asset, utcnow

log = logging.getLogger(__name__)

WIDTH = 480  # px, at most; the height follows the picture's shape
AT_SECONDS = 1.0  # into a video (a first frame is often black or a fade), or its middle if shorter
JPEG_QUALITY = 85
NONE = ""  # thumbnail_key of an asset tried and found undecodable: no thumbnail, no retry
RETRY_SECONDS = 60.0  # how long a queued thumbnail may take before the reaper queues it again


def make_thumbnail(sessions: sessionmaker[Session], storage: Storage, asset_id: str) -> str:
    """Make and store the thumbnail of asset `asset_id`; returns what happened (for the log)."""
    with sessions() as session:
        asset = session.get(Asset, asset_id)
        if asset is None or asset.type not in ("VIDEO", "IMAGE") or asset.storage_key is None:
            return "none needed"
        if asset.thumbnail_key is not None:
            return "exists"
        source_key = asset.storage_key
    key = f"thumbnails/{asset_id}.jpg"
    with tempfile.TemporaryDirectory(prefix="openlipsync-thumb-") as scratch:
        try:
            if isinstance(storage, LocalStorage):  # read in place: no copy of a long video
                path = storage.path(source_key)
            else:
                path = storage.download(source_key, Path(scratch) / "source")
            picture, aspect = _picture(path)
        except Exception as exc:  # noqa: BLE001 - any unreadable file: no thumbnail, no retry
            log.info("thumbnail of asset %s: not made (%s)", asset_id, exc)
            _settle(sessions, asset_id, NONE)
            return "unreadable"
    storage.put_bytes(key, _jpeg(picture, aspect))
    _settle(sessions, asset_id, key)
    return "made"


def missing(session: Session, limit: int = 100) -> list[str]:
    """Stored VIDEO and IMAGE assets without a thumbnail or a try at one, untouched for
    RETRY_SECONDS; each is touched, so that it is queued again at most that often."""
    ids = session.scalars(
        select(Asset.id)
        .where(
            Asset.type.in_(("VIDEO", "IMAGE")),
            Asset.storage_key.is_not(None),
            Asset.thumbnail_key.is_(None),
            Asset.updated_at < utcnow() - timedelta(seconds=RETRY_SECONDS),
        )
        .limit(limit)
    ).all()
    for asset_id in ids:
        session.execute(update(Asset).where(Asset.id == asset_id).values(updated_at=utcnow()))
    session.commit()
    return list(ids)


def _settle(sessions: sessionmaker[Session], asset_id: str, key: str) -> None:
    with sessions() as session, session.begin():
        session.execute(
            update(Asset)
            .where(Asset.id == asset_id, Asset.thumbnail_key.is_(None))
            .values(thumbnail_key=key, updated_at=utcnow())
        )


def _picture(path: Path) -> tuple[np.ndarray, float]:
    """(RGB of the frame shown AT_SECONDS in, or halfway through a shorter video, or a photo's
    one; the shape of its pixels, width / height)."""
    from openlipsync.media.probe import probe
    from openlipsync.media.video import VideoReader

    video = probe(path).video
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
