"""Putting a warped mouth into the frame: feathered mask, colour match, grain and alpha blend.

The pasted lower face comes from another moment of the video, so its exposure and white balance
can differ slightly; a hard edge or a colour step is what gives a lip-sync away. The colour match
is a smooth offset field interpolated from the skin around the mouth, so the paste agrees with
the frame exactly where the feather blends them. Resampling and cross-fading smooth the paste's
sensor noise away too: on grainy footage a clean oval around the mouth gives it away, so the
missing grain is added back, fresh on every frame as real grain is.
"""

from __future__ import annotations

from functools import cache

import cv2
import numpy as np

# Grain: measured at every GRAIN_STRIDE-th pixel (a statistic needs no more); footage whose
# skin shows less than about MIN_GRAIN grey levels of it (a clean camera) gets next to none.
GRAIN_STRIDE = 4
MIN_GRAIN = 1.0


def polygon_mask(shape: tuple[int, int], polygons: list[np.ndarray], feather: float) -> np.ndarray:
    """Float32 (h, w) mask of the filled polygons, blurred by `feather` pixels (sigma).

    A wide feather is smooth, so it is drawn and blurred at reduced size and scaled up (the blur
    dominates the cost at 720p otherwise).
    """
    factor = max(1, int(feather // 3)) if feather > 0.3 else 1
    height, width = shape
    small = (max(1, -(-height // factor)), max(1, -(-width // factor)))
    mask = np.zeros(small, np.uint8)
    for polygon in polygons:
        points = np.round(np.asarray(polygon, np.float64) / factor * 16).astype(np.int32)
        cv2.fillPoly(mask, [points], 255, lineType=cv2.LINE_AA, shift=4)
    mask = mask.astype(np.float32) / 255.0
    if feather > 0.3:
        mask = cv2.GaussianBlur(mask, (0, 0), feather / factor)
    if factor > 1:
        mask = cv2.resize(
            mask, (small[1] * factor, small[0] * factor), interpolation=cv2.INTER_LINEAR
        )
        mask = np.ascontiguousarray(mask[:height, :width])
    return mask


def match_colour(
    warped: np.ndarray, frame: np.ndarray, weight: np.ndarray, sigma: float
) -> np.ndarray:
    """`warped` shifted by the smooth per-channel offset that makes it agree with `frame` where
    `weight` is high (the skin around the mouth). Computed at low resolution: the field is smooth.
    """
    height, width = weight.shape
    factor = max(1, int(sigma // 4))
    small = (max(1, width // factor), max(1, height // factor))
    w = cv2.resize(weight, small, interpolation=cv2.INTER_AREA)
    diff = cv2.resize(frame.astype(np.float32) - warped, small, interpolation=cv2.INTER_AREA)
    # Robust: where the two disagree in structure (a chin that moved, a lip edge) the difference
    # is not a lighting change; weigh samples down by their distance from the typical offset.
    typical = _weighted_median(diff.reshape(-1, 3), w.reshape(-1))
    spread = np.abs(diff - typical).max(axis=2)
    w = w * np.exp(-((spread / 18.0) ** 2))
    s = max(sigma / factor, 0.5)
    numerator = cv2.GaussianBlur(diff * w[..., None], (0, 0), s)
    denominator = cv2.GaussianBlur(w, (0, 0), s)[..., None]
    total = float(w.sum())
    mean = (diff * w[..., None]).reshape(-1, 3).sum(0) / max(total, 1e-6)
    # Where the ring gives no evidence, fall back to its mean offset.
    confidence = np.clip(denominator / 0.05, 0.0, 1.0)
    offset = confidence * numerator / np.maximum(denominator, 1e-6) + (1 - confidence) * mean
    offset = cv2.resize(offset, (width, height), interpolation=cv2.INTER_LINEAR)
    return warped + offset


def match_grain(warped: np.ndarray, frame: np.ndarray, weight: np.ndarray, seed: int) -> np.ndarray:
    """`warped` (float32) with grain added where it is smoother than `frame` (uint8 or
    float32, same size) on the pixels `weight` marks (the skin around the mouth)."""
    skin = weight[1:-1:GRAIN_STRIDE, 1:-1:GRAIN_STRIDE] > 0.5
    if skin.sum() < 64:
        return warped
    have = _grain(frame, skin)
    if have < MIN_GRAIN:
        return warped
    missing = np.sqrt(max(have**2 - _grain(warped, skin) ** 2, 0.0)) / _detail_gain()
    # Eased in over a grey level: a frame-by-frame on/off would flicker; a slightly smoother
    # paste on a clean picture does not show.
    amount = missing * float(np.clip(missing - MIN_GRAIN, 0.0, 1.0))
    if amount <= 0.05:
        return warped
    noise = np.random.default_rng(seed).standard_normal(warped.shape[:2], np.float32)
    return warped + (noise * amount)[..., None]


def _grain(image: np.ndarray, skin: np.ndarray) -> float:
    """Robust std, on the `skin` pixels, of the green channel (luma's main part) less the mean
    of its four neighbours, at every GRAIN_STRIDE-th pixel (a blur of the whole patch costs
    more than the rest of the paste)."""
    green, step = image[..., 1], GRAIN_STRIDE

    def grid(rows: slice, cols: slice) -> np.ndarray:
        return green[rows, cols][skin].astype(np.float32)

    inner = slice(1, -1, step)
    around = (
        grid(slice(None, -2, step), inner)
        + grid(slice(2, None, step), inner)
        + grid(inner, slice(None, -2, step))
        + grid(inner, slice(2, None, step))
    )
    values = grid(inner, inner) - 0.25 * around
    return float(1.4826 * np.median(np.abs(values - np.median(values))))


@cache
def _detail_gain() -> float:
    """What _grain reads of white noise of std 1."""
    noise = np.random.default_rng(0).standard_normal((258, 258)).astype(np.float32)
    image = np.repeat(noise[..., None], 3, axis=2)
    return _grain(image, np.ones((258, 258), bool)[1:-1:GRAIN_STRIDE, 1:-1:GRAIN_STRIDE])


def blend(frame: np.ndarray, warped: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """uint8 mix of frame and warped by a (h, w) alpha."""
    alpha = np.ascontiguousarray(alpha, np.float32)
    mixed = cv2.blendLinear(
        np.ascontiguousarray(warped, np.float32), frame.astype(np.float32), alpha, 1.0 - alpha
    )
    return cv2.convertScaleAbs(mixed)  # rounds and saturates to uint8 (values are >= 0)


def _weighted_median(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Per-column weighted median of (n, c) values."""
    if weights.sum() <= 1e-6:
        return np.zeros(values.shape[1], np.float32)
    out = np.empty(values.shape[1], np.float32)
    for c in range(values.shape[1]):
        order = np.argsort(values[:, c])
        cumulative = np.cumsum(weights[order])
        out[c] = values[order[np.searchsorted(cumulative, cumulative[-1] / 2)], c]
    return out
