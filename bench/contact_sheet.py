"""A one-glance picture of lip sync: lower-face crops over time above the curves that drive them.

Numbers say whether the mouth follows the sound; only a picture shows whether it looks like a
mouth doing so (smeared teeth, a frozen jaw or a mechanical flap all pass a correlation).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.dlib_landmarks import LOWER_FACE


def lower_face_box(points: np.ndarray, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) around jaw, nose base and lips of one 68-point face, padded 15%."""
    pts = points[LOWER_FACE]
    x0, y0 = np.nanmin(pts, axis=0)
    x1, y1 = np.nanmax(pts, axis=0)
    pad_x, pad_y = 0.15 * (x1 - x0), 0.15 * (y1 - y0)
    height, width = shape[:2]
    return (
        int(max(0, x0 - pad_x)),
        int(max(0, y0 - pad_y)),
        int(min(width, x1 + pad_x)),
        int(min(height, y1 + pad_y)),
    )


def _crop(frame: np.ndarray, points: np.ndarray | None, size: int) -> np.ndarray:
    import cv2

    if points is None or not np.isfinite(points).all():
        h, w = frame.shape[:2]
        box = (w // 4, h // 2, 3 * w // 4, h)
    else:
        box = lower_face_box(points, frame.shape)
    x0, y0, x1, y1 = box
    crop = frame[y0:y1, x0:x1]
    if crop.size == 0:
        crop = frame
    return cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)


def save_contact_sheet(
    path: Path,
    frames: list[np.ndarray],
    points: np.ndarray | None,
    curves: dict[str, np.ndarray],
    fps: float,
    title: str = "",
    crops: int = 12,
) -> Path:
    """Write a PNG: `crops` evenly spaced lower-face crops, then each curve over time (each curve
    min-max scaled so shapes compare), with the cropped frames marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    count = len(frames)
    if count == 0:
        raise ValueError("no frames to draw")
    picks = np.unique(np.linspace(0, count - 1, min(crops, count)).round().astype(int))
    tiles = [_crop(frames[i], None if points is None else points[i], 96) for i in picks]
    figure, (top, bottom) = plt.subplots(
        2, 1, figsize=(max(8.0, 1.1 * len(tiles)), 5.0), height_ratios=[1.0, 1.4]
    )
    top.imshow(np.concatenate(tiles, axis=1))
    top.set_xticks([96 * k + 48 for k in range(len(tiles))])
    top.set_xticklabels([f"{i / fps:.2f}s" for i in picks], fontsize=7)
    top.set_yticks([])
    top.set_title(title, fontsize=9)
    seconds = np.arange(count) / fps
    for name, values in curves.items():
        values = np.asarray(values, np.float64)[:count]
        span = np.nanmax(values) - np.nanmin(values)
        scaled = (values - np.nanmin(values)) / (span if span > 0 else 1.0)
        bottom.plot(seconds[: values.size], scaled, label=name, linewidth=1.2)
    for i in picks:
        bottom.axvline(i / fps, color="0.85", linewidth=0.6, zorder=0)
    bottom.set_xlabel("seconds")
    bottom.set_ylabel("scaled 0..1")
    bottom.legend(fontsize=7, loc="upper right")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path
