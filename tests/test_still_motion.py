"""A still photo must come alive: blinks at the scheduled frames, a head that moves a little.

Everything is measured with the face mesh on the warped output, not taken from the schedule.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from openlipsync.engine.mouth import face_scale
from openlipsync.engine.speaker import FaceFinder
from openlipsync.engine.still_motion import (
    BLINK_INTERVAL,
    BLUR_DETAIL,
    MAX_ANGLE,
    MAX_SCALE,
    MAX_SHIFT,
    HeadPose,
    MotionFrame,
    _blurred,
    apply_still_motion,
    head_poses,
    moved_landmarks,
    still_motion,
)
from tests.conftest import media_path

FPS = 25.0


def eye_opening(landmarks: np.ndarray) -> float:
    """Mean lid gap of both eyes in eye-distance units."""
    gaps = np.linalg.norm(landmarks[159] - landmarks[145]) + np.linalg.norm(
        landmarks[386] - landmarks[374]
    )
    return float(gaps / 2 / face_scale(landmarks))


@pytest.fixture(scope="module")
def finder():
    with FaceFinder(1) as face_finder:
        yield face_finder


@pytest.fixture(scope="module", params=["astronaut.png", "obama.jpg"])
def photo(request, finder) -> tuple[np.ndarray, np.ndarray]:
    image = cv2.cvtColor(cv2.imread(str(media_path(f"photo/{request.param}"))), cv2.COLOR_BGR2RGB)
    return image, finder.find(image)[0]


def test_blinks_close_the_eyes_at_the_scheduled_frames(photo, finder) -> None:
    image, landmarks = photo
    motion = still_motion(250, FPS, seed=3)
    assert len(motion.blink_frames) >= 2
    open_eyes = eye_opening(landmarks)
    for peak in motion.blink_frames[:2]:
        measured = {}
        for index in (peak - 4, peak, peak + 5):
            frame, _ = apply_still_motion(image, landmarks, motion[index])
            measured[index] = eye_opening(finder.find(frame)[0])
        # Mesh on the output: the lids nearly meet at the peak and are open around it.
        assert measured[peak] < 0.6 * open_eyes, (peak, measured, open_eyes)
        assert measured[peak - 4] > 0.9 * open_eyes and measured[peak + 5] > 0.9 * open_eyes


def test_blink_schedule_is_natural_and_reproducible() -> None:
    motion = still_motion(1500, FPS, seed=11)  # one minute
    gaps = np.diff(motion.blink_frames) / FPS
    assert len(gaps) >= 9
    assert gaps.min() >= BLINK_INTERVAL[0] and gaps.max() <= BLINK_INTERVAL[1]
    # About 150 ms with the lid at least a tenth closed: 3-5 frames at 25 fps.
    closed_frames = (motion.closure > 0.1).sum() / len(motion.blink_frames)
    assert 2.5 <= closed_frames <= 5.0
    again = still_motion(1500, FPS, seed=11)
    assert again.blink_frames == motion.blink_frames
    assert still_motion(1500, FPS, seed=12).blink_frames != motion.blink_frames


def test_head_moves_a_few_pixels_within_the_bound(photo, finder) -> None:
    image, landmarks = photo
    eye_px = float(face_scale(landmarks))
    motion = still_motion(100, FPS, seed=5)
    moves = [np.abs(np.array([p.dx, p.dy])).max() for p in motion.poses]
    biggest = int(np.argmax(moves))
    frame, predicted = apply_still_motion(image, landmarks, MotionFrame(0.0, motion.poses[biggest]))
    measured = finder.find(frame)[0]
    shift = float(np.linalg.norm(measured.mean(axis=0) - landmarks.mean(axis=0)))
    bound = (MAX_SHIFT * np.sqrt(2) + MAX_SCALE) * eye_px + np.radians(MAX_ANGLE) * eye_px * 2
    assert 1.0 < shift < bound, (shift, bound)
    # The returned landmarks say where the face went (the mouth renderer relies on them), to
    # within the independent mesh's own spread (about a pixel on this face): a fifth of the move.
    assert float(np.linalg.norm(measured.mean(axis=0) - predicted.mean(axis=0))) < 0.2 * shift
    step = MotionFrame(1.0, motion.poses[biggest])
    assert np.allclose(
        moved_landmarks(landmarks, step), apply_still_motion(image, landmarks, step)[1]
    )
    # The frame border never moves (no smeared or reflected edges): the motion fades out first.
    for edge in (np.s_[0], np.s_[-1], np.s_[:, 0], np.s_[:, -1]):
        assert np.array_equal(frame[edge], image[edge])


def test_head_motion_is_smooth_bounded_and_follows_speech() -> None:
    energy = np.zeros(250)
    energy[50:60] = energy[120:130] = energy[200:210] = 1.0
    quiet = head_poses(250, FPS, None, seed=2)
    speaking = head_poses(250, FPS, energy, seed=2)
    for poses in (quiet, speaking):
        table = np.array([(p.angle, p.dx, p.dy, p.scale - 1) for p in poses])
        assert np.all(
            np.abs(table) <= np.array([MAX_ANGLE, MAX_SHIFT, MAX_SHIFT, MAX_SCALE]) + 1e-9
        )
        # Smooth: no frame-to-frame jump above a fifth of the range.
        assert np.all(np.abs(np.diff(table, axis=0)) <= table.ptp(axis=0) / 5 + 1e-9)
    nod = np.array([p.dy for p in speaking]) - np.array([p.dy for p in quiet])
    assert nod[50:62].mean() > nod[80:110].mean() + 0.1 * MAX_SHIFT


def test_zero_motion_is_the_identity(photo) -> None:
    image, landmarks = photo
    frame, moved = apply_still_motion(image, landmarks, MotionFrame(0.0, HeadPose()))
    assert np.array_equal(frame, image) and np.allclose(moved, landmarks)


@pytest.mark.parametrize(
    "count, fps", [(-1, 25.0), (10, 0.0), (10, float("nan")), (10**9, 25.0), (1.5, 25.0)]
)
def test_bad_timing_is_rejected(count, fps) -> None:
    with pytest.raises(ValueError):
        still_motion(count, fps)


def test_bad_frames_and_landmarks_are_rejected() -> None:
    step = MotionFrame(1.0, HeadPose())
    with pytest.raises(ValueError, match="478"):
        apply_still_motion(np.zeros((8, 8, 3), np.uint8), np.zeros((68, 2)), step)
    with pytest.raises(ValueError, match="478"):
        apply_still_motion(np.zeros((8, 8, 3), np.uint8), np.full((478, 2), np.nan), step)
    with pytest.raises(ValueError, match="RGB uint8"):
        apply_still_motion(np.zeros((8, 8), np.uint8), np.zeros((478, 2)), step)
    assert still_motion(0, FPS).poses == []


def test_head_weight_blurred_coarsely_matches_the_full_blur(photo) -> None:
    """The head's weight is blurred on a coarse grid (a face-wide blur at full size was most
    of a photo's render); on a real face's outline it agrees with the full-size blur."""
    _, landmarks = photo
    hull = cv2.convexHull(np.round(landmarks).astype(np.int32)).reshape(-1, 2)
    x1, y1 = hull.min(axis=0) - 60
    x2, y2 = hull.max(axis=0) + 60
    mask = np.zeros((y2 - y1, x2 - x1), np.float32)
    cv2.fillPoly(mask, [hull - (x1, y1)], 1.0)
    sigma = 0.2 * float(np.ptp(hull[:, 0]))
    assert sigma >= 2 * BLUR_DETAIL  # coarse indeed: a grid step of two pixels or more
    full = cv2.GaussianBlur(mask, (0, 0), sigma)
    coarse = _blurred(mask, sigma)
    assert coarse.shape == full.shape
    assert float(np.abs(coarse - full).max()) < 0.015
