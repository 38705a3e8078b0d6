"""Pictures stored on their side (phones' photos and videos) are read, and sized, as shown.

Each file is made from a real upright picture, stored the way a device would store it for
each orientation; Pillow's own `exif_transpose` checks the stored file before the product
reads it, so the expectation does not come from the code under test.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from openlipsync.api.probe import probe as api_probe
from openlipsync.media.orientation import (
    Orientation,
    display_orientation,
    exif_orientation,
    track_orientation,
)
from openlipsync.media.probe import probe
from openlipsync.media.video import VideoReader
from tests.conftest import media_path as media
from tests.media_helpers import psnr, transcode, write_frames

# how a device stores an upright picture for each EXIF orientation (the inverse of what
# exif_transpose applies to show it)
STORED = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def upright() -> Image.Image:
    return Image.open(media("photo/obama.jpg")).convert("RGB")


def stored_photo(tmp_path: Path, orientation: int, suffix: str = "jpg") -> Path:
    picture = upright()
    method = STORED[orientation]
    stored = picture if method is None else picture.transpose(method)
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"orientation{orientation}.{suffix}"
    stored.save(path, exif=exif.tobytes(), quality=95)
    shown = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))
    assert psnr(shown, np.asarray(picture)) > 35  # the file really says how to show it
    return path


def read_both(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The photo as the reader's RGB frames and as its Pictures give it."""
    with VideoReader(path) as reader:
        rgb = next(iter(reader))
        picture = next(reader.pictures()).fresh_rgb()
    return rgb, picture


@pytest.mark.parametrize("orientation", sorted(STORED))
def test_every_exif_orientation_is_shown_upright(tmp_path: Path, orientation: int) -> None:
    path = stored_photo(tmp_path, orientation)
    expected = np.asarray(upright())
    info = probe(path).video
    assert info is not None and (info.width, info.height) == upright().size
    for got in read_both(path):
        assert got.shape == expected.shape
        assert psnr(got, expected) > 30, orientation  # a wrong turn or mirror: about 11 dB


@pytest.mark.parametrize("suffix", ["png", "webp"])
def test_exif_in_other_photo_formats(tmp_path: Path, suffix: str) -> None:
    path = stored_photo(tmp_path, 7, suffix)
    rgb, _ = read_both(path)
    assert psnr(rgb, np.asarray(upright())) > 30
    assert (api_probe(path).width, api_probe(path).height) == upright().size


@pytest.mark.parametrize("orientation", [1, 2, 3, 5, 6, 8])
def test_api_sizes_a_photo_as_shown(tmp_path: Path, orientation: int) -> None:
    info = api_probe(stored_photo(tmp_path, orientation))
    assert (info.kind, info.width, info.height) == ("IMAGE", *upright().size)


@pytest.mark.parametrize("rotation", [0, 90, 180, 270])
@pytest.mark.parametrize("suffix", ["mp4", "mov"])
def test_api_sizes_a_turned_video_as_the_decoder_shows_it(
    tmp_path: Path, rotation: int, suffix: str
) -> None:
    path = transcode(
        media("video/grid_bbaf2n.mpg"), tmp_path / f"turned.{suffix}", "libx264", "aac",
        rotation=rotation,
    )  # fmt: skip
    decoded = probe(path).video
    assert decoded is not None and decoded.rotation == rotation
    track = track_orientation(path)
    assert track is not None and track.shown == Orientation(rotation)
    assert track.ffmpeg_rotation == rotation
    info = api_probe(path)
    assert (info.width, info.height) == (decoded.width, decoded.height)
    assert (info.width, info.height) == ((288, 360) if rotation in (90, 270) else (360, 288))


# The display matrix (a, b, c, d of FFmpeg's 3x3, 16.16) that shows each STORED picture
# upright: a stored point (x, y), y down, is shown at (a x + c y, b x + d y), plus the
# translation a writer adds to keep the picture at the origin (16.16 too, in pixels).
SHOWN_BY = {
    1: (1, 0, 0, 1),
    2: (-1, 0, 0, 1),  # a selfie app's left-right mirror
    3: (-1, 0, 0, -1),
    4: (1, 0, 0, -1),
    5: (0, 1, 1, 0),
    6: (0, 1, -1, 0),  # a phone held upright: a quarter turn clockwise
    7: (0, -1, -1, 0),
    8: (0, -1, 1, 0),
}


def matrix_video(path: Path, stored: np.ndarray, shown_by: tuple[int, int, int, int]) -> Path:
    """`stored` as three frames of H.264 in MP4, its track matrix `shown_by`."""
    a, b, c, d = shown_by
    height, width = stored.shape[:2]
    x = width if (a < 0 or c < 0) else 0  # where a writer puts the mirrored picture back
    y = height if (b < 0 or d < 0) else 0
    matrix = [a << 16, b << 16, 0, c << 16, d << 16, 0, x << 16, y << 16, 1 << 30]
    return write_frames(
        path, [stored] * 3, configure=lambda stream: stream.set_display_matrix(matrix)
    )


@pytest.mark.parametrize("orientation", sorted(STORED))
def test_a_video_track_matrix_that_mirrors_is_shown_mirrored(
    tmp_path: Path, orientation: int
) -> None:
    """FFmpeg reads a left-right mirror as a half turn: such a video came out upside down."""
    shown = np.asarray(upright())[:400, :300]
    method = STORED[orientation]
    image = Image.fromarray(shown)
    stored = np.asarray(image if method is None else image.transpose(method))
    path = matrix_video(tmp_path / "matrix.mp4", stored, SHOWN_BY[orientation])
    info = probe(path).video
    assert info is not None and (info.width, info.height) == (300, 400)
    assert info.mirrored == (orientation in (2, 4, 5, 7))
    rgb, picture = read_both_frames(path)
    assert psnr(rgb, shown) > 35 and psnr(picture, shown) > 35
    assert (api_probe(path).width, api_probe(path).height) == (300, 400)


def read_both_frames(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with VideoReader(path) as reader:
        rgb = next(iter(reader))
    with VideoReader(path) as reader:
        picture = next(reader.pictures()).fresh_rgb()
    return rgb, picture


def test_a_matrix_between_quarter_turns_snaps_to_the_nearest() -> None:
    tilt = np.radians(8)  # a stabiliser's roll
    cos, sin = np.cos(tilt), np.sin(tilt)
    assert display_orientation(-cos, -sin, -sin, cos) == Orientation(0, True)
    assert display_orientation(0, 3, -3, 0) == Orientation(270)  # scaled, a quarter turn clockwise


def test_headers_that_lie_or_stop_short_turn_nothing(tmp_path: Path) -> None:
    path = transcode(
        media("video/grid_bbaf2n.mpg"), tmp_path / "turned.mp4", "libx264", None, rotation=90
    )
    data = path.read_bytes()
    moov = data.index(b"moov") - 4
    cases = {
        "cut in the movie header": data[: moov + 200],
        "a box larger than the file": data[:moov] + b"\xff\xff\xff\xf0moov" + data[moov + 8 :],
        "a box smaller than its header": data[:moov] + b"\x00\x00\x00\x04moov" + data[moov + 8 :],
        "a 64-bit size cut off": data[:moov] + b"\x00\x00\x00\x01moov",
        "a million empty boxes": b"\x00\x00\x00\x08free" * 1_000_000,
        "not a box at all": b"\x1a\x45\xdf\xa3" + bytes(4000),
        "empty": b"",
    }
    for name, content in cases.items():
        broken = tmp_path / "broken.mp4"
        broken.write_bytes(content)
        started = time.monotonic()
        assert track_orientation(broken) is None, name
        assert time.monotonic() - started < 1.0, name
        assert exif_orientation(broken) is None, name
    tkhd = data.index(b"tkhd") - 4
    short = data[:tkhd] + (20).to_bytes(4, "big") + data[tkhd + 4 :]  # tkhd of 20 bytes
    (tmp_path / "short.mp4").write_bytes(short)
    assert track_orientation(tmp_path / "short.mp4") is None  # never an exception


def test_exif_orientations_outside_the_standard_are_ignored(tmp_path: Path) -> None:
    for value in (0, 9, 65535):
        exif = Image.Exif()
        exif[0x0112] = value
        path = tmp_path / f"odd{value}.jpg"
        upright().save(path, exif=exif.tobytes())
        assert exif_orientation(path) is None
        assert np.asarray(read_both(path)[0]).shape == np.asarray(upright()).shape


def test_a_phone_photo_larger_than_the_engine_takes_is_read_scaled_to_fit(
    tmp_path: Path,
) -> None:
    """A current iPhone's 24 MP photo (5712 x 4284, stored on its side with EXIF 6) was refused
    as an unsupported size; it is read upright at 3072 x 4096, its whole picture."""
    shown = upright().resize((4284, 5712), Image.Resampling.LANCZOS)
    path = tmp_path / "IMG_0003.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6
    shown.transpose(Image.Transpose.ROTATE_90).save(path, exif=exif.tobytes(), quality=90)
    info = probe(path).video
    assert info is not None and (info.width, info.height) == (3072, 4096)
    expected = np.asarray(shown.resize((3072, 4096), Image.Resampling.BOX))
    for got in read_both(path):
        assert got.shape == expected.shape
        assert psnr(got, expected) > 35
    assert (api_probe(path).width, api_probe(path).height) == (4284, 5712)  # the file's own
