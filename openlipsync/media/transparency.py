"""Transparent pictures laid over a plain background, as the output (H.264) has no alpha.

A PNG cut-out of a face (an avatar, a sticker), a GIF with a transparent colour, a WebP or a
HEIC with alpha, a ProRes 4444 or VP9 video with an alpha channel: the colour under a
transparent pixel is whatever the program that saved it left there (black, white, or the
pixels that were cut away). Read as RGB it showed through: a magenta or ghost background.
A photo is laid over white, as image viewers and web pages show one; a video over black, as
video editors do.
"""

from __future__ import annotations

import av
import numpy as np

PHOTO_BACKGROUND = 255
VIDEO_BACKGROUND = 0


def may_be_transparent(fmt: av.VideoFormat) -> bool:
    """Whether pictures of this pixel format can hold transparency (alpha, or a palette
    whose colours may be transparent)."""
    return fmt.has_palette or any(component.is_alpha for component in fmt.components)


def flattened(frame: av.VideoFrame, background: int) -> av.VideoFrame:
    """`frame` over a plain grey level `background` where it is transparent; untouched when
    it is opaque throughout (most frames of a format that could hold alpha)."""
    if not may_be_transparent(frame.format) or _opaque_plane(frame):
        return frame
    rgba = frame.to_ndarray(format="rgba")
    if rgba[..., 3].min() == 255:
        return frame
    out = av.VideoFrame.from_ndarray(over(rgba, background), format="rgb24")
    if frame.time_base is not None:
        out.pts, out.time_base = frame.pts, frame.time_base
    return out


def _opaque_plane(frame: av.VideoFrame) -> bool:
    """Whether a planar alpha channel (ProRes 4444, VP9, gbrap) is opaque throughout, read
    from its own plane: converting a 1080p frame to RGBA only to look costs 13 ms."""
    fmt = frame.format
    alpha = next((c for c in fmt.components if c.is_alpha), None)
    if alpha is None or not fmt.is_planar:
        return False
    plane = frame.planes[alpha.plane]
    dtype = (
        np.dtype(np.uint8) if alpha.bits <= 8 else np.dtype(">u2" if fmt.is_big_endian else "<u2")
    )
    rows = np.frombuffer(plane, dtype).reshape(-1, plane.line_size // dtype.itemsize)
    most = (1 << alpha.bits) - 1
    return round(int(rows[: plane.height, : plane.width].min()) * 255 / most) == 255


def over(rgba: np.ndarray, background: int) -> np.ndarray:
    """RGB uint8 of straight-alpha RGBA uint8 laid over grey `background`."""
    alpha = rgba[..., 3:].astype(np.uint16)
    rgb = rgba[..., :3].astype(np.uint16) * alpha + background * (255 - alpha)
    return ((rgb + 127) // 255).astype(np.uint8)
