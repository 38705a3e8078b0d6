"""Which way up a picture is shown, read from a file's headers (nothing is decoded).

Phones store an upright photo or video on its side and say in the headers how to turn it:
a photo's EXIF orientation, an MP4/MOV track's matrix (tkhd). FFmpeg hands both on as a
display matrix whose rotation PyAV gives as `frame.rotation`, but not whether it mirrors:
a mirrored EXIF orientation (2, 4, 5, 7: some front cameras and editing apps) read as a
rotation alone came out upside down, and so did a video whose track matrix mirrors it (a
selfie app's or an editor's flip: FFmpeg reads a left-right mirror as a half turn). So a
photo's EXIF and an MP4/MOV track's matrix are read here whole (PyAV 18's `frame.side_data`
would give the decoder's matrix, but its objects point into the frame and crashed the garbage
collector), and the API's probe reads both, so that an asset's width and height are those of
the picture as shown.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from openlipsync.media.boxes import BoxOverrun, child, walk

EXIF_ORIENTATION = 0x0112
MAX_MOOV_BYTES = 64 * 1024 * 1024  # a movie header this large is not one a phone wrote


@dataclass(frozen=True)
class Orientation:
    """Turn the decoded picture upright: mirror it left-right if `mirrored`, then rotate it
    `rotation` degrees counter-clockwise (PyAV's `frame.rotation`, np.rot90's direction)."""

    rotation: int = 0  # 0, 90, 180 or 270
    mirrored: bool = False

    @property
    def turned(self) -> bool:
        """Whether width and height trade places."""
        return self.rotation in (90, 270)


# EXIF orientation -> the same as mirror-then-rotate (checked against Pillow's exif_transpose)
_EXIF = {
    1: Orientation(0),
    2: Orientation(0, True),
    3: Orientation(180),
    4: Orientation(180, True),
    5: Orientation(90, True),
    6: Orientation(270),
    7: Orientation(270, True),
    8: Orientation(90),
}
ALL_ORIENTATIONS = tuple(
    Orientation(turn, flip) for flip in (False, True) for turn in range(0, 360, 90)
)


def display_orientation(a: float, b: float, c: float, d: float) -> Orientation:
    """The quarter turn and mirror nearest a track's display matrix, whose linear part maps
    the picture's point (x, y), y down, to (a x + c y, b x + d y) (any common scale). Matrices
    between quarter turns (a few degrees of a stabiliser's roll) snap to the nearest."""
    shown = np.array([[a, c], [b, d]], np.float64)
    return max(ALL_ORIENTATIONS, key=lambda turn: float(np.sum(_linear(turn) * shown)))


def _linear(turn: Orientation) -> np.ndarray:
    """`turn` as a 2x2 map of (x, y), y down: mirror, then quarter turns counter-clockwise."""
    quarter = np.array([[0.0, 1.0], [-1.0, 0.0]])  # (x, y) -> (y, -x): a quarter turn left
    flip = np.diag([-1.0, 1.0]) if turn.mirrored else np.eye(2)
    return np.linalg.matrix_power(quarter, turn.rotation // 90) @ flip


def exif_orientation(path: Path) -> Orientation | None:
    """A photo's EXIF orientation (JPEG, PNG, WebP, TIFF), or None when it has none or its
    headers cannot be read: then the decoder's display matrix, if any, is all there is."""
    from PIL import Image

    try:
        with Image.open(path) as image:  # reads the headers; the pixels are left alone
            value = image.getexif().get(EXIF_ORIENTATION)
    except Exception:  # noqa: BLE001 - any unreadable header: no orientation from it
        return None
    return _EXIF.get(value) if isinstance(value, int) else None


class TrackTurn(NamedTuple):
    shown: Orientation  # what the track matrix asks for, mirroring included
    ffmpeg_rotation: int  # the quarter turn FFmpeg reads from it (`frame.rotation`)


def track_orientation(path: Path) -> TrackTurn | None:
    """How an MP4/MOV file's first video track asks to be shown (`display_orientation` of its
    tkhd matrix), with the quarter turn FFmpeg reads from that matrix (a mirror is a half turn
    to it), so a caller can tell the matrix is the one its decoder applied. None when the file
    has no such track or is not ISOBMFF or is broken."""
    try:
        with path.open("rb") as file:
            matrix = _video_track_matrix(file, path.stat().st_size)
    except (OSError, BoxOverrun):
        return None
    if matrix is None:
        return None
    a, b, c, d = matrix
    degrees = math.degrees(math.atan2(-b, a))  # the sign of FFmpeg's display matrix reading
    return TrackTurn(display_orientation(a, b, c, d), round(degrees / 90) % 4 * 90)


def _video_track_matrix(file, end: int) -> tuple[float, ...] | None:  # type: ignore[no-untyped-def]
    """(a, b, c, d) of the tkhd matrix of the first track whose handler is 'vide'."""
    moov = next((box for box in walk(file, 0, end) if box.kind == b"moov"), None)
    if moov is None or moov.size > MAX_MOOV_BYTES:
        return None
    for trak in walk(file, moov.start, moov.end):
        if trak.kind != b"trak":
            continue
        header, media = child(file, trak, b"tkhd"), child(file, trak, b"mdia")
        handler = child(file, media, b"hdlr") if media is not None else None
        if header is None or handler is None or handler.size < 12:
            continue
        file.seek(handler.start + 8)  # version/flags, pre_defined, then the handler type
        if file.read(4) != b"vide":
            continue
        return _matrix_abcd(file, header)
    return None


def _matrix_abcd(file, header) -> tuple[float, ...] | None:  # type: ignore[no-untyped-def]
    file.seek(header.start)
    version = file.read(1)
    # after version/flags: times and ids (32 or 64-bit), then reserved, layer, group, volume
    offset = 4 + (32 if version == b"\x01" else 20) + 16
    if header.size < offset + 20:
        return None
    file.seek(header.start + offset)
    raw = file.read(20)  # a, b, u (2.30), c, d
    a, b, _, c, d = (
        int.from_bytes(raw[k : k + 4], "big", signed=True) / 65536 for k in range(0, 20, 4)
    )
    return a, b, c, d
