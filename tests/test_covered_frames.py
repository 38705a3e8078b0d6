"""A hand over the mouth is noticed by lip contrast in colour, dark and black-and-white film,
and when it covers the mouth for most of the clip; a clear mouth is never flagged.

pexels_woman_expressions.mp4: the mouth is clear in frames 0-55, a hand covers it from about
62 on. Every variant reuses the original's landmarks, so only the contrast cue is tested.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
import pytest

from openlipsync.engine.library import covered_frames, lip_contrast
from openlipsync.engine.tracking import FaceTracker
from openlipsync.media.video import VideoReader
from tests.conftest import media_path

CLEAR = range(0, 52)
COVERED = range(66, 130)


@pytest.fixture(scope="module")
def pexels() -> tuple[list[np.ndarray], list[np.ndarray]]:
    with VideoReader(media_path("video/pexels_woman_expressions.mp4")) as reader:
        frames = [frame for _, frame in zip(range(130), reader, strict=False)]
    with FaceTracker() as tracker:
        landmarks = [tracker.process(frame) for frame in frames]
    assert all(points is not None for points in landmarks)
    return frames, landmarks


def _grey(frame: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)


def _dark(frame: np.ndarray) -> np.ndarray:
    return (frame.astype(np.float32) * 0.35).round().astype(np.uint8)


def _covered(frames: list[np.ndarray], landmarks: list[np.ndarray]) -> np.ndarray:
    contrast = np.array([lip_contrast(f, p) for f, p in zip(frames, landmarks, strict=True)])
    return covered_frames(contrast[:, 0], contrast[:, 1])


@pytest.mark.parametrize(
    "look", [lambda f: f, _dark, _grey], ids=["colour", "dark", "black-and-white"]
)
def test_the_hand_is_flagged_and_the_clear_mouth_is_not(
    pexels: tuple[list[np.ndarray], list[np.ndarray]], look: Callable[[np.ndarray], np.ndarray]
) -> None:
    frames, landmarks = pexels
    covered = _covered([look(frame) for frame in frames], landmarks)
    assert not covered[CLEAR].any(), np.flatnonzero(covered[CLEAR])
    assert covered[COVERED].mean() > 0.9, np.flatnonzero(~covered[COVERED]) + COVERED.start


def test_a_hand_over_most_of_the_clip_is_still_flagged(
    pexels: tuple[list[np.ndarray], list[np.ndarray]],
) -> None:
    """From frame 40: 15 clear frames, then 64 covered ones (the median is a covered value)."""
    frames, landmarks = pexels
    covered = _covered(frames[40:], landmarks[40:])
    assert not covered[: 52 - 40].any()
    assert covered[COVERED.start - 40 :].mean() > 0.9


@pytest.mark.parametrize("clip", ["bbaf2n", "lbax4n", "pwij3p", "sbwe5n", "swiz3n"])
@pytest.mark.parametrize("look", [lambda f: f, _grey], ids=["colour", "black-and-white"])
def test_talking_without_a_hand_flags_nothing(
    clip: str, look: Callable[[np.ndarray], np.ndarray]
) -> None:
    with VideoReader(media_path(f"video/grid_{clip}.mpg")) as reader:
        frames = list(reader)
    with FaceTracker() as tracker:
        landmarks = [tracker.process(frame) for frame in frames]
    assert not _covered([look(frame) for frame in frames], landmarks).any()


def test_lips_that_stand_out_by_neither_cue_give_no_evidence() -> None:
    flat = np.r_[np.full(20, 0.4), np.full(20, 0.0)]  # colourless and as light as the skin
    assert not covered_frames(flat, flat).any()
    assert not covered_frames(np.full(2, np.nan), np.full(2, np.nan)).any()
    from openlipsync.engine.library import clear_frames

    assert not clear_frames(flat, flat).any()  # and none is vouched for as clear either
    grey = np.r_[np.full(20, 0.0), np.full(5, 0.0)], np.r_[np.full(20, 25.0), np.full(5, 4.0)]
    np.testing.assert_array_equal(clear_frames(*grey), np.arange(25) < 20)  # darkness decides


def test_a_grin_is_not_a_hand() -> None:
    """pyfeat_single_face.mp4 closes its lips for frames 0-18, then grins, teeth showing, to
    frame 69: the stretched lips lose about half their redness (under the 0.55 ratio), and the
    teeth between them say the mouth is uncovered."""
    with VideoReader(media_path("video/pyfeat_single_face.mp4")) as reader:
        frames = list(reader)
    with FaceTracker() as tracker:
        landmarks = [tracker.process(frame) for frame in frames]
    contrast = np.array([lip_contrast(f, p) for f, p in zip(frames, landmarks, strict=True)])
    grin = slice(22, 66)
    typical = np.percentile(contrast[:, 0], 85)
    assert (contrast[grin, 0] < 0.6 * typical).mean() > 0.5  # the redness alone would flag it
    assert (contrast[grin, 2] > 0.15).all() and (contrast[:19, 2] == 0).all()  # teeth, or none
    assert not covered_frames(*contrast.T)[:66].any()


def test_a_hand_arriving_between_two_samples_leaves_the_clear_frames_lip_synced(
    pexels: tuple[list[np.ndarray], list[np.ndarray]],
) -> None:
    """The hand model samples every 15th frame: the one at 60 sees the hand, the one at 45
    does not, so 45-59 were all flagged, though the lips stay clear until about 56."""
    from openlipsync.engine.library import clear_frames
    from openlipsync.engine.tracking import HandWatch

    frames, landmarks = pexels
    watch = HandWatch(every=15)
    try:
        for index, (frame, points) in enumerate(zip(frames, landmarks, strict=True)):
            watch.observe(index, frame, points)
        samples = watch.samples()
        assert samples[45] is False and samples[60] is True
        contrast = np.array([lip_contrast(f, p) for f, p in zip(frames, landmarks, strict=True)])
        before = watch.covered(len(frames))
        after = watch.covered(len(frames), clear_frames(contrast[:, 0], contrast[:, 1]))
    finally:
        watch.close()
    assert before[CLEAR].any()  # 45-51 flagged on the sample's word alone
    assert not after[CLEAR].any()
    assert after[60:75].all()  # around the sample that saw the hand
    hand_or_contrast = after | covered_frames(*contrast.T)
    assert hand_or_contrast[COVERED].mean() > 0.9
