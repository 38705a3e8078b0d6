"""Scene cuts: where one shot ends and the next begins.

A face tracker that carries its region of interest across a hard cut either loses the face
(and smears the last mouth into the new shot) or locks onto the wrong one. Cuts are found with
a cheap colour/structure distance between consecutive thumbnails, compared with an adaptive
threshold learnt from the recent distances of the same shot, so handheld motion or lighting
flicker in one clip does not raise false cuts while a change of scene always stands out.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

import cv2
import numpy as np

from openlipsync.media.picture import Picture, RgbPicture

THUMB_SIZE = (64, 36)
# A cut needs a distance this large in absolute terms...
MIN_CUT_DISTANCE = 0.25
# ...and this many times the recent "normal" frame-to-frame distance of the shot.
RELATIVE_FACTOR = 4.0
HISTORY = 30
# Shots shorter than this (frames) are not allowed: flashes and fades do not create shots.
MIN_SHOT_FRAMES = 6


class SceneDetector:
    """Streaming cut detector for the pipeline's single decode pass.

    `push(frame)` returns True when `frame` is the first frame of a new shot (never for the
    very first frame of the video), so the caller can reset its face tracking there.
    """

    def __init__(
        self,
        min_distance: float = MIN_CUT_DISTANCE,
        relative: float = RELATIVE_FACTOR,
        min_shot_frames: int = MIN_SHOT_FRAMES,
    ) -> None:
        self.min_distance = float(min_distance)
        self.relative = float(relative)
        self.min_shot_frames = max(1, int(min_shot_frames))
        self._previous: tuple[np.ndarray, np.ndarray] | None = None
        self._recent: deque[float] = deque(maxlen=HISTORY)
        self._since_cut = 0
        self.index = -1
        self.cuts: list[int] = []

    def push(self, frame: np.ndarray | Picture) -> bool:
        signature = _signature(frame)
        self.index += 1
        previous, self._previous = self._previous, signature
        if previous is None:
            return False
        distance = _distance(previous, signature)
        self._since_cut += 1
        normal = float(np.median(self._recent)) if self._recent else 0.0
        is_cut = (
            distance > self.min_distance
            and distance > self.relative * normal
            and self._since_cut >= self.min_shot_frames
        )
        if is_cut:
            self.cuts.append(self.index)
            self._recent.clear()
            self._since_cut = 0
        else:
            self._recent.append(distance)
        return is_cut


def scene_cuts(frames_small: Iterable[np.ndarray]) -> list[int]:
    """Indices of the first frames of new shots (frame 0 is never listed)."""
    detector = SceneDetector()
    for frame in frames_small:
        detector.push(frame)
    return detector.cuts


def shot_ranges(cuts: list[int], frame_count: int) -> list[tuple[int, int]]:
    """[start, stop) frame ranges of the shots given the cut indices."""
    edges = [0, *sorted(c for c in set(cuts) if 0 < c < frame_count), frame_count]
    return [(a, b) for a, b in zip(edges[:-1], edges[1:], strict=True) if b > a]


def frame_runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[first, stop) of each run of True frames, in time order."""
    padded = np.concatenate([[False], np.asarray(mask, bool), [False]])
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def _signature(frame: np.ndarray | Picture) -> tuple[np.ndarray, np.ndarray]:
    """(normalised hue/saturation histogram, small grey thumbnail) of an RGB uint8 frame."""
    if isinstance(frame, np.ndarray) and (
        frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8 or frame.size == 0
    ):
        raise ValueError(f"expected an RGB uint8 (H, W, 3) frame, got {frame.shape} {frame.dtype}")
    thumb = _thumbnail(frame)
    hsv = cv2.cvtColor(thumb, cv2.COLOR_RGB2HSV)
    hist = cv2.calcHist([hsv], [0, 1, 2], None, [12, 4, 4], [0, 180, 0, 256, 0, 256]).ravel()
    hist /= max(float(hist.sum()), 1.0)
    grey = cv2.cvtColor(thumb, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
    return hist, grey


def _thumbnail(frame: np.ndarray | Picture) -> np.ndarray:
    """THUMB_SIZE average of a point sample 4x as large each way.

    Area-averaging a whole HD frame costs about a millisecond per frame; 16 samples per
    thumbnail pixel keep what a cut detector needs (colour and coarse structure). A Picture
    converts only those samples.
    """
    width, height = THUMB_SIZE
    picture = RgbPicture(frame) if isinstance(frame, np.ndarray) else frame
    if picture.width > 8 * width and picture.height > 8 * height:
        small = picture.thumbnail(4 * width, 4 * height)
    else:
        small = picture.rgb()
    return cv2.resize(small, THUMB_SIZE, interpolation=cv2.INTER_AREA)


def _distance(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> float:
    """Mean of the histogram's Hellinger distance and the thumbnails' mean absolute difference.

    Colour catches a change of set; the thumbnail catches two shots of similar palette.
    Both lie in 0..1.
    """
    hellinger = float(np.sqrt(max(0.0, 1.0 - float(np.sum(np.sqrt(a[0] * b[0]))))))
    structure = float(np.mean(np.abs(a[1] - b[1]))) * 4.0
    return 0.5 * hellinger + 0.5 * min(structure, 1.0)
