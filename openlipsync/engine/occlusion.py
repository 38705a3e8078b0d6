"""Is the mouth visible? Never paint a mouth over a hand or a microphone.

The face mesh keeps predicting lips under a hand, so the landmarks alone cannot tell. Two
appearance cues of the mouth region, measured on a crop aligned to the face (eye line
horizontal, fixed scale), can:

* colour contrast: lips are redder (higher Lab a*) than the skin around them; a hand, a
  microphone or a sleeve over the mouth makes the "lip" polygon look like its surroundings;
* edge orientation: a visible mouth is a stack of horizontal lines (lip borders, teeth, the
  lip gap), so most gradient energy is vertical; fingers and objects across it add strong
  oblique and vertical edges.

Both cues vary between people, cameras and lighting, so they are judged against this person's
own values on the clearest frames of the same video (`VisibilityModel`). The per-frame score
is then turned into a blend weight that fades lip-sync out and back in over a few frames.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy.ndimage import median_filter, minimum_filter1d, uniform_filter1d

from openlipsync.engine.mouth import (
    EYE_OUTER_LEFT,
    EYE_OUTER_RIGHT,
    LIPS_INNER,
    LIPS_OUTER,
    LOWER_OUTER_MID,
    MOUTH_LEFT,
    MOUTH_RIGHT,
    UPPER_OUTER_MID,
)
from openlipsync.media.picture import Box, source_box

CROP_W, CROP_H = 96, 64
# Crop width in inter-ocular distances.
CROP_SPAN = 1.3
# Typical clear-mouth values, used when no per-person reference is known yet.
DEFAULT_REFERENCE = (5.0, 0.75)  # (lip-vs-skin a* contrast, horizontal-edge share)
# Share of frames assumed clear when learning the person's reference (upper quantile).
REFERENCE_QUANTILE = 0.75


@dataclass(frozen=True)
class MouthCues:
    """Appearance cues of one frame's mouth region (NaN when there is no face)."""

    contrast: float  # median a* of the lip band minus median a* of the skin ring (Lab, 0..255)
    horizontal: float  # share of gradient energy across horizontal edges, 0..1


def mouth_cues(frame: np.ndarray, landmarks: np.ndarray | None) -> MouthCues:
    """Measure the cues on an RGB uint8 frame with the face's (478, 2) landmarks."""
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 (H, W, 3) frame, got {frame.shape} {frame.dtype}")
    if landmarks is None:
        return MouthCues(float("nan"), float("nan"))
    if np.shape(landmarks) != (478, 2):
        raise ValueError(f"expected (478, 2) landmarks, got {np.shape(landmarks)}")
    if not np.all(np.isfinite(landmarks[LIPS_OUTER + LIPS_INNER])):
        return MouthCues(float("nan"), float("nan"))
    crop, points = _aligned_crop(frame, landmarks)
    if crop is None:
        return MouthCues(float("nan"), float("nan"))
    lips = _polygon_mask(points[LIPS_OUTER])
    inner = _polygon_mask(points[LIPS_INNER])
    band = lips & ~inner
    ring = cv2.dilate(lips.astype(np.uint8), np.ones((13, 13), np.uint8)).astype(bool) & ~lips
    if band.sum() < 8 or ring.sum() < 8:
        return MouthCues(float("nan"), float("nan"))
    red = cv2.cvtColor(crop, cv2.COLOR_RGB2LAB)[..., 1].astype(np.float32)
    contrast = _trimmed_mean(red[band]) - _trimmed_mean(red[ring])
    grey = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY).astype(np.float32)
    gx = cv2.Sobel(grey, cv2.CV_32F, 1, 0)
    gy = cv2.Sobel(grey, cv2.CV_32F, 0, 1)
    region = cv2.dilate(lips.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)
    energy_y, energy_x = float((gy[region] ** 2).sum()), float((gx[region] ** 2).sum())
    horizontal = energy_y / (energy_x + energy_y + 1e-6)
    return MouthCues(float(contrast), float(horizontal))


def mouth_visibility(
    frame: np.ndarray,
    landmarks: np.ndarray | None,
    reference: tuple[float, float] = DEFAULT_REFERENCE,
) -> float:
    """1 = mouth clearly visible, 0 = covered; `reference` is the person's clear-mouth cues."""
    return score_cues(mouth_cues(frame, landmarks), reference)


def score_cues(cues: MouthCues, reference: tuple[float, float] = DEFAULT_REFERENCE) -> float:
    """Each cue relative to the person's clear value, ramped to 0..1; the weaker cue wins."""
    if not (np.isfinite(cues.contrast) and np.isfinite(cues.horizontal)):
        return 0.0
    ref_contrast = max(float(reference[0]), 1.5)
    ref_horizontal = max(float(reference[1]), 0.3)
    colour = _ramp(cues.contrast / ref_contrast, 0.35, 0.7)
    edges = _ramp(cues.horizontal / ref_horizontal, 0.55, 0.8)
    return float(min(colour, edges))


class VisibilityModel:
    """Collects cues frame by frame (track pass), then scores against the person's own clear look.

    The clear look is the upper quantile of the cues over the video: hands cover the mouth for a
    minority of the frames, so the upper quartile is a clear-mouth value even when they do.
    """

    def __init__(self) -> None:
        self._cues: list[MouthCues] = []

    def observe(self, frame: np.ndarray, landmarks: np.ndarray | None) -> None:
        self._cues.append(mouth_cues(frame, landmarks))

    @staticmethod
    def source_box(landmarks: np.ndarray | None) -> Box | None:
        """The frame pixels `observe` reads for this face, or None when it reads none."""
        if landmarks is None or not np.all(np.isfinite(landmarks[LIPS_OUTER + LIPS_INNER])):
            return None
        matrix = _crop_matrix(landmarks)
        return None if matrix is None else source_box(matrix, (CROP_W, CROP_H))

    def reference(self, frames: np.ndarray | None = None) -> tuple[float, float]:
        """The clear look over all observed frames, or over `frames` (indices) only."""
        cues = self._cues if frames is None else [self._cues[i] for i in frames]
        values = np.array([(c.contrast, c.horizontal) for c in cues], np.float64)
        values = values[np.all(np.isfinite(values), axis=1)] if values.size else values
        if len(values) < 5:
            return DEFAULT_REFERENCE
        ref = np.quantile(values, REFERENCE_QUANTILE, axis=0)
        return float(ref[0]), float(ref[1])

    def scores(self, people: np.ndarray | None = None) -> np.ndarray:
        """float32 (N,) visibility per observed frame. With `people` (per frame, see
        engine/identity.py) each person's frames are scored against that person's own clear
        look: a moustache dims the lips' contrast for good, and against another person's
        look that read as a hand on every frame."""
        out = np.empty(len(self._cues), np.float32)
        groups = [None] if people is None else np.unique(people[: len(out)])
        for person in groups:
            frames = (
                np.arange(len(out))
                if person is None
                else np.flatnonzero(people[: len(out)] == person)
            )
            reference = self.reference(frames)
            out[frames] = [score_cues(self._cues[i], reference) for i in frames]
        return out


def visibility_weights(
    scores: np.ndarray, fps: float, fade_s: float = 0.2, threshold: float = 0.5
) -> np.ndarray:
    """Per-frame lip-sync blend weight 0..1 from visibility scores.

    A frame counts as covered when its score is below `threshold`; the covered span is widened
    by `fade_s` on both sides (the hand is already on its way) and the weight then ramps
    linearly over `fade_s`, so the original mouth fades back in rather than popping.
    """
    scores = np.asarray(scores, np.float32)
    if scores.ndim != 1:
        raise ValueError(f"expected (N,) scores, got {scores.shape}")
    if scores.size == 0:
        return scores.copy()
    fps = float(fps) if fps and np.isfinite(fps) and fps > 0 else 25.0
    fade = max(1, int(round(fade_s * fps)))
    clear = np.where(np.isfinite(scores), scores >= threshold, False).astype(np.float32)
    # A lone frame that disagrees with both neighbours is a glitch, not a hand.
    clear = median_filter(clear, size=3, mode="nearest")
    # Widen the covered runs by `fade`, then ramp over `fade` on each side: covered frames stay
    # at exactly 0 and the weight reaches 1 within 2 * fade frames of the hand leaving.
    widened = minimum_filter1d(clear, size=2 * fade + 1, mode="nearest")
    weights = uniform_filter1d(widened, size=2 * fade + 1, mode="nearest")
    return np.clip(np.minimum(weights, 1.0) * (clear > 0), 0.0, 1.0).astype(np.float32)


def _crop_matrix(landmarks: np.ndarray) -> np.ndarray | None:
    """(2, 3) frame -> mouth-crop affine, or None for a face too small to measure."""
    eyes = landmarks[EYE_OUTER_LEFT] - landmarks[EYE_OUTER_RIGHT]
    distance = float(np.hypot(*eyes))
    if not np.isfinite(distance) or distance < 4.0:
        return None
    angle = float(np.degrees(np.arctan2(eyes[1], eyes[0])))
    centre = landmarks[[MOUTH_LEFT, MOUTH_RIGHT, UPPER_OUTER_MID, LOWER_OUTER_MID]].mean(axis=0)
    matrix = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), angle, 1.0)
    matrix[:, :2] *= CROP_W / (CROP_SPAN * distance)
    matrix[:, 2] = np.array([CROP_W / 2, CROP_H / 2]) - matrix[:, :2] @ centre
    return matrix


def _aligned_crop(frame: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
    """Mouth-centred crop with the eye line horizontal and a fixed inter-ocular scale."""
    matrix = _crop_matrix(landmarks)
    if matrix is None:
        return None, landmarks
    crop = cv2.warpAffine(frame, matrix, (CROP_W, CROP_H), flags=cv2.INTER_AREA)
    return crop, landmarks @ matrix[:, :2].T + matrix[:, 2]


def _polygon_mask(points: np.ndarray) -> np.ndarray:
    mask = np.zeros((CROP_H, CROP_W), np.uint8)
    cv2.fillPoly(mask, [np.round(points).astype(np.int32)], 1)
    return mask.astype(bool)


def _trimmed_mean(values: np.ndarray) -> float:
    low, high = np.percentile(values, [20, 80])
    kept = values[(values >= low) & (values <= high)]
    return float(kept.mean()) if kept.size else float(values.mean())


def _ramp(value: float, low: float, high: float) -> float:
    return float(np.clip((value - low) / (high - low), 0.0, 1.0))
