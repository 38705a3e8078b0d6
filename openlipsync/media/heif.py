"""Photos in HEIF files: HEIC (an iPhone's and many Android phones' default) and AVIF.

FFmpeg opens both as MP4 files. It read a HEIC photo as a video of one frame lasting a second,
so the output was a 1 fps video whose mouth moved once a second, and a phone's photo, a grid of
512-pixel HEVC tiles, as its first tile. libheif (bundled in pillow-heif's wheels) puts the
grid together, crops to the clean aperture and applies the rotation and mirroring the file
asks for. This libheif has no AV1 decoder, so an AVIF photo, one AV1 frame, goes through
FFmpeg's dav1d as a still; a tiled AVIF is refused with a clear error, not shown as a tile.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from openlipsync.engine.errors import MediaUnreadable
from openlipsync.media.boxes import BoxOverrun, walk

HEVC_BRANDS = frozenset({"heic", "heix", "heim", "heis"})
"""ISOBMFF brands of HEVC-coded HEIF images (not image sequences: those are videos)."""
IMAGE_BRANDS = frozenset({"mif1", "mif2", "miaf"})
"""Brands that say 'image file' whatever the codec; the codec's brand tells which."""
HEIF_CODEC = "heif"  # VideoInfo.codec of a photo that libheif decodes


def photo_kind(path: str | Path) -> str | None:
    """The kind of photo `path` holds: "heif" (HEVC-coded, for libheif), "avif" (for FFmpeg),
    or None (not a HEIF file: anything else, videos in MP4 and MOV included)."""
    found = _brands(Path(path))
    if found is None:
        return None
    major, compatible = found
    if major == "avif" or (major in IMAGE_BRANDS and "avif" in compatible):
        return "avif"
    if major in HEVC_BRANDS or (major in IMAGE_BRANDS and HEVC_BRANDS & compatible):
        return "heif"
    return None


def _brands(path: Path) -> tuple[str, frozenset[str]] | None:
    """(major brand, compatible brands) of an ISOBMFF file's leading `ftyp` box, if any."""
    try:
        with path.open("rb") as file:
            head = file.read(256)
    except OSError:
        return None
    size = int.from_bytes(head[:4], "big")
    if len(head) < 16 or head[4:8] != b"ftyp" or not 16 <= size <= len(head):
        return None
    names = [head[i : i + 4].decode("latin-1") for i in range(16, size - 3, 4)]
    return head[8:12].decode("latin-1"), frozenset(names)


def heif_size(path: Path) -> tuple[int, int]:
    """(width, height) as shown, from the headers alone (nothing is decoded)."""
    _check_complete(path)
    return _opened(path).size


def _check_complete(path: Path) -> None:
    """Raise MediaUnreadable when a top-level box runs past the end of the file: libheif
    decodes a photo cut short (a broken download) with its missing tiles left black."""
    with path.open("rb") as file:
        try:
            for _ in walk(file, 0, path.stat().st_size):
                pass
        except BoxOverrun:
            message = f"{path.name}: the photo is cut short (incomplete file)"
            raise MediaUnreadable(message) from None


def read_heif(path: Path) -> np.ndarray:
    """The primary image as shown: RGB uint8 (H, W, 3), or RGBA (H, W, 4) with transparency
    (media/transparency.py lays it over a background); 10-bit HDR brought to 8 bits."""
    try:
        pixels = np.asarray(_opened(path))
    except (ValueError, RuntimeError, OSError) as exc:
        raise MediaUnreadable(f"{path.name}: the photo cannot be decoded ({exc})") from exc
    if pixels.ndim == 2:
        pixels = np.repeat(pixels[..., None], 3, axis=2)
    return np.ascontiguousarray(pixels[..., :4])


def heif_profile(path: Path) -> bytes | None:
    """The photo's ICC profile (a phone's Display P3), if it carries one."""
    try:
        return _opened(path).info.get("icc_profile") or None
    except MediaUnreadable:
        return None


def _opened(path: Path):  # type: ignore[no-untyped-def]
    import pillow_heif

    try:
        return pillow_heif.open_heif(path, convert_hdr_to_8bit=True)
    except (ValueError, RuntimeError, OSError) as exc:
        raise MediaUnreadable(f"{path.name}: not a readable HEIF photo ({exc})") from exc
