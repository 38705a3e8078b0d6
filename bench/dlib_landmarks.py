"""Mouth measurement with dlib's 68-point model, independent of the engine's MediaPipe mesh.

The engine tracks and renders faces with MediaPipe, so judging its output with MediaPipe would let
the engine grade its own homework (a renderer can fool the detector it was built around). dlib's
HOG detector + regression-tree predictor shares no code or training data with MediaPipe.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache
from pathlib import Path

import numpy as np

# 0-based indices of the iBUG 68-point scheme.
EYE_OUTER_RIGHT, EYE_OUTER_LEFT = 36, 45
OUTER_LIP_PAIRS = ((50, 58), (51, 57), (52, 56))
INNER_LIP_PAIRS = ((61, 67), (62, 66), (63, 65))
LOWER_FACE = list(range(2, 15)) + list(range(31, 36)) + list(range(48, 68))


@cache
def _models() -> tuple[object, object]:
    import dlib
    import face_recognition_models

    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(face_recognition_models.pose_predictor_model_location())
    return detector, predictor


class DlibLandmarker:
    """68 landmarks per RGB frame; remembers the last face box so a missed detection keeps going."""

    def __init__(self) -> None:
        self._detector, self._predictor = _models()
        self._last_box: object | None = None

    def __call__(self, rgb: np.ndarray) -> np.ndarray | None:
        image = np.ascontiguousarray(rgb, dtype=np.uint8)
        upsample = 1 if max(image.shape[:2]) < 500 else 0
        boxes, scores, _ = self._detector.run(image, upsample, 0.0)
        if len(boxes):
            self._last_box = self._choose(list(boxes), list(scores))
        elif self._last_box is None:
            return None
        shape = self._predictor(image, self._last_box)
        return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float32)

    def _choose(self, boxes: list, scores: list[float]) -> object:
        """Keep following the face we had (nearest centre); otherwise the most face-like box.
        Area is a bad tie-breaker: a round badge on a chest can out-size a face."""
        if self._last_box is not None:
            last = self._last_box.center()
            nearest = min(
                boxes, key=lambda b: (b.center().x - last.x) ** 2 + (b.center().y - last.y) ** 2
            )
            if (
                abs(nearest.center().x - last.x) + abs(nearest.center().y - last.y)
                < nearest.width()
            ):
                return nearest
        return boxes[int(np.argmax(scores))]


def measure_frames(frames: Iterable[np.ndarray]) -> np.ndarray:
    """(N, 68, 2) landmarks per RGB frame, NaN where no face was ever found."""
    landmarker = DlibLandmarker()
    rows = []
    for rgb in frames:
        points = landmarker(rgb)
        rows.append(np.full((68, 2), np.nan, np.float32) if points is None else points)
    return np.stack(rows) if rows else np.zeros((0, 68, 2), np.float32)


def read_rgb_frames(path: Path, max_frames: int = 20_000) -> tuple[list[np.ndarray], float]:
    """All frames of a video (or one photo) as RGB arrays, with the frame rate.

    Raises ValueError with the file name for anything unreadable, rather than an FFmpeg trace.
    """
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise ValueError(f"{path}: no video stream")
            stream = container.streams.video[0]
            fps = float(stream.average_rate or stream.guessed_rate or 25)
            frames = []
            for frame in container.decode(stream):
                frames.append(frame.to_ndarray(format="rgb24"))
                if len(frames) > max_frames:
                    raise ValueError(f"{path}: more than {max_frames} frames")
    except av.error.FFmpegError as error:
        raise ValueError(f"{path}: not a readable video ({error})") from error
    if not frames:
        raise ValueError(f"{path}: no decodable frames")
    return frames, fps


def measure_video(path: Path) -> tuple[np.ndarray, float]:
    """(N, 68, 2) dlib landmarks of every frame of a video, and its frame rate."""
    frames, fps = read_rgb_frames(path)
    return measure_frames(frames), fps


def _pair_gap(points: np.ndarray, pairs: tuple[tuple[int, int], ...]) -> np.ndarray:
    eyes = np.linalg.norm(points[..., EYE_OUTER_LEFT, :] - points[..., EYE_OUTER_RIGHT, :], axis=-1)
    gaps = [np.linalg.norm(points[..., a, :] - points[..., b, :], axis=-1) for a, b in pairs]
    return (np.mean(gaps, axis=0) / eyes).astype(np.float32)


def outer_lip_opening(points: np.ndarray) -> np.ndarray:
    """Outer-lip height in eye-distance units; (..., 68, 2) -> (...). Robust even when the inner
    lip contour collapses (dlib's inner lips are noisy on closed mouths)."""
    return _pair_gap(points, OUTER_LIP_PAIRS)


def inner_lip_opening(points: np.ndarray) -> np.ndarray:
    """Inner-lip gap (the visible mouth opening) in eye-distance units; (..., 68, 2) -> (...)."""
    return _pair_gap(points, INNER_LIP_PAIRS)
