"""Smooth image warps driven by a few moved face landmarks (thin-plate spline, backward mapped).

Expressions and blinks move a handful of points (mouth corners, brows, eyelids); everything
else on the face must follow smoothly and everything off the face must stay put. A thin-plate
spline through the moved points plus pinned anchors gives exactly that: it interpolates the
given displacements exactly (so pinned inner lips keep the lip opening to the pixel) and bends
as little as possible in between. It is evaluated on a coarse grid over the face only and
upsampled, so a warp costs a few milliseconds whatever the frame size.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy.interpolate import RBFInterpolator

# Grid step (pixels) of the coarse displacement field.
GRID_STEP = 6
# Face oval of the MediaPipe mesh: pinned so the warp never leaks into hair or background.
FACE_OVAL = [
    *(10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400),
    *(377, 152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109),
]


def warp_points(
    frame: np.ndarray,
    src: np.ndarray,
    dst: np.ndarray,
    region: np.ndarray,
) -> np.ndarray:
    """Warp `frame` so that the content at points `src` (K, 2) appears at `dst` (K, 2).

    `region` [x1, y1, x2, y2] bounds the warp: its border is pinned, pixels outside are
    untouched. Points with src == dst act as pins.
    """
    if frame.ndim != 3 or frame.dtype != np.uint8:
        raise ValueError(f"expected a uint8 (H, W, C) frame, got {frame.shape} {frame.dtype}")
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2:
        raise ValueError(f"src and dst must both be (K, 2), got {src.shape} and {dst.shape}")
    height, width = frame.shape[:2]
    x1, y1, x2, y2 = _clip_region(region, width, height)
    if x2 - x1 < 8 or y2 - y1 < 8 or not np.all(np.isfinite(src) & np.isfinite(dst)):
        return frame.copy()
    if np.abs(src - dst).max() < 1e-3:
        return frame.copy()
    border = _border_points(x1, y1, x2, y2)
    controls = np.vstack([dst, border])
    offsets = np.vstack([src - dst, np.zeros_like(border)])
    controls, keep = np.unique(np.round(controls, 2), axis=0, return_index=True)
    offsets = offsets[keep]
    field = RBFInterpolator(controls, offsets, kernel="thin_plate_spline", smoothing=0.0)
    gx = np.arange(x1, x2 + GRID_STEP, GRID_STEP, dtype=np.float64)
    gy = np.arange(y1, y2 + GRID_STEP, GRID_STEP, dtype=np.float64)
    grid = np.stack(np.meshgrid(gx, gy), axis=-1).reshape(-1, 2)
    coarse = field(grid).reshape(len(gy), len(gx), 2).astype(np.float32)
    span_w, span_h = x2 - x1, y2 - y1
    # Sample the coarse field at every pixel of the region (linear, grid-aligned).
    px = (np.arange(span_w, dtype=np.float32)) / GRID_STEP
    py = (np.arange(span_h, dtype=np.float32)) / GRID_STEP
    map_x, map_y = np.meshgrid(px, py)
    dx = cv2.remap(coarse[..., 0], map_x, map_y, cv2.INTER_LINEAR)
    dy = cv2.remap(coarse[..., 1], map_x, map_y, cv2.INTER_LINEAR)
    abs_x = dx + np.arange(x1, x2, dtype=np.float32)[None, :]
    abs_y = dy + np.arange(y1, y2, dtype=np.float32)[:, None]
    out = frame.copy()
    out[y1:y2, x1:x2] = cv2.remap(
        frame, abs_x, abs_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
    ).reshape(out[y1:y2, x1:x2].shape)
    return out


def face_region(landmarks: np.ndarray, margin: float = 0.25) -> np.ndarray:
    """Landmark box widened by `margin` of its size on each side: the warp's bounds."""
    low, high = np.nanmin(landmarks, axis=0), np.nanmax(landmarks, axis=0)
    pad = (high - low) * margin
    return np.concatenate([low - pad, high + pad])


def _clip_region(region: np.ndarray, width: int, height: int) -> tuple[int, int, int, int]:
    x1 = int(np.clip(np.floor(region[0]), 0, width))
    y1 = int(np.clip(np.floor(region[1]), 0, height))
    x2 = int(np.clip(np.ceil(region[2]), 0, width))
    y2 = int(np.clip(np.ceil(region[3]), 0, height))
    return x1, y1, x2, y2


def _border_points(x1: int, y1: int, x2: int, y2: int, count: int = 8) -> np.ndarray:
    xs = np.linspace(x1, x2, count)
    ys = np.linspace(y1, y2, count)
    top = np.stack([xs, np.full(count, y1)], axis=1)
    bottom = np.stack([xs, np.full(count, y2)], axis=1)
    left = np.stack([np.full(count, x1), ys], axis=1)
    right = np.stack([np.full(count, x2), ys], axis=1)
    return np.vstack([top, bottom, left[1:-1], right[1:-1]])
