"""Putting a warped mouth into the frame: feathered mask, colour match and alpha blend.

The pasted lower face comes from another moment of the video, so its exposure and white balance
can differ slightly; a hard edge or a colour step is what gives a lip-sync away. The colour match
is a smooth offset field interpolated from the skin around the mouth, so the paste agrees with
the frame exactly where the feather blends them.
"""

from __future__ import annotations

import cv2
import numpy as np


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
