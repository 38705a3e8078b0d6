"""A face that smiles while it speaks: lip-synced through the smile, and the smile kept.

pyfeat_single_face.mp4 (72 frames at 30 fps) holds a neutral closed mouth for frames 0-18,
then grins, teeth showing, to frame 69. Before: the grin's stretched lips lost half their
redness and read as a covered mouth, so every grinning frame passed through unchanged (the
grin held open through pauses); and a target of neutral width pasted neutral mouths under
raised cheeks. The output is measured with dlib, not the engine's face mesh.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from openlipsync.engine.motion import EXPRESSION_DEAD, expression_width, fit_person
from openlipsync.engine.mouth import mouth_shape
from openlipsync.engine.tracking import track_video
from openlipsync.media.video import VideoReader
from tests.conftest import REPO, media_path

sys.path.insert(0, str(REPO))
from bench import dlib_landmarks, quality  # noqa: E402

NEUTRAL, GRIN = range(0, 17), range(24, 66)
EYES, CORNERS = (36, 45), (48, 54)


def _frames(relative: str) -> list[np.ndarray]:
    with VideoReader(media_path(relative)) as reader:
        return list(reader)


def _measured(relative: str) -> np.ndarray:
    return mouth_shape(track_video(_frames(relative)).landmarks)


def test_a_held_smile_widens_the_targets_and_speech_does_not() -> None:
    measured = _measured("video/pyfeat_single_face.mp4")
    held = expression_width(measured, fit_person(None, measured, 30.0), 30.0)
    assert np.all(held[NEUTRAL] == 0)
    assert held[GRIN].min() > 0.15  # the grin is 0.28 wider than the closed mouth
    for clip in ("bbaf2n", "lbax4n", "pwij3p", "sbwe5n", "swiz3n"):  # talking, not smiling
        measured = _measured(f"video/grid_{clip}.mpg")
        held = expression_width(measured, fit_person(None, measured, 25.0), 25.0)
        assert np.abs(held).max() < 0.25 * EXPRESSION_DEAD, clip


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_a_grinning_face_is_lip_synced_and_keeps_its_smile(tmp_path: Path) -> None:
    pytest.importorskip("dlib")
    from openlipsync.engine import GenerateRequest, generate

    speech = media_path("speech/jfk_inaugural.flac")
    out = tmp_path / "smiling.mp4"
    video = media_path("video/pyfeat_single_face.mp4")
    generate(GenerateRequest(video, speech, out, sync_mode="loop"))
    shown, fps = dlib_landmarks.read_rgb_frames(out)
    points = dlib_landmarks.measure_frames(shown)
    opening = dlib_landmarks.inner_lip_opening(points)
    eyes = np.linalg.norm(points[:, EYES[0]] - points[:, EYES[1]], axis=-1)
    width = np.linalg.norm(points[:, CORNERS[0]] - points[:, CORNERS[1]], axis=-1) / eyes
    level = quality.loudness(quality.read_audio(speech), fps, len(shown))
    r, lag = quality.best_lag_correlation(opening, level)
    assert r > 0.6 and abs(lag) <= 1, (r, lag)  # 0.51 when the grin passed through

    src = np.arange(len(shown)) % 72
    grin, neutral = np.isin(src, GRIN), np.isin(src, NEUTRAL)
    quiet = level < np.percentile(level, 25)
    source_grin = np.nanmedian(
        dlib_landmarks.inner_lip_opening(
            dlib_landmarks.measure_frames(
                _frames("video/pyfeat_single_face.mp4")[GRIN.start : GRIN.stop]
            )
        )
    )
    assert (grin & quiet).sum() >= 10
    assert np.nanmedian(opening[grin & quiet]) < 0.3 * source_grin  # closed in the pauses
    assert np.nanmedian(width[grin]) > np.nanmedian(width[neutral]) + 0.1  # still smiling
