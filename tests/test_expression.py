"""react-1 emotions on real portraits, measured with the face mesh on the warped image.

Each emotion must move the features it is made of in the right direction, and never change
the inner-lip opening the lip-sync produced.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from openlipsync.engine.expression import (
    EMOTIONS,
    expression_targets,
    expression_warp,
    head_motion,
)
from openlipsync.engine.facewarp import thin_plate
from openlipsync.engine.mouth import face_scale
from openlipsync.engine.speaker import FaceFinder
from openlipsync.engine.still_motion import MAX_ANGLE, MAX_SHIFT
from tests.conftest import media_path

CORNERS = [61, 291]
BROWS = [105, 334, 66, 296]
OPENING_TOLERANCE = 0.02  # eye distances (~1-3 px on these photos)


@pytest.fixture(scope="module")
def finder():
    with FaceFinder(1) as face_finder:
        yield face_finder


@pytest.fixture(scope="module", params=["astronaut.png", "obama.jpg"])
def photo(request, finder) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    image = cv2.cvtColor(cv2.imread(str(media_path(f"photo/{request.param}"))), cv2.COLOR_BGR2RGB)
    return image, finder.find(image)[0], finder


def _measure(photo, emotion: str, strength: float = 1.0) -> dict[str, float]:
    """Changes (eye-distance units, + = down / wider) measured by the mesh on the warped frame."""
    image, before, finder = photo
    after = finder.find(expression_warp(image, before, emotion, strength))[0]
    scale = float(face_scale(before))

    def opening(points: np.ndarray) -> float:
        return float(np.linalg.norm(points[13] - points[14]))

    def eyes(points: np.ndarray) -> float:
        return float(
            np.linalg.norm(points[159] - points[145]) + np.linalg.norm(points[386] - points[374])
        )

    return {
        "corners": float((after[CORNERS, 1] - before[CORNERS, 1]).mean()) / scale,
        "brows": float((after[BROWS, 1] - before[BROWS, 1]).mean()) / scale,
        "opening": (opening(after) - opening(before)) / scale,
        "eyes": (eyes(after) - eyes(before)) / scale,
    }


def test_happy_raises_and_sad_lowers_the_mouth_corners(photo) -> None:
    happy, sad = _measure(photo, "happy"), _measure(photo, "sad")
    assert happy["corners"] < -0.03, happy
    assert sad["corners"] > 0.03, sad
    for change in (happy, sad):
        assert abs(change["opening"]) < OPENING_TOLERANCE, change


def test_brows_and_eyes_follow_the_emotion(photo) -> None:
    surprised, angry, sad = (_measure(photo, e) for e in ("surprised", "angry", "sad"))
    assert surprised["brows"] < -0.04 and surprised["eyes"] > 0.02, surprised
    assert angry["brows"] > 0.02, angry
    assert sad["brows"] < 0.0, sad  # the inner brows go up
    for change in (surprised, angry):
        assert abs(change["opening"]) < OPENING_TOLERANCE, change


def test_disgust_raises_the_upper_lip_but_keeps_the_opening(photo) -> None:
    image, before, _ = photo
    target = expression_targets(before, "disgusted", 1.0)
    assert target[0, 1] < before[0, 1] - 0.02 * face_scale(before)  # outer upper lip up
    assert abs(_measure(photo, "disgusted")["opening"]) < OPENING_TOLERANCE


def test_strength_scales_the_change(photo) -> None:
    half, full = _measure(photo, "happy", 0.5), _measure(photo, "happy", 1.0)
    assert full["corners"] < half["corners"] < 0.0


def test_neutral_and_zero_strength_are_the_identity(photo) -> None:
    image, landmarks, _ = photo
    assert np.array_equal(expression_warp(image, landmarks, "neutral", 1.0), image)
    assert np.array_equal(expression_warp(image, landmarks, "happy", 0.0), image)


def test_warp_stays_on_the_face(photo) -> None:
    image, landmarks, _ = photo
    warped = expression_warp(image, landmarks, "surprised", 1.0)
    changed = np.argwhere(np.any(warped != image, axis=2))
    low, high = landmarks.min(axis=0), landmarks.max(axis=0)
    pad = (high - low) * 0.16
    assert changed.size
    assert np.all(changed[:, ::-1] >= low - pad) and np.all(changed[:, ::-1] <= high + pad)


def test_head_motion_for_model_mode_head_is_bounded() -> None:
    energy = np.abs(np.sin(np.linspace(0, 20, 150)))
    poses = head_motion(150, 25.0, energy, seed=4)
    assert len(poses) == 150
    angles = np.array([p.angle for p in poses])
    shifts = np.array([(p.dx, p.dy) for p in poses])
    assert np.abs(angles).max() <= 1.5 * MAX_ANGLE + 1e-9 and angles.ptp() > 0.5
    assert np.abs(shifts).max() <= 1.5 * MAX_SHIFT + 1e-9


@pytest.mark.parametrize(
    "emotion, strength, message",
    [
        ("furious", 1.0, "unknown emotion"),
        (None, 1.0, "unknown emotion"),
        ("happy", 1.5, "strength"),
        ("happy", float("nan"), "strength"),
    ],
)
def test_bad_requests_are_rejected(photo, emotion, strength, message) -> None:
    image, landmarks, _ = photo
    with pytest.raises(ValueError, match=message):
        expression_warp(image, landmarks, emotion, strength)


def test_bad_landmarks_are_rejected() -> None:
    frame = np.zeros((32, 32, 3), np.uint8)
    with pytest.raises(ValueError, match="478"):
        expression_warp(frame, np.zeros((68, 2)), "happy", 1.0)
    with pytest.raises(ValueError, match="478"):
        expression_warp(frame, np.full((478, 2), np.nan), "happy", 1.0)
    with pytest.raises(ValueError, match="degenerate"):
        expression_warp(frame, np.zeros((478, 2)), "happy", 1.0)


def test_all_spec_emotions_are_known() -> None:
    assert set(EMOTIONS) == {"happy", "sad", "angry", "disgusted", "surprised", "neutral"}


@pytest.mark.parametrize("emotion", ["happy", "surprised"])
def test_thin_plate_is_the_spline_scipy_computes(photo, emotion) -> None:
    """facewarp's own thin-plate spline (float32, on a grid) is the interpolant scipy's
    RBFInterpolator gives for a real emotion's controls, to a fiftieth of a pixel (0.002 px
    on one machine's BLAS, 0.012 on an Intel Xeon's: float32 sums of 478 terms in another
    order), and it passes through its controls."""
    from scipy.interpolate import RBFInterpolator

    _, landmarks, _ = photo
    target = expression_targets(landmarks, emotion, 0.7)
    controls, offsets = target.astype(np.float64), (landmarks - target).astype(np.float64)
    x1, y1 = controls.min(axis=0) - 20
    x2, y2 = controls.max(axis=0) + 20
    xs, ys = np.arange(x1, x2, 6.0), np.arange(y1, y2, 6.0)
    field = thin_plate(controls, offsets, xs, ys)
    grid = np.stack(np.meshgrid(xs, ys), axis=-1).reshape(-1, 2)
    exact = RBFInterpolator(controls, offsets, kernel="thin_plate_spline")(grid)
    assert field.shape == (len(ys), len(xs), 2) and field.dtype == np.float32
    assert np.abs(offsets).max() > 1.0  # the emotion moves points by pixels
    assert float(np.abs(field.reshape(-1, 2) - exact).max()) < 0.02
    at_controls = thin_plate(controls, offsets, controls[:5, 0], controls[:5, 1])
    diagonal = at_controls[np.arange(5), np.arange(5)]
    assert np.allclose(diagonal, offsets[:5], atol=0.01)


def test_thin_plate_takes_twin_controls() -> None:
    """Two controls at one place (with different values) make the exact system singular: the
    spline is then the least-squares one, not an error."""
    controls = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0], [5.0, 5.0]])
    controls = np.vstack([controls, controls[-1:]])
    values = np.array([[0.0], [0.0], [0.0], [0.0], [1.0], [3.0]])
    field = thin_plate(controls, values, np.array([5.0]), np.array([5.0]))
    assert np.isfinite(field).all() and 1.0 <= float(field[0, 0, 0]) <= 3.0
