"""Mouth visibility on real footage: a hand over the mouth must switch lip-sync off.

pexels_woman_expressions.mp4 (23.976 fps): the mouth is clear in frames 0-55, a hand covers it
from about 62 to 225 (fully until ~95, fingers across it after), clear again from ~230.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from openlipsync.engine.occlusion import (
    VisibilityModel,
    mouth_cues,
    mouth_visibility,
    visibility_weights,
)
from openlipsync.engine.tracking import FaceTracker
from openlipsync.media.video import VideoReader
from tests.conftest import media_path

STEP = 3
COVERED = range(66, 220)
CLEAR = [*range(0, 52), *range(236, 390)]


@pytest.fixture(scope="module")
def observed() -> tuple[list[int], np.ndarray, VisibilityModel]:
    """Every STEP-th frame's landmarks and cues (the track pass would see every frame)."""
    path = media_path("video/pexels_woman_expressions.mp4")
    model = VisibilityModel()
    indices = []
    with FaceTracker() as tracker:
        for index, frame in enumerate(VideoReader(path)):
            if index % STEP or index >= 400:
                continue
            landmarks = tracker.process(frame)
            model.observe(frame, landmarks)
            indices.append(index)
    return indices, model.scores(), model


def _scores_in(observed, frames) -> np.ndarray:
    indices, scores, _ = observed
    wanted = set(frames)
    return np.array([s for i, s in zip(indices, scores, strict=True) if i in wanted])


def test_visibility_low_under_the_hand_and_high_when_clear(observed) -> None:
    covered, clear = _scores_in(observed, COVERED), _scores_in(observed, CLEAR)
    assert len(covered) > 40 and len(clear) > 60
    assert np.mean(covered < 0.5) > 0.9, np.round(covered, 2)
    assert np.mean(clear > 0.5) > 0.95, np.round(clear, 2)
    assert covered.mean() < 0.15 and clear.mean() > 0.85


def test_blend_weight_fades_out_and_back_in(observed) -> None:
    indices, scores, _ = observed
    weights = visibility_weights(scores, 23.976 / STEP, fade_s=0.4)
    by_frame = dict(zip(indices, weights.tolist(), strict=True))

    def within(*spans: range) -> list[float]:
        return [w for i, w in by_frame.items() if any(i in span for span in spans)]

    assert max(within(range(72, 210))) == 0.0
    assert min(within(range(0, 36), range(260, 350))) == 1.0
    # The fade back in is gradual: some frame after the hand leaves is strictly between 0 and 1.
    after = within(range(222, 260))
    assert any(0.0 < w < 1.0 for w in after), after
    assert np.all(np.diff(after) >= 0)


def test_reference_is_the_persons_own_clear_look(observed) -> None:
    _, _, model = observed
    contrast, horizontal = model.reference()
    assert 2.0 < contrast < 15.0 and 0.5 < horizontal < 0.95


def test_one_shot_score_without_a_reference() -> None:
    frames = iter(VideoReader(media_path("video/pexels_woman_expressions.mp4")))
    with FaceTracker() as tracker:
        for index, frame in enumerate(frames):
            landmarks = tracker.process(frame)
            if index == 20:
                clear = mouth_visibility(frame, landmarks)
            if index == 80:
                covered = mouth_visibility(frame, landmarks)
                break
    assert clear > 0.8 and covered < 0.2


def test_no_face_means_not_visible() -> None:
    frame = np.zeros((64, 64, 3), np.uint8)
    assert mouth_visibility(frame, None) == 0.0
    nan_face = np.full((478, 2), np.nan, np.float32)
    assert np.isnan(mouth_cues(frame, nan_face).contrast)
    assert visibility_weights(np.array([np.nan, np.nan]), 25).tolist() == [0.0, 0.0]
    assert visibility_weights(np.zeros(0), 25).shape == (0,)


def test_bad_inputs_are_rejected_clearly() -> None:
    with pytest.raises(ValueError, match="RGB uint8"):
        mouth_visibility(np.zeros((8, 8), np.uint8), np.zeros((478, 2)))
    with pytest.raises(ValueError, match="478"):
        mouth_visibility(np.zeros((8, 8, 3), np.uint8), np.zeros((68, 2)))
    with pytest.raises(ValueError, match=r"\(N,\)"):
        visibility_weights(np.zeros((3, 3)), 25)
    # Degenerate landmarks (all on one point) score 0 instead of crashing.
    assert mouth_visibility(np.zeros((8, 8, 3), np.uint8), np.zeros((478, 2))) == 0.0


def test_a_tilted_head_is_still_seen() -> None:
    """The crop is aligned to the eye line: a head tilted 20 degrees scores like an upright one."""
    with FaceTracker() as tracker:
        for index, frame in enumerate(
            VideoReader(media_path("video/pexels_woman_expressions.mp4"))
        ):
            landmarks = tracker.process(frame)
            if index == 20:
                break
    height, width = frame.shape[:2]
    turn = cv2.getRotationMatrix2D((width / 2, height / 2), 20, 1.0)
    tilted = cv2.warpAffine(frame, turn, (width, height))
    moved = landmarks @ turn[:, :2].T + turn[:, 2]
    upright = mouth_visibility(frame, landmarks)
    assert upright > 0.8 and mouth_visibility(tilted, moved) > 0.8


def test_no_false_alarm_on_another_clear_speaker() -> None:
    model = VisibilityModel()
    with FaceTracker() as tracker:
        for frame in VideoReader(media_path("video/grid_swiz3n.mpg")):
            model.observe(frame, tracker.process(frame))
    scores = model.scores()
    assert np.mean(scores > 0.5) > 0.95, np.round(scores, 2)
    assert visibility_weights(scores, 25.0).min() == 1.0
