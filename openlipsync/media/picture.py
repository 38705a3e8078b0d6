"""A decoded picture that is converted to RGB only where it is looked at.

The analysis pass needs RGB only around the face (face mesh, mouth library, lip contrast,
hands) and a thumbnail of the whole frame (scene cuts), yet converting every whole 4:2:0 frame
to RGB costs more CPU than decoding it. `YuvPicture` keeps the decoder's planes and converts
regions on demand with the same OpenCV BT.601 conversion as the full frame (so a region's pixels
are exactly the full frame's), and builds the face mesh's small input by reducing the planes
before converting. `RgbPicture` serves the same calls from an RGB frame: the fallback for
inputs the plain conversion does not cover (10-bit, full range, 4:2:2, odd sizes) and for
stills and tests.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import cv2
import numpy as np

if TYPE_CHECKING:
    from av.video.plane import VideoPlane

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 in frame pixels, end exclusive
Planes = tuple[np.ndarray, np.ndarray, np.ndarray]  # Y (H, W), U and V (H/2, W/2)


@dataclass(frozen=True)
class Patch:
    """New RGB pixels for one box of a frame: all the mouth renderer changes. The rest of the
    frame stays the source's, so a 4:2:0 source need not be converted whole (media/encode.py).
    """

    box: Box  # inside the frame
    rgb: np.ndarray  # (y1 - y0, x1 - x0, 3) uint8

    def onto(self, frame: np.ndarray) -> np.ndarray:
        """A copy of the RGB `frame` with the patch painted on."""
        out = frame.copy()
        x0, y0, x1, y1 = self.box
        out[y0:y1, x0:x1] = self.rgb
        return out


class Picture(Protocol):
    height: int
    width: int

    @property
    def nbytes(self) -> int:
        """Bytes of the decoded picture this holds (not of any RGB made from it)."""
        ...

    def detached(self) -> Picture:
        """The same picture without the RGB conversions it has cached, for keeping."""
        ...

    def fresh_rgb(self) -> np.ndarray:
        """The whole frame as a new RGB uint8 (H, W, 3) array, not kept by the picture."""
        ...

    def rgb(self) -> np.ndarray:
        """The whole frame, RGB uint8 (H, W, 3); computed once."""
        ...

    def planes(self) -> Planes | None:
        """The decoder's 4:2:0 planes (read only), or None for a picture held as RGB."""
        ...

    def region(self, box: Box) -> np.ndarray:
        """RGB of `box` clipped to the frame: the same pixels as rgb()[y0:y1, x0:x1]."""
        ...

    def partial(self, boxes: list[Box], out: np.ndarray) -> np.ndarray:
        """A full-size RGB frame whose `boxes` hold the true pixels, the rest undefined: `out`
        (H, W, 3) filled there, or the picture's own RGB frame when it has one (read only)."""
        ...

    def square(
        self, x0: int, y0: int, size: int, cap: int, edge: bool = False
    ) -> tuple[np.ndarray, float]:
        """A size x size crop at (x0, y0), black outside the frame (or, with `edge`, its edge
        repeated: see padded), shrunk to at most cap px; and the scale applied (crop pixels
        per frame pixel)."""
        ...

    def grey_thumbnail(self, box: Box, size: int) -> np.ndarray:
        """float32 (size, size) area average of `box` (clipped) in grey levels 0..255."""
        ...

    def thumbnail(self, width: int, height: int) -> np.ndarray:
        """RGB (height, width, 3) point sample of the frame on cv2.INTER_NEAREST's grid
        (even sides: a cut detector's thumbnail)."""
        ...


def _clip(box: Box, width: int, height: int) -> Box:
    x0, y0, x1, y1 = box
    return max(int(x0), 0), max(int(y0), 0), min(int(x1), width), min(int(y1), height)


def even_box(box: Box, width: int, height: int) -> Box:
    """`box` (inside a frame of even sides) widened to even corners: whole 2x2 chroma blocks."""
    x0, y0, x1, y1 = box
    return x0 & ~1, y0 & ~1, min((x1 + 1) & ~1, width), min((y1 + 1) & ~1, height)


def padded_square(frame: np.ndarray, x0: int, y0: int, size: int, edge: bool = False) -> np.ndarray:
    """size x size crop at (x0, y0) of an RGB frame; parts outside the frame are black, or
    (`edge`) repeat its edge (black when the crop misses the frame)."""
    height, width = frame.shape[:2]

    def read(box: Box) -> np.ndarray:
        return frame[box[1] : box[3], box[0] : box[2]]

    return padded_read(read, (x0, y0, size), (width, height), edge)


def padded_read(
    read: Callable[[Box], np.ndarray],
    square: tuple[int, int, int],
    frame_size: tuple[int, int],
    edge: bool,
) -> np.ndarray:
    """The (x0, y0, size) `square` of a picture of `frame_size` (width, height) whose RGB
    pixels `read` gives for a box inside it, padded outside it as `padded` pads."""
    x0, y0, size = square
    sx0, sy0, sx1, sy1 = _clip((x0, y0, x0 + size, y0 + size), *frame_size)
    if sx1 <= sx0 or sy1 <= sy0:
        return np.zeros((size, size, 3), np.uint8)
    return padded(read((sx0, sy0, sx1, sy1)), sy0 - y0, sx0 - x0, size, edge)


def padded(inside: np.ndarray, top: int, left: int, size: int, edge: bool) -> np.ndarray:
    """`inside` at (left, top) of a size x size crop, black around it or its edge repeated.

    A face cut by the frame's edge, on black, can be no face to the face mesh; on its own
    edge repeated outwards it is found, and the visible part of its landmarks lands where it
    should (the visible mouth corner within 3 px on a GRID face cut through the mouth; the
    one outside the frame is a guess). Reflecting makes a symmetric face centred on the edge.
    Black stays the default: on faces the mesh finds either way, the repeated edge moved the
    truth bench's median r from 0.857 to 0.840."""
    height, width = inside.shape[:2]
    return cv2.copyMakeBorder(
        np.ascontiguousarray(inside),
        top,
        size - top - height,
        left,
        size - left - width,
        cv2.BORDER_REPLICATE if edge else cv2.BORDER_CONSTANT,
        value=(0, 0, 0),
    )


def shrink_square(crop: np.ndarray, cap: int) -> tuple[np.ndarray, float]:
    """A square crop scaled to at most cap px, and the scale applied.

    General-ratio INTER_AREA is slow on a large face's crop (several ms per frame at 720p): an
    integer box-filter reduction first (OpenCV's fast path), then a bilinear step of under 2x.
    """
    size = crop.shape[0]
    if size <= cap:
        return np.ascontiguousarray(crop), 1.0
    step = size // cap
    if step < 2:  # small reduction: AREA is cheap here and keeps the mesh input as it was
        return cv2.resize(crop, (cap, cap), interpolation=cv2.INTER_AREA), cap / size
    size = size // step * step
    crop = cv2.resize(crop[:size, :size], (size // step,) * 2, interpolation=cv2.INTER_AREA)
    crop = cv2.resize(crop, (cap, cap), interpolation=cv2.INTER_LINEAR)
    return crop, cap / size


def source_box(to_dst: np.ndarray, size: tuple[int, int], margin: int = 2) -> Box:
    """The frame box that cv2.warpAffine(frame, to_dst, size) reads (interpolation margin
    included): the bounding box of the output rectangle mapped back."""
    width, height = size
    (a, b, tx), (c, d, ty) = to_dst.astype(np.float64).tolist()
    det = a * d - b * c  # the 2x2 inverse in closed form: LAPACK costs more than the sums
    xs, ys = [], []
    for u, v in ((0, 0), (width, 0), (0, height), (width, height)):
        u, v = u - tx, v - ty
        xs.append((d * u - b * v) / det)
        ys.append((a * v - c * u) / det)
    x0, y0, x1, y1 = np.floor(min(xs)), np.floor(min(ys)), np.ceil(max(xs)), np.ceil(max(ys))
    return int(x0) - margin, int(y0) - margin, int(x1) + margin + 1, int(y1) + margin + 1


def nearest_grid(size: int, target: int) -> np.ndarray:
    """Source indices cv2.resize(INTER_NEAREST) samples when scaling `size` to `target`."""
    return np.minimum(np.floor(np.arange(target) * (size / target)).astype(np.int64), size - 1)


class RgbPicture:
    """A Picture over an RGB frame."""

    def __init__(self, frame: np.ndarray) -> None:
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"expected an RGB uint8 (H, W, 3) frame, got {frame.shape}")
        self._frame = frame
        self.height, self.width = frame.shape[:2]

    @property
    def nbytes(self) -> int:
        return self._frame.nbytes

    def detached(self) -> RgbPicture:
        return self

    def fresh_rgb(self) -> np.ndarray:
        return self._frame.copy()

    def rgb(self) -> np.ndarray:
        return self._frame

    def planes(self) -> Planes | None:
        return None

    def region(self, box: Box) -> np.ndarray:
        x0, y0, x1, y1 = _clip(box, self.width, self.height)
        return self._frame[y0:y1, x0:x1]

    def partial(self, boxes: list[Box], out: np.ndarray) -> np.ndarray:
        return self._frame

    def square(
        self, x0: int, y0: int, size: int, cap: int, edge: bool = False
    ) -> tuple[np.ndarray, float]:
        inside = x0 >= 0 and y0 >= 0 and x0 + size <= self.width and y0 + size <= self.height
        # Inside the frame a view is enough: padding copies a large face's crop for nothing.
        crop = (
            self._frame[y0 : y0 + size, x0 : x0 + size]
            if inside
            else padded_square(self._frame, x0, y0, size, edge)
        )
        return shrink_square(crop, cap)

    def grey_thumbnail(self, box: Box, size: int) -> np.ndarray:
        grey = cv2.cvtColor(np.ascontiguousarray(self.region(box)), cv2.COLOR_RGB2GRAY)
        return cv2.resize(grey, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32)

    def thumbnail(self, width: int, height: int) -> np.ndarray:
        return cv2.resize(self._frame, (width, height), interpolation=cv2.INTER_NEAREST)


class YuvPicture:
    """A Picture over the planes of an 8-bit limited-range 4:2:0 frame with even sides.

    `y` is (H, W), `u` and `v` are (H/2, W/2); views are fine (rotation is applied to the
    planes, np.rot90, before they get here).
    """

    def __init__(self, y: np.ndarray, u: np.ndarray, v: np.ndarray) -> None:
        self.height, self.width = y.shape
        half = (self.height // 2, self.width // 2)
        if self.height % 2 or self.width % 2 or u.shape != half or v.shape != half:
            raise ValueError(f"planes {y.shape} {u.shape} {v.shape} are not 4:2:0, even sides")
        self._y, self._u, self._v = y, u, v
        self._rgb: np.ndarray | None = None

    @classmethod
    def from_rgb(cls, rgb: np.ndarray) -> YuvPicture:
        """An RGB picture of even sides as the encoder's planes (its conversion, so nothing
        changes), keeping `rgb` for the regions read of it: a photo shown in every output
        frame is then copied plane by plane, and only what changes is converted."""
        height, width = rgb.shape[:2]
        i420 = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2YUV_I420)
        chroma = i420[height:].reshape(2, height // 2, width // 2)
        picture = cls(i420[:height], chroma[0], chroma[1])
        picture._rgb = rgb
        return picture

    @property
    def nbytes(self) -> int:
        return self._y.nbytes + self._u.nbytes + self._v.nbytes

    def detached(self) -> YuvPicture:
        return YuvPicture(self._y, self._u, self._v) if self._rgb is not None else self

    def fresh_rgb(self) -> np.ndarray:
        if self._rgb is not None:
            return self._rgb.copy()
        return self._convert(0, 0, self.width, self.height)

    def rgb(self) -> np.ndarray:
        if self._rgb is None:
            self._rgb = self._convert(0, 0, self.width, self.height)
        return self._rgb

    def planes(self) -> Planes | None:
        return self._y, self._u, self._v

    def region(self, box: Box) -> np.ndarray:
        x0, y0, x1, y1 = _clip(box, self.width, self.height)
        if x1 <= x0 or y1 <= y0:
            return np.zeros((max(y1 - y0, 0), max(x1 - x0, 0), 3), np.uint8)
        if self._rgb is not None:
            return self._rgb[y0:y1, x0:x1]
        # Chroma is shared by 2x2 blocks: convert the even-aligned box, then trim to it.
        ex0, ey0, ex1, ey1 = even_box((x0, y0, x1, y1), self.width, self.height)
        rgb = self._convert(ex0, ey0, ex1, ey1)
        return rgb[y0 - ey0 : y1 - ey0, x0 - ex0 : x1 - ex0]

    def partial(self, boxes: list[Box], out: np.ndarray) -> np.ndarray:
        if self._rgb is not None:
            return self._rgb
        if out.shape != (self.height, self.width, 3) or out.dtype != np.uint8:
            raise ValueError(f"out must be uint8 {(self.height, self.width, 3)}, got {out.shape}")
        for box in boxes:
            x0, y0, x1, y1 = _clip(box, self.width, self.height)
            if x1 > x0 and y1 > y0:
                out[y0:y1, x0:x1] = self.region((x0, y0, x1, y1))
        return out

    def square(
        self, x0: int, y0: int, size: int, cap: int, edge: bool = False
    ) -> tuple[np.ndarray, float]:
        if size <= cap or cap % 2:  # small faces: the exact pixels, through the RGB path
            return self._exact_square(x0, y0, size, cap, edge)
        return self._reduced_square(x0, y0, size, cap, edge)

    def _exact_square(
        self, x0: int, y0: int, size: int, cap: int, edge: bool
    ) -> tuple[np.ndarray, float]:
        crop = padded_read(self.region, (x0, y0, size), (self.width, self.height), edge)
        return RgbPicture(crop).square(0, 0, size, cap)

    def _reduced_square(
        self, x0: int, y0: int, size: int, cap: int, edge: bool
    ) -> tuple[np.ndarray, float]:
        """The crop reduced on the planes, then one small conversion: each plane is halved
        (2x2 averages) while the rest of the reduction is 2x or more, then resampled
        (bilinear) to the crop's size. Measured on 720p frames (one thread): a 600 px crop
        converted to RGB and area-averaged took 1.5 ms, now 0.5; a 1062 px one reduced by an
        integer box filter on the planes 1.2 ms, now 0.8.

        Pixel centres as cv2.resize's; a chroma sample covers 2x2 luma pixels, as in the I420
        conversion. Outside the frame the crop is black, or its edge repeated (see padded).
        """
        factor = cap / size
        if x0 >= self.width or y0 >= self.height or x0 + size <= 0 or y0 + size <= 0:
            return np.zeros((cap, cap, 3), np.uint8), factor
        halvings = max(0, int(np.floor(np.log2(size / cap))))
        # The planes' region read: the crop (and a margin for the resampling) inside the frame,
        # on whole blocks of 2 ** (halvings + 1) luma pixels so that chroma halves with luma.
        block = 2 ** (halvings + 1)
        rx0, ry0 = max(x0 - block, 0) // block * block, max(y0 - block, 0) // block * block
        rx1 = rx0 + (min(x0 + size + block, self.width) - rx0) // block * block
        ry1 = ry0 + (min(y0 + size + block, self.height) - ry0) // block * block
        if rx1 <= rx0 or ry1 <= ry0:  # only a sliver inside the frame
            return self._exact_square(x0, y0, size, cap, edge)
        planes = [
            self._y[ry0:ry1, rx0:rx1],
            self._u[ry0 // 2 : ry1 // 2, rx0 // 2 : rx1 // 2],
            self._v[ry0 // 2 : ry1 // 2, rx0 // 2 : rx1 // 2],
        ]
        for _ in range(halvings):
            planes = [
                cv2.resize(p, (p.shape[1] // 2, p.shape[0] // 2), interpolation=cv2.INTER_AREA)
                for p in planes
            ]
        # Crop pixel o shows frame x0 + (o + 0.5) / factor - 0.5; a halved plane's pixel p
        # shows rx0 + (p + 0.5) * scale - 0.5 (luma), a chroma pixel rx0 + (p + 0.5) * 2 *
        # scale - 0.5, with chroma crop pixel o covering crop pixels 2 o and 2 o + 1.
        scale = 2.0**halvings
        step = 1.0 / (factor * scale)

        def to_plane(sub: int) -> np.ndarray:
            offset_x = (x0 - rx0 + sub * 0.5 / factor) / (sub * scale) - 0.5
            offset_y = (y0 - ry0 + sub * 0.5 / factor) / (sub * scale) - 0.5
            return np.array([[step, 0.0, offset_x], [0.0, step, offset_y]])

        border = cv2.BORDER_REPLICATE if edge else cv2.BORDER_CONSTANT
        flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
        out = [
            cv2.warpAffine(
                plane,
                to_plane(sub),
                (cap // sub,) * 2,
                flags=flags,
                borderMode=border,
                borderValue=black,
            )
            for plane, sub, black in zip(planes, (1, 2, 2), (16, 128, 128), strict=True)
        ]
        return _i420_to_rgb(*out), factor

    def grey_thumbnail(self, box: Box, size: int) -> np.ndarray:
        # Through RGB, not from luma alone ((Y - 16) * 255 / 219 is the same grey up to
        # rounding): rounding moved SparseTracker's decisions on a frame or two.
        return RgbPicture(self.region(box)).grey_thumbnail((0, 0, 1 << 30, 1 << 30), size)

    def thumbnail(self, width: int, height: int) -> np.ndarray:
        """cv2.resize(rgb(), (width, height), INTER_NEAREST) but for chroma, which is sampled
        once per 2x2 block of the thumbnail (a cut detector's colour histogram cannot tell)."""
        rows, cols = nearest_grid(self.height, height), nearest_grid(self.width, width)
        y = self._y[rows][:, cols]
        if width % 2 or height % 2:
            return RgbPicture(self.rgb()).thumbnail(width, height)
        u = self._u[rows[::2] // 2][:, cols[::2] // 2]
        v = self._v[rows[::2] // 2][:, cols[::2] // 2]
        return _i420_to_rgb(y, u, v)

    def _convert(self, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
        """RGB of an even-aligned box."""
        return _i420_to_rgb(
            self._y[y0:y1, x0:x1],
            self._u[y0 // 2 : y1 // 2, x0 // 2 : x1 // 2],
            self._v[y0 // 2 : y1 // 2, x0 // 2 : x1 // 2],
        )


def plane_array(plane: VideoPlane) -> np.ndarray:
    """A (height, width) view of one plane of a frame, no copy: it keeps the frame's buffer
    alive (reference-counted by FFmpeg, so the decoder never paints over it), and copying the
    planes out cost the decoding thread a millisecond per 720p frame."""
    rows = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)
    return rows[:, : plane.width]


def _i420_to_rgb(y: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """OpenCV's BT.601 limited-range 4:2:0 conversion of three planes (even luma sides)."""
    height, width = y.shape
    buffer = np.empty((height * 3 // 2, width), np.uint8)
    buffer[:height] = y
    chroma = buffer[height:].reshape(2, height // 2, width // 2)  # a view: U then V
    chroma[0] = u
    chroma[1] = v
    return cv2.cvtColor(buffer, cv2.COLOR_YUV2RGB_I420)
