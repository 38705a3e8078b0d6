"""Asset thumbnails: a small JPEG of a stored video or photo, for `thumbnailUrl`.

Made by the service worker, not the API: it means decoding the file, which the API never does
for an upload (headers only, fast and safe on hostile input). The API queues one for each
VIDEO or IMAGE asset it stores; a file that cannot be decoded simply has none (the field is
optional), and a lost message too: nothing else depends on it.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import cv2
import numpy as np
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from openlipsync.store.files import Storage
from openlipsync.store.models import Asset, utcnow

log = logging.getLogger(__name__)

WIDTH = 480  # px, at most; the height follows the picture's shape
AT_SECONDS = 1.0  # into a video (a first frame is often black or a fade), or its middle if shorter
JPEG_QUALITY = 85


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
            path = storage.download(source_key, Path(scratch) / "source")
            picture = _picture(path)
        except Exception as exc:  # noqa: BLE001 - any unreadable file: no thumbnail, no retry
            log.info("thumbnail of asset %s: not made (%s)", asset_id, exc)
            return "unreadable"
    storage.put_bytes(key, _jpeg(picture))
    with sessions() as session, session.begin():
        session.execute(
            update(Asset)
            .where(Asset.id == asset_id, Asset.thumbnail_key.is_(None))
            .values(thumbnail_key=key, updated_at=utcnow())
        )
    return "made"


def _picture(path: Path) -> np.ndarray:
    """RGB of the frame shown AT_SECONDS in (or halfway, for a shorter video; a photo's one)."""
    from openlipsync.media.probe import probe
    from openlipsync.media.video import VideoReader

    video = probe(path).video
    if video is None:
        raise ValueError("no picture")
    index = min(round(AT_SECONDS * video.fps), video.frame_count // 2)
    with VideoReader(path, source=video) as reader:
        for number, frame in enumerate(reader):
            if number == index:
                return frame
    raise ValueError("no frame")


def _jpeg(rgb: np.ndarray) -> bytes:
    height, width = rgb.shape[:2]
    if width > WIDTH:
        size = (WIDTH, max(1, round(height * WIDTH / width)))
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    ok, data = cv2.imencode(
        ".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
    )
    if not ok:
        raise ValueError("JPEG encoding failed")
    return data.tobytes()
