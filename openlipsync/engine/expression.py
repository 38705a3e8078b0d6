"""react-1: an emotion prompt reshapes the face; model_mode="head" adds head motion.

Each emotion is a small set of landmark displacements in face-relative units (inter-ocular
distances along the face's own axes), after the facial action units that define it: happy
raises the lip corners and cheeks and narrows the eyes (AU6+12), sad lifts the inner brows
and lowers the corners (AU1+15), angry lowers and knits the brows (AU4), disgusted raises the
upper lip and the nose wings (AU9+10), surprised raises the brows and widens the eyes (AU1+2+5).
A thin-plate warp moves the pixels; the inner lips are pinned so the lip opening the lip-sync
produced stays exact.
"""

from __future__ import annotations

import numpy as np

from openlipsync.engine.facewarp import FACE_OVAL, face_region, warp_points
from openlipsync.engine.mouth import (
    EYE_OUTER_LEFT,
    EYE_OUTER_RIGHT,
    LIPS_INNER,
    LIPS_OUTER,
    MOUTH_LEFT,
    MOUTH_RIGHT,
)
from openlipsync.engine.still_motion import HeadPose, head_poses

EMOTIONS = ("happy", "sad", "angry", "disgusted", "surprised", "neutral")

# Mirror pairs: (right-side index, left-side index) of the subject's face, so one displacement
# (dx toward the face's own outside, dy down) serves both sides.
_CORNERS = [(61, 291)]
_CHEEKS = [(205, 425), (50, 280), (187, 411), (123, 352), (36, 266)]
_LOWER_LIDS = [(145, 374), (144, 373), (153, 380)]
_UPPER_LIDS = [(159, 386), (158, 385), (160, 387)]
_INNER_BROWS = [(55, 285), (107, 336), (65, 295)]
_MID_BROWS = [(105, 334), (66, 296), (52, 282)]
_OUTER_BROWS = [(70, 300), (46, 276), (63, 293)]
_UPPER_LIP = [(37, 267), (39, 269), (0, 0)]
_NOSE_WINGS = [(129, 358), (98, 327), (64, 294)]

# emotion -> list of (pairs, dx outward, dy down) in inter-ocular distances at strength 1.
_ACTIONS: dict[str, list[tuple[list[tuple[int, int]], float, float]]] = {
    "happy": [
        (_CORNERS, 0.04, -0.07),
        (_CHEEKS, 0.0, -0.04),
        (_LOWER_LIDS, 0.0, -0.025),
    ],
    "sad": [
        (_CORNERS, -0.01, 0.06),
        (_INNER_BROWS, 0.0, -0.06),
        (_MID_BROWS, 0.0, -0.02),
        (_OUTER_BROWS, 0.0, 0.015),
    ],
    "angry": [
        (_INNER_BROWS, -0.04, 0.06),
        (_MID_BROWS, -0.03, 0.045),
        (_OUTER_BROWS, -0.01, 0.02),
        (_UPPER_LIDS, 0.0, 0.015),
        (_CORNERS, 0.0, 0.015),
    ],
    "disgusted": [
        (_UPPER_LIP, 0.0, -0.035),
        (_NOSE_WINGS, 0.0, -0.035),
        (_INNER_BROWS, -0.02, 0.03),
        (_CORNERS, 0.0, 0.02),
        (_CHEEKS, 0.0, -0.02),
    ],
    "surprised": [
        (_INNER_BROWS, 0.0, -0.08),
        (_MID_BROWS, 0.0, -0.085),
        (_OUTER_BROWS, 0.0, -0.07),
        (_UPPER_LIDS, 0.0, -0.03),
        (_LOWER_LIDS, 0.0, 0.01),
    ],
    "neutral": [],
}

# Pinned points: nose bridge/tip, chin and the face oval. The lips are not pinned but bent as a
# whole by `_bend_lips`, which moves upper and lower lip points at the same x alike.
_PINS = sorted({1, 4, 6, 168, 152, 33, 133, 362, 263} | set(FACE_OVAL))
_LIPS = sorted(set(LIPS_INNER) | set(LIPS_OUTER))


def expression_targets(landmarks: np.ndarray, emotion: str, strength: float) -> np.ndarray:
    """The landmarks after the expression: (478, 2) -> (478, 2); unlisted points unchanged."""
    emotion = _check(landmarks, emotion, strength)
    out = np.asarray(landmarks, np.float64).copy()
    axis_x, axis_y, scale = _face_axes(landmarks)
    centre_x = float(landmarks[[EYE_OUTER_LEFT, EYE_OUTER_RIGHT]].mean(axis=0) @ axis_x)
    for pairs, dx, dy in _ACTIONS[emotion]:
        for right, left in pairs:
            for index in {right, left}:
                outward = np.sign(float(landmarks[index] @ axis_x) - centre_x)
                move = (outward * dx * axis_x + dy * axis_y) * scale * strength
                out[index] = landmarks[index] + move
    _bend_lips(landmarks, out, axis_x)
    return out.astype(np.float32)


def _bend_lips(landmarks: np.ndarray, out: np.ndarray, axis_x: np.ndarray) -> None:
    """Carry the corners' motion into the lips, fading to zero at the middle.

    Each lip point moves by its side's corner displacement times (distance from the middle /
    half mouth width)^2. Upper and lower lip points at the same x move alike, so the opening
    between the lips is kept; the mouth curves instead of tearing at the corners.
    """
    corners = [MOUTH_RIGHT, MOUTH_LEFT]
    moves = {c: out[c] - landmarks[c] for c in corners}
    ends = [float(landmarks[c] @ axis_x) for c in corners]
    middle, half = (ends[0] + ends[1]) / 2, abs(ends[1] - ends[0]) / 2
    if half < 1e-3:
        return
    for index in _LIPS:
        if index in corners:
            continue
        offset = float(landmarks[index] @ axis_x) - middle
        side = min(corners, key=lambda c: abs(float(landmarks[c] @ axis_x) - middle - offset))
        weight = min(abs(offset) / half, 1.0) ** 2
        out[index] = out[index] + moves[side] * weight


def expression_warp(
    frame: np.ndarray, landmarks: np.ndarray, emotion: str, strength: float
) -> np.ndarray:
    """The frame with `emotion` applied at `strength` (0..1); neutral or 0 returns a copy."""
    target = expression_targets(landmarks, emotion, strength)
    moved = np.flatnonzero(np.any(np.abs(target - landmarks) > 1e-4, axis=1))
    if moved.size == 0:
        return frame.copy()
    pins = np.setdiff1d(_PINS, moved)
    src = np.vstack([landmarks[moved], landmarks[pins]])
    dst = np.vstack([target[moved], landmarks[pins]])
    return warp_points(frame, src, dst, face_region(landmarks, 0.15))


def head_motion(
    frame_count: int, fps: float, speech_energy: np.ndarray | None = None, seed: int = 0
) -> list[HeadPose]:
    """Per-frame small rigid head transforms for model_mode="head" (see still_motion.head_poses).

    Slightly livelier than the still-photo motion: a talking head nods on stressed syllables.
    """
    return head_poses(frame_count, fps, speech_energy, seed, amplitude=1.5)


def _check(landmarks: np.ndarray, emotion: str, strength: float) -> str:
    if not isinstance(emotion, str) or emotion.lower() not in _ACTIONS:
        raise ValueError(f"unknown emotion {emotion!r}; expected one of {', '.join(EMOTIONS)}")
    if not np.isfinite(strength) or not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must be in 0..1, got {strength}")
    if np.shape(landmarks) != (478, 2) or not np.all(np.isfinite(landmarks)):
        raise ValueError("expected finite (478, 2) landmarks")
    return emotion.lower()


def _face_axes(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Unit x (subject's right eye -> left eye in the image), unit y (down) and eye distance."""
    eyes = (landmarks[EYE_OUTER_LEFT] - landmarks[EYE_OUTER_RIGHT]).astype(np.float64)
    scale = float(np.hypot(*eyes))
    if scale < 1e-3:
        raise ValueError("degenerate landmarks (eyes coincide)")
    axis_x = eyes / scale
    axis_y = np.array([-axis_x[1], axis_x[0]])
    return axis_x, axis_y, scale
