"""Burnt-in captions over the lower face: kept as they are, never warped with the mouth.

Social video often carries its subtitles in the picture, and a close-up puts them across the
chin or the mouth. The renderer pastes the lower face from another moment, warped: letters
there were bent with the jaw, half-covered by the new mouth, and the donor frame's own letters
came along as ghosts. Caption text is drawn to be read over anything: a bright fill with a dark
outline or shadow on both sides of each stroke, in lines wider than a mouth. Such strokes where
no lips are mark the rows of a caption; in those rows every outlined stroke, on the lips too,
is left as the frame has it, and nothing is taken from a donor frame's own.

Teeth and a wet lip's highlight are bright beside a dark mouth too, but only on the lips: a
frame without outlined strokes outside its lips has no caption rows and nothing is kept.
"""

from __future__ import annotations

import cv2
import numpy as np

FILL = 170  # luma of a caption's fill: white or yellow letters
OUTLINE = 90  # luma under which the outline or shadow around a stroke lies...
CONTRAST = 110  # ...and this much darker than the fill beside it
REACH = 0.015  # of the picture's height: fill to outline, across a whole stroke (captions
# are sized to the picture, not to the face)
MIN_LETTERS = 3  # separate strokes side by side outside the lips: a line of text
MIN_STROKE_PIXELS = 3
LINE = 3.0  # a caption line spans this many reaches above and below a row that shows it


def reach_for(picture_height: int) -> int:
    """Pixels from a caption stroke's fill to its outline, at most, in a picture this tall."""
    return max(2, round(REACH * picture_height))


def caption_mask(
    rgb: np.ndarray, lips: np.ndarray, reach: int, resampled: bool = False
) -> np.ndarray | None:
    """Float32 (h, w) of `rgb` (uint8 or float, a box around the mouth): 1 on caption text and
    its outline; None when there is none. `lips`: (n, 2) outer-lip points in the box's pixels.
    A `resampled` picture (a donor mouth warped into place) has soft strokes whose fill is
    found in part: its mask reaches across their whole outline."""
    luma = cv2.cvtColor(np.ascontiguousarray(rgb, np.uint8), cv2.COLOR_RGB2GRAY)
    beside = (luma >= FILL) & ~_on_lips(luma.shape, lips, reach)
    if int(beside.sum()) < MIN_LETTERS * MIN_STROKE_PIXELS:  # most frames: nothing bright
        return None
    outlined = _outlined(luma, reach)
    rows = _caption_rows(beside & outlined, reach)
    if rows is None:
        return None
    text = ((luma >= FILL) & outlined & rows[:, None]).astype(np.uint8)
    grow = (2 * reach if resampled else reach) + 2  # across the outline beyond the fill
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (grow, grow))
    return cv2.dilate(text, kernel).astype(np.float32)


def _on_lips(shape: tuple[int, int], lips: np.ndarray, reach: int) -> np.ndarray:
    """The lips grown by a reach (a lip's highlight at their edge): teeth and highlights
    are bright and outlined too, and there alone they never make a caption."""
    mask = np.zeros(shape, np.uint8)
    cv2.fillPoly(mask, [np.round(lips).astype(np.int32)], 1)
    return cv2.dilate(mask, np.ones((2 * reach + 1, 2 * reach + 1), np.uint8)) > 0


def _outlined(luma: np.ndarray, reach: int) -> np.ndarray:
    """Pixels with a much darker one within `reach` on both sides, across or along."""
    level = luma.astype(np.int16)
    limit = np.minimum(level - CONTRAST, OUTLINE)

    def darkest(width: int, height: int, anchor: tuple[int, int]) -> np.ndarray:
        kernel = np.ones((height, width), np.uint8)
        return cv2.erode(luma, kernel, anchor=anchor, borderType=cv2.BORDER_REPLICATE)

    span = reach + 1
    left, right = darkest(span, 1, (reach, 0)), darkest(span, 1, (0, 0))
    up, down = darkest(1, span, (0, reach)), darkest(1, span, (0, 0))
    across = (left < limit) & (right < limit)
    along = (up < limit) & (down < limit)
    return across | along


def _caption_rows(strokes: np.ndarray, reach: int) -> np.ndarray | None:
    """Rows of the box a caption line runs through: where MIN_LETTERS separate `strokes`
    (outlined, beside the lips) lie side by side. A white collar's tip against a dark jacket
    is outlined too, but alone."""
    height = strokes.shape[0]
    _, _, stats, centres = cv2.connectedComponentsWithStats(strokes.astype(np.uint8))
    letters = centres[1:, 1][stats[1:, cv2.CC_STAT_AREA] >= MIN_STROKE_PIXELS]
    if letters.size < MIN_LETTERS:
        return None
    grow = int(LINE * reach)
    per_row = np.bincount(np.clip(np.round(letters).astype(int), 0, height - 1), minlength=height)
    near = np.convolve(per_row, np.ones(2 * grow + 1, np.int64), mode="same")
    shown = near >= MIN_LETTERS
    if not shown.any():
        return None
    rows = cv2.dilate(shown.astype(np.uint8)[:, None], np.ones((2 * grow + 1, 1), np.uint8))
    return rows[:, 0].astype(bool)
