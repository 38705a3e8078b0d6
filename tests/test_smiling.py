"""A face that smiles while it speaks: lip-synced through the smile, and the smile kept.

pyfeat_single_face.mp4 (72 frames at 30 fps) holds a neutral closed mouth for frames 0-18,
then grins, teeth showing, to frame 69. Before: the grin's stretched lips lost half their
redness and read as a covered mouth, so every grinning frame passed through unchanged (the
grin held open through speech); and a target of neutral width pasted neutral mouths under
raised cheeks. pexels_woman_expressions.mp4 laughs with her jaw low for seconds: a target of
neutral jaw lifted the chin a fifth of an eye distance and left a dark band along the jaw,
and closing her grin in the dub's pauses folded her cheeks into seams along the smile lines:
a grin in silence now keeps its parted lips. The output is measured with dlib, not the
engine's face mesh.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from openlipsync.engine.library import lip_contrast
from openlipsync.engine.motion import EXPRESSION_DEAD, fit_person, held_expression
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


def _measured_with_teeth(relative: str) -> tuple[np.ndarray, np.ndarray]:
    frames = _frames(relative)
    landmarks = track_video(frames).landmarks
    teeth = [
        lip_contrast(f, p).teeth if np.isfinite(p).all() else np.nan
        for f, p in zip(frames, landmarks, strict=True)
    ]
    return mouth_shape(landmarks), np.array(teeth, np.float32)


def test_a_silent_grin_holds_its_lips_apart_a_talking_one_does_not() -> None:
    measured, teeth = _measured_with_teeth("video/pyfeat_single_face.mp4")
    person = fit_person(None, measured, 30.0)
    held = held_expression(measured, person, 30.0, teeth)
    assert held[GRIN, 0].min() > 0.1  # parted 0.15 over its teeth, from its first frame
    assert np.all(held[NEUTRAL, 0] == 0)
    person.speaking = np.ones(len(measured), np.float32)  # as if their own sound were speech
    assert np.all(held_expression(measured, person, 30.0, teeth)[:, 0] == 0)
    person.speaking[:] = 0
    no_teeth = np.zeros_like(teeth)  # a gaping mouth (or film without colour) is not a grin
    assert np.all(held_expression(measured, person, 30.0, no_teeth)[:, 0] == 0)


def test_a_silent_grin_in_black_and_white_film_holds_its_lips_apart_too() -> None:
    """Without colour teeth are told by lightness alone (they were never found, and the grin
    closed in the dub's pauses)."""
    frames = [
        cv2.cvtColor(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
        for f in _frames("video/pyfeat_single_face.mp4")
    ]
    landmarks = track_video(frames).landmarks
    teeth = np.array([lip_contrast(f, p).teeth for f, p in zip(frames, landmarks, strict=True)])
    assert teeth[GRIN].min() > 0.15 and teeth[NEUTRAL].max() < 0.05
    measured = mouth_shape(landmarks)
    held = held_expression(measured, fit_person(None, measured, 30.0), 30.0, teeth)
    assert held[GRIN, 0].min() > 0.1 and np.all(held[NEUTRAL, 0] == 0)


def test_held_smiles_widen_and_laughs_lower_the_targets_speech_does_neither() -> None:
    measured = _measured("video/pyfeat_single_face.mp4")
    held = held_expression(measured, fit_person(None, measured, 30.0), 30.0)
    assert np.all(held[NEUTRAL] == 0) and np.all(held[:, 0] == 0)  # the audio opens the lips
    assert held[GRIN, 2].min() > 0.25  # the grin is 0.28 wider than the closed mouth
    # pexels_woman_expressions.mp4 laughs, jaw low, from about frame 245 to 340.
    measured = _measured("video/pexels_woman_expressions.mp4")
    held = held_expression(measured, fit_person(None, measured, 23.976), 23.976)
    assert held[250:330, 1].min() > 0.03
    for clip in ("bbaf2n", "lbax4n", "pwij3p", "sbwe5n", "swiz3n"):  # talking, not smiling
        measured = _measured(f"video/grid_{clip}.mpg")
        held = held_expression(measured, fit_person(None, measured, 25.0), 25.0)
        assert np.all(np.abs(held) < 0.25 * EXPRESSION_DEAD), clip


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
    assert (grin & quiet).sum() >= 10 and (neutral & quiet).sum() >= 10
    # In the pauses a grin stays a grin (lips apart over its teeth: closing them pasted
    # closed lips under raised cheeks), and a neutral face closes its lips.
    assert np.nanmedian(opening[grin & quiet]) > 0.6 * source_grin
    assert np.nanmedian(opening[neutral & quiet]) < 0.2 * source_grin
    assert np.nanmedian(width[grin]) > np.nanmedian(width[neutral]) + 0.1  # still smiling


def test_a_laugh_closed_by_a_pause_keeps_its_chin_near_its_place(tmp_path: Path) -> None:
    """pexels_woman_expressions.mp4 laughs, jaw low, while JFK pauses (output frames 245-258):
    closing the lips raised the chin 0.19-0.20 eye distances (measured by dlib), leaving the
    neck's shadow along the jaw; holding the laugh's jaw less a dead zone, 0.08; holding all
    of it and the grin's parted lips, 0."""
    from openlipsync.engine import GenerateRequest, generate

    video = media_path("video/pexels_woman_expressions.mp4")
    out = tmp_path / "laugh.mp4"
    speech = media_path("speech/jfk_inaugural.flac")
    generate(GenerateRequest(video, speech, out, sync_mode="cut_off"))
    shown, _ = dlib_landmarks.read_rgb_frames(out)
    before = dlib_landmarks.measure_frames(_frames("video/pexels_woman_expressions.mp4")[245:259])
    after = dlib_landmarks.measure_frames(shown[245:259])
    eyes = np.linalg.norm(before[:, EYES[0]] - before[:, EYES[1]], axis=-1)
    rise = (before[:, 8, 1] - after[:, 8, 1]) / eyes
    assert np.median(rise) < 0.04, rise


def test_expressed_floors_the_jaw_and_offsets_the_opening_and_width() -> None:
    from openlipsync.engine.motion import expressed

    neutral = np.array([0.0, 0.7, 0.6], np.float32)
    targets = np.array([[0.0, 0.7, 0.6], [0.2, 0.9, 0.6], [0.2, 0.9, 0.6]], np.float32)
    held = np.array([[0.1, 0.15, 0.1], [0.1, 0.15, 0.1], [0.0, -0.05, -0.02]], np.float32)
    plan = targets.copy()
    out = expressed(targets, held, neutral)
    np.testing.assert_allclose(out[0], [0.1, 0.85, 0.7], atol=1e-6)  # a pause: the laugh
    np.testing.assert_allclose(out[1], [0.2, 0.9, 0.7], atol=1e-6)  # speech past it: not 1.05
    np.testing.assert_allclose(out[2], [0.2, 0.85, 0.58], atol=1e-6)  # a raised jaw: offset
    assert np.array_equal(targets, plan)  # the plan itself is left alone


def test_a_grin_does_not_carry_over_a_cut() -> None:
    """Shot one grins in silence, lips apart over its teeth, up to frame 60; shot two (another
    person) smiles with closed lips. Read across the cut, the grin's windows parted the
    second smile's lips on its first frames; per shot, nothing is held open there."""
    from openlipsync.engine.motion import PersonModel

    rng = np.random.default_rng(5)
    measured = np.column_stack(
        [rng.uniform(0.0, 0.01, 120), rng.normal(0.85, 0.005, 120), np.full(120, 0.8)]
    ).astype(np.float32)
    measured[:60, 0] += 0.15  # the grin's parted lips
    teeth = np.where(np.arange(120) < 60, 0.3, 0.0).astype(np.float32)
    person = PersonModel(
        neutral=np.array([0.0, 0.85, 0.5], np.float32),
        span=np.array([0.16, 0.08, 0.08], np.float32),
    )
    across = held_expression(measured, person, 25.0, teeth)
    assert across[30:60, 0].min() > 0.1 and across[60:62, 0].min() > 0.1
    per_shot = held_expression(measured, person, 25.0, teeth, cuts=[60])
    assert per_shot[30:60, 0].min() > 0.1 and np.all(per_shot[60:, 0] == 0)
    assert per_shot[60:, 2].min() > 0.25  # the second smile's width is still held
