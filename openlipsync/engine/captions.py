"""Burnt-in captions over the lower face: kept as they are, never warped with the mouth.

Social video often carries its subtitles in the picture, and a close-up puts them across the
chin or the mouth. The renderer pastes the lower face from another moment, warped: letters
there were bent with the jaw, half-covered by the new mouth, and the donor frame's own letters
came along as ghosts. Caption text is drawn to be read over anything: a bright fill, usually
with a dark outline or shadow on both sides of each stroke, in lines wider than a mouth. Such
strokes where no lips are mark the rows of a caption; in those rows every outlined stroke, on
the lips too, is left as the frame has it, and nothing is taken from a donor frame's own.
Letters with nothing around them, or a shadow on one side only, are found as thin strokes
brighter than both sides of them; alone that is weaker evidence, so a line of them needs more
strokes, of one colour, in one row. The renderer looks for the donor's letters in its sharp
library crop (render.MouthRenderer._entry_captions), not in the warped mouth.

Teeth and a wet lip's highlight are bright beside a dark mouth too, but only on the lips: a
frame without such strokes outside its lips has no caption rows and nothing is kept.
"""

from __future__ import annotations

import cv2
import numpy as np

FILL = 170  # luma of a caption's fill: white or yellow letters
OUTLINE = 90  # luma under which the outline or shadow around a stroke lies...
CONTRAST = 110  # ...and this much darker than the fill beside it
STROKE_CONTRAST = 60  # or a thin stroke this much brighter than around it (no outline)
REACH = 0.015  # of the picture's height: fill to outline, across a whole stroke (captions
# are sized to the picture, not to the face)
MIN_LETTERS = 3  # separate strokes side by side outside the lips: a line of text
MIN_STROKE_PIXELS = 3
LINE = 3.0  # a caption line spans this many reaches above and below a row that shows it
MIN_PLAIN_LETTERS = 5  # strokes without an outline in one line: more, and of one colour
SAME_COLOUR = 40  # most a plain letter's mean colour differs from the line's, per channel


def reach_for(picture_height: int) -> int:
    """Pixels from a caption stroke's fill to its outline, at most, in a picture this tall."""
    return max(2, round(REACH * picture_height))


def caption_mask(
    rgb: np.ndarray, lips: np.ndarray, reach: int, where: np.ndarray | None = None
) -> np.ndarray | None:
    """Float32 (h, w) of `rgb` (uint8 or float, a box around the mouth): 1 on caption text and
    its outline; None when there is none. `lips`: (n, 2) outer-lip points in the box's pixels.
    `where` (bool, h x w): the only pixels whose outlined strokes may show a caption line
    (plain strokes need more of one colour, and are not held to it)."""
    pixels = np.ascontiguousarray(rgb, np.uint8)
    luma = cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY)
    beside = (luma >= FILL) & ~_on_lips(luma.shape, lips, reach)
    if int(beside.sum()) < MIN_LETTERS * MIN_STROKE_PIXELS:  # most frames: nothing bright
        return None
    outlined, thin = _outlined(luma, reach), _thin(pixels, reach)
    shown = beside & outlined if where is None else beside & outlined & where
    rows = union(_caption_rows(shown, reach), _plain_rows(beside & thin, pixels, reach))
    if rows is None:
        return None
    strokes = outlined | thin
    text = ((luma >= FILL) & strokes & rows[:, None]).astype(np.uint8)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (reach + 2, reach + 2))
    return cv2.dilate(text, kernel).astype(np.float32)  # across the outline beyond the fill


def union(a: np.ndarray | None, b: np.ndarray | None) -> np.ndarray | None:
    """The pixelwise max of two optional masks (bool or float; None where neither is)."""
    if a is None or b is None:
        return a if b is None else b
    return np.maximum(a, b)


def _on_lips(shape: tuple[int, int], lips: np.ndarray, reach: int) -> np.ndarray:
    """The lips grown by a reach (a lip's highlight at their edge): teeth and highlights
    are bright and outlined too, and there alone they never make a caption."""
    mask = np.zeros(shape, np.uint8)
    cv2.fillPoly(mask, [np.round(lips).astype(np.int32)], 1)
    return cv2.dilate(mask, np.ones((2 * reach + 1, 2 * reach + 1), np.uint8)) > 0


def _outlined(luma: np.ndarray, reach: int) -> np.ndarray:
    """Pixels with a much darker one within `reach` on both sides, across or along."""
    level = luma.astype(np.int16)
    return _flanked(luma, reach, np.minimum(level - CONTRAST, OUTLINE))


def _thin(rgb: np.ndarray, reach: int) -> np.ndarray:
    """Pixels of strokes thinner than half a reach and STROKE_CONTRAST brighter than both
    sides of them in some channel: letters with no outline, or a shadow on one side only,
    white or coloured (yellow stands out in green and red, hardly in luma, over skin). Half a
    reach: a white collar's edge, a band across the box, is wider than a letter's stroke."""
    span = max(2, reach // 2)
    flanked = _flanked(rgb, span, rgb.astype(np.int16) - STROKE_CONTRAST)
    return flanked.any(axis=2) if flanked.ndim == 3 else flanked


def _flanked(image: np.ndarray, reach: int, limit: np.ndarray) -> np.ndarray:
    """Where `image` has a value under `limit` within `reach` on both sides, across or along
    (per channel for a colour image)."""

    def darkest(width: int, height: int, anchor: tuple[int, int]) -> np.ndarray:
        kernel = np.ones((height, width), np.uint8)
        return cv2.erode(image, kernel, anchor=anchor, borderType=cv2.BORDER_REPLICATE)

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
    _, _, stats, centres = cv2.connectedComponentsWithStats(strokes.astype(np.uint8))
    letters = centres[1:, 1][stats[1:, cv2.CC_STAT_AREA] >= MIN_STROKE_PIXELS]
    return _line_rows(letters, strokes.shape[0], int(LINE * reach), MIN_LETTERS, reach)


def _plain_rows(strokes: np.ndarray, rgb: np.ndarray, reach: int) -> np.ndarray | None:
    """Rows of a line of letters without an outline (`strokes`: thin ones beside the lips):
    MIN_PLAIN_LETTERS strokes no taller than a line, of one colour (their fill's), their
    centres within a reach of one row. Thin and bright alone, a collar's edges, a bright
    background's and a cheek's highlights lined up on a portrait: they differ in colour."""
    count, labels, stats, centres = cv2.connectedComponentsWithStats(strokes.astype(np.uint8))
    area = stats[1:, cv2.CC_STAT_AREA].astype(np.float64)
    sized = (area >= MIN_STROKE_PIXELS) & (stats[1:, cv2.CC_STAT_HEIGHT] <= LINE * reach)
    if sized.sum() < MIN_PLAIN_LETTERS:
        return None
    flat = labels.ravel()
    colours = np.stack(
        [np.bincount(flat, rgb[..., c].ravel(), count)[1:] / area for c in range(3)], axis=1
    )[sized]
    alike = np.abs(colours - np.median(colours, axis=0)).max(axis=1) <= SAME_COLOUR
    letters = centres[1:, 1][sized][alike]
    return _line_rows(letters, strokes.shape[0], reach, MIN_PLAIN_LETTERS, reach)


def _line_rows(
    letters: np.ndarray, height: int, near: int, count: int, reach: int
) -> np.ndarray | None:
    """Rows within LINE reaches of one where `count` of the `letters` (their centres' rows)
    lie within `near` rows."""
    if letters.size < count:
        return None
    per_row = np.bincount(np.clip(np.round(letters).astype(int), 0, height - 1), minlength=height)
    shown = np.convolve(per_row, np.ones(2 * near + 1, np.int64), mode="same") >= count
    if not shown.any():
        return None
    grow = int(LINE * reach)
    rows = cv2.dilate(shown.astype(np.uint8)[:, None], np.ones((2 * grow + 1, 1), np.uint8))
    return rows[:, 0].astype(bool)
