"""The painted mouth interior takes its colour and brightness from the picture it goes into:
grey in black-and-white film, warm on colour film, dim teeth in a dark picture."""

from __future__ import annotations

import numpy as np

from openlipsync.engine.fallback_mouth import paint_gap, paint_interior, teeth_level

IOD = 120.0


def _open_mouth(half: float = 30.0, gap: float = 24.0) -> np.ndarray:
    """(20, 2) inner-lip contour in LIPS_INNER order: left corner, upper lip to the right
    corner, lower lip back, around (100, 100)."""
    upper = [(np.cos(a), -np.sin(a)) for a in np.linspace(np.pi, 0, 11)]
    lower = [(np.cos(a), np.sin(a)) for a in np.linspace(0, np.pi, 11)[1:-1]]
    return np.array(upper + lower) * [half, gap / 2] + [100, 100]


def _painted(lip_rgb: tuple[float, float, float], highlight: float, skin: float) -> np.ndarray:
    image = np.full((200, 200, 3), skin, np.float32)
    inner = _open_mouth()
    painted = paint_interior(image.copy(), inner, IOD, np.array(lip_rgb), highlight, 1.0)
    return painted[90:110, 75:126]  # inside the opening


def test_black_and_white_film_gets_a_grey_interior() -> None:
    inside = _painted((90.0, 90.0, 90.0), 200.0, 150.0)
    assert np.ptp(inside, axis=2).max() < 1.0


def test_colour_film_gets_a_warm_interior_as_strong_as_its_lips() -> None:
    vivid = _painted((180.0, 100.0, 95.0), 200.0, 150.0)
    muted = _painted((120.0, 100.0, 95.0), 200.0, 150.0)  # chroma 0.24: a greyish grading
    warmth = [float((part[..., 0] - part[..., 2]).mean()) for part in (vivid, muted)]
    assert warmth[0] > 10 and 0 < warmth[1] < warmth[0]


def test_teeth_are_white_on_any_skin_but_dim_in_a_dark_picture() -> None:
    assert teeth_level(100.0) == 120.0  # dark skin in good light: still white teeth
    assert teeth_level(200.0) == 216.0
    assert teeth_level(69.0) <= 1.25 * 69  # a picture whose brightest is 69
    dark = _painted((60.0, 40.0, 38.0), 69.0, 45.0)
    assert dark.max() <= 1.25 * 69
    bright = _painted((180.0, 100.0, 95.0), 200.0, 150.0)
    assert bright.max() > 150  # teeth brighter than the skin


def test_a_wider_gap_is_a_grey_cavity_in_black_and_white() -> None:
    image = np.full((200, 200, 3), 150.0, np.float32)
    parted = paint_gap(image, _open_mouth(), 10.0, np.array([90.0, 90.0, 90.0]), IOD)
    assert np.ptp(parted, axis=2).max() < 1.0
    assert parted[100, 100].mean() < 60  # dark in the middle of the gap
