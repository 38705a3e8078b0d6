"""Scene cuts on real footage: found at the exact frame of a splice, never inside one shot."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from openlipsync.engine.scenes import SceneDetector, scene_cuts, shot_ranges
from openlipsync.media.video import VideoReader
from tests.conftest import media_path
from tests.media_helpers import write_frames

SIZE = (360, 288)


def _frames(relative: str, limit: int | None = None) -> list[np.ndarray]:
    frames = []
    for frame in VideoReader(media_path(relative)):
        frames.append(cv2.resize(frame, SIZE, interpolation=cv2.INTER_AREA))
        if limit is not None and len(frames) >= limit:
            break
    return frames


@pytest.fixture(scope="module")
def spliced(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """GRID clip, 40 frames of the Pexels clip, another GRID clip: cuts at 75 and 115."""
    clips = [
        _frames("video/grid_bbaf2n.mpg"),
        _frames("video/pexels_woman_expressions.mp4", 40),
        _frames("video/grid_swiz3n.mpg"),
    ]
    assert [len(c) for c in clips] == [75, 40, 75]
    frames = (frame for clip in clips for frame in clip)
    return write_frames(tmp_path_factory.mktemp("scenes") / "spliced.mp4", frames, {})


def test_cuts_found_at_the_exact_splice_frames(spliced: Path) -> None:
    assert scene_cuts(VideoReader(spliced)) == [75, 115]


def test_streaming_detector_flags_the_same_frames(spliced: Path) -> None:
    detector = SceneDetector()
    flagged = [i for i, frame in enumerate(VideoReader(spliced)) if detector.push(frame)]
    assert flagged == [75, 115] == detector.cuts


@pytest.mark.parametrize(
    "clip", ["video/grid_bbaf2n.mpg", "video/grid_swiz3n.mpg", "video/pexels_woman_expressions.mp4"]
)
def test_no_cut_inside_one_real_clip(clip: str) -> None:
    # The Pexels clip has fast head turns and a hand moving across the face.
    assert scene_cuts(VideoReader(media_path(clip))) == []


def test_shot_ranges_cover_the_video_once() -> None:
    assert shot_ranges([75, 115], 190) == [(0, 75), (75, 115), (115, 190)]
    assert shot_ranges([], 10) == [(0, 10)]
    assert shot_ranges([0, 10, 12, 12], 10) == [(0, 10)]


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((10, 10), np.uint8),
        np.zeros((10, 10, 4), np.uint8),
        np.zeros((10, 10, 3), np.float32),
        np.zeros((0, 10, 3), np.uint8),
    ],
)
def test_bad_frames_are_rejected_clearly(bad: np.ndarray) -> None:
    with pytest.raises(ValueError, match="RGB uint8"):
        SceneDetector().push(bad)
