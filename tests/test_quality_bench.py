"""The quality bench's own measures, checked on real footage so its verdicts can be trusted."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import media_path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the bench/ scripts

from bench.contact_sheet import save_contact_sheet  # noqa: E402
from bench.dlib_landmarks import (  # noqa: E402
    inner_lip_opening,
    measure_frames,
    outer_lip_opening,
    read_rgb_frames,
)
from bench.quality import (  # noqa: E402
    Clip,
    best_lag_correlation,
    has_speech,
    landmark_jitter,
    loudness,
    pearson,
    psnr_outside_lower_face,
    read_audio,
    silence_vs_speech,
    write_video,
    write_wav,
)


@pytest.fixture(scope="module")
def grid() -> tuple[list[np.ndarray], float, np.ndarray, Clip]:
    """GRID frames, fps, dlib landmarks of every frame, and the clip's own audio."""
    path = media_path("video/grid_bbaf2n.mpg")
    frames, fps = read_rgb_frames(path)
    return frames, fps, measure_frames(frames), read_audio(path)


def test_dlib_finds_the_mouth_on_grid_frames(grid) -> None:
    frames, _, points, _ = grid
    assert points.shape == (len(frames), 68, 2) and np.isfinite(points).all()
    height, width = frames[0].shape[:2]
    mouth = points[:, 48:68]
    eyes = points[:, 36:48]
    # The mouth sits under the eyes, inside the picture, roughly centred.
    assert (mouth[..., 1].mean(axis=1) > eyes[..., 1].mean(axis=1) + 0.1 * height).all()
    assert (mouth[..., 0] > 0).all() and (mouth[..., 0] < width).all()
    outer, inner = outer_lip_opening(points), inner_lip_opening(points)
    assert (outer > inner).all()
    assert outer.min() > 0.1 and outer.max() < 0.6
    assert np.ptp(outer) > 0.08  # "bin blue at f two now": the lips visibly move


def test_genuine_footage_opens_with_loudness(grid) -> None:
    frames, fps, points, audio = grid
    level = loudness(audio, fps, len(frames))
    r, lag = best_lag_correlation(inner_lip_opening(points), level)
    assert r > 0.35 and abs(lag) <= 2
    silent, loud = silence_vs_speech(inner_lip_opening(points), level)
    assert silent < loud


def test_best_lag_recovers_a_known_shift(grid) -> None:
    frames, fps, _, audio = grid
    level = loudness(audio, fps, len(frames))
    mouth_first = np.concatenate([level[3:], np.full(3, level[-1])])  # moves 3 frames early
    r, lag = best_lag_correlation(mouth_first, level)
    assert lag == 3 and r > 0.99
    assert best_lag_correlation(np.zeros(20), level[:20]) == (pytest.approx(np.nan, nan_ok=True), 0)


def test_jitter_grows_with_shaking_landmarks(grid) -> None:
    _, _, points, _ = grid
    rng = np.random.default_rng(0)
    shaken = points + rng.normal(0.0, 2.0, points.shape).astype(np.float32)
    assert landmark_jitter(shaken) > 2 * landmark_jitter(points)


def test_psnr_ignores_the_lower_face_only(grid) -> None:
    frames, _, points, _ = grid
    source = frames[:4]
    mouth_edit = [f.copy() for f in source]
    for frame, face in zip(mouth_edit, points[:4], strict=True):
        x, y = face[62].astype(int)
        frame[y - 3 : y + 3, x - 5 : x + 5] = 0
    assert psnr_outside_lower_face(mouth_edit, source, points[:4]) == float("inf")
    background_edit = [f.copy() for f in source]
    for frame in background_edit:
        frame[:10, :10] = 255 - frame[:10, :10]
    assert 20 < psnr_outside_lower_face(background_edit, source, points[:4]) < 60


def test_speech_detection() -> None:
    path = media_path("video/grid_sbwe5n.mpg")
    frames, fps = read_rgb_frames(path)
    assert has_speech(read_audio(path), fps, len(frames))
    silent = media_path("video/pexels_woman_expressions.mp4")
    assert not has_speech(read_audio(silent), 23.976, 100)
    assert not has_speech(None, 25.0, 10)


def test_cut_video_round_trips(grid, tmp_path: Path) -> None:
    frames, fps, _, audio = grid
    half = len(frames) // 2
    first = Clip(audio.samples[: int(half / fps * audio.sample_rate)], audio.sample_rate)
    path = write_video(tmp_path / "first.mp4", frames[:half], fps, first)
    again, again_fps = read_rgb_frames(path)
    assert len(again) == half and again_fps == pytest.approx(fps)
    sound = read_audio(path)
    assert abs(sound.samples.size / sound.sample_rate - half / fps) < 0.1
    r = pearson(loudness(sound, fps, half), loudness(first, fps, half))
    assert r > 0.9
    wav = write_wav(tmp_path / "x.wav", first)
    assert read_audio(wav).samples.size == pytest.approx(first.samples.size, abs=2)


def test_contact_sheet_is_a_png(grid, tmp_path: Path) -> None:
    frames, fps, points, audio = grid
    curves = {"open": outer_lip_opening(points), "loudness": loudness(audio, fps, len(frames))}
    path = save_contact_sheet(tmp_path / "sheet.png", frames, points, curves, fps, title="t")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    with pytest.raises(ValueError):
        save_contact_sheet(tmp_path / "none.png", [], None, curves, fps)


def test_unreadable_media_is_a_clear_error(tmp_path: Path) -> None:
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00\x01not a video" * 50)
    with pytest.raises(ValueError, match="junk.mp4"):
        read_rgb_frames(junk)
    with pytest.raises(ValueError, match="junk.mp4"):
        read_audio(junk)
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="empty.wav"):
        read_audio(empty)


def test_dlib_picks_the_face_not_a_face_like_badge() -> None:
    """astronaut.png: the mission patch on the chest also scores as a (weak, larger) face."""
    frames, _ = read_rgb_frames(media_path("photo/astronaut.png"))
    points = measure_frames(frames)
    mouth_x, mouth_y = points[0, 48:68].mean(axis=0)
    assert 180 < mouth_x < 270 and 100 < mouth_y < 200  # the face, not the patch at y ~ 380
