"""Probe of every shared recording, and the precise error for every kind of bad input."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from conftest import MEDIA, media_path
from media_helpers import transcode, with_cover_art
from PIL import Image

from openlipsync.engine.errors import AudioMissing, MediaUnreadable, UnsupportedSize, VideoMissing
from openlipsync.media.audio import AudioClip, load_audio
from openlipsync.media.encode import VideoWriter
from openlipsync.media.probe import probe
from openlipsync.media.video import FrameSource, VideoReader

SHARED = [
    # path, (width, height, fps, frame_count) or None, audio duration or None
    ("video/grid_bbaf2n.mpg", (360, 288, 25.0, 75), 2.978),
    ("video/grid_lbax4n.mpg", (360, 288, 25.0, 75), 2.978),
    ("video/grid_pwij3p.mpg", (360, 288, 25.0, 75), 2.978),
    ("video/grid_sbwe5n.mpg", (360, 288, 25.0, 75), 2.978),
    ("video/grid_swiz3n.mpg", (360, 288, 25.0, 75), 2.978),
    ("video/pexels_woman_expressions.mp4", (640, 360, 24000 / 1001, 472), 19.69),
    ("video/pyfeat_single_face.mp4", (640, 360, 30.0, 72), 2.419),
    ("speech/librivox_austen_0870.wav", None, 7.1),
    ("speech/librivox_austen_0890.wav", None, 5.3),
    ("speech/librivox_austen_0920.wav", None, 6.05),
    ("speech/arctic_a0009.wav", None, 3.095),
    ("speech/jfk_inaugural.flac", None, 11.0),
    ("photo/astronaut.png", (512, 512, 25.0, 1), None),
    ("photo/obama.jpg", (910, 1137, 25.0, 1), None),
    ("photo/multi_face.jpg", (1000, 667, 25.0, 1), None),
]


def test_the_table_covers_every_shared_media_file() -> None:
    media_path("video")
    on_disk = {
        str(p.relative_to(MEDIA))
        for p in MEDIA.rglob("*")
        if p.suffix in {".mpg", ".mp4", ".wav", ".flac", ".png", ".jpg"}
    }
    assert on_disk == {row[0] for row in SHARED}


@pytest.mark.parametrize("relative,video,audio", SHARED)
def test_probe_shared_media(relative: str, video, audio) -> None:
    info = probe(media_path(relative))
    assert info.size_bytes == media_path(relative).stat().st_size
    if video is None:
        assert info.video is None
    else:
        assert info.video is not None
        v = info.video
        assert (v.width, v.height, v.frame_count) == (video[0], video[1], video[3])
        assert v.fps == pytest.approx(video[2])
        assert v.rotation == 0
        assert v.is_still == (video[3] == 1)
        assert v.duration == pytest.approx(v.frame_count / v.fps, abs=0.5 / v.fps)
    if audio is None:
        assert info.audio is None
    else:
        assert info.audio is not None and info.audio.duration == pytest.approx(audio, abs=0.01)
        assert info.audio.sample_rate in (16000, 44100, 48000) and info.audio.channels >= 1


@pytest.fixture
def short_mp4(tmp_path: Path) -> Path:
    """A real 3 s H.264/AAC MP4 (faststart: the index is at the front)."""
    path = tmp_path / "grid.mp4"
    grid = media_path("video/grid_bbaf2n.mpg")
    with VideoReader(grid) as reader, VideoWriter(path, 360, 288, 25, load_audio(grid)) as w:
        for frame in reader:
            w.write(frame)
    return path


def _all_paths_fail(path: Path, error: type[Exception]) -> None:
    started = time.monotonic()
    with pytest.raises(error):
        probe(path)
    with pytest.raises(error):
        VideoReader(path)
    with pytest.raises(error):
        FrameSource(path)
    with pytest.raises(error):
        load_audio(path)
    assert time.monotonic() - started < 5


def test_text_file_named_mp4(tmp_path: Path) -> None:
    path = tmp_path / "notes.mp4"
    path.write_text("this is not a video\n" * 100)
    _all_paths_fail(path, MediaUnreadable)


def test_text_file_named_txt_is_not_ansi_art(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("FFmpeg would render this as an ANSI-art video\n" * 100)
    _all_paths_fail(path, MediaUnreadable)


def test_zero_byte_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.mp4"
    path.touch()
    _all_paths_fail(path, MediaUnreadable)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    _all_paths_fail(tmp_path / "absent.mp4", MediaUnreadable)
    _all_paths_fail(tmp_path, MediaUnreadable)


def test_random_bytes(tmp_path: Path) -> None:
    path = tmp_path / "noise.mov"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 200_000, np.uint8).tobytes())
    _all_paths_fail(path, MediaUnreadable)


def test_truncated_faststart_mp4(short_mp4: Path, tmp_path: Path) -> None:
    data = short_mp4.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.3)])
    _all_paths_fail(cut, MediaUnreadable)


def test_truncated_real_phone_style_mp4(tmp_path: Path) -> None:
    data = media_path("video/pexels_woman_expressions.mp4").read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.3)])
    _all_paths_fail(cut, MediaUnreadable)


def test_truncated_mp4_with_index_at_the_end(tmp_path: Path) -> None:
    src = transcode(media_path("video/grid_bbaf2n.mpg"), tmp_path / "g.mp4", "libx264", "aac")
    data = src.read_bytes()
    assert data.find(b"moov") > len(data) // 2  # index at the end: a cut loses it
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.3)])
    _all_paths_fail(cut, MediaUnreadable)


def test_audio_only_file_passed_as_video(speech_wav: Path) -> None:
    with pytest.raises(VideoMissing):
        VideoReader(speech_wav)
    with pytest.raises(VideoMissing):
        FrameSource(speech_wav)


def test_cover_art_is_not_a_video(tmp_path: Path) -> None:
    """An MP3 with an embedded album picture, as music players write them."""
    path = with_cover_art(media_path("speech/arctic_a0009.wav"), tmp_path / "cover.mp3")
    speech = load_audio(media_path("speech/arctic_a0009.wav"))
    info = probe(path)
    assert info.video is None and info.audio is not None
    assert info.audio.duration == pytest.approx(speech.duration, abs=0.1)
    with pytest.raises(VideoMissing):
        VideoReader(path)
    assert load_audio(path).duration == pytest.approx(speech.duration, abs=0.1)


def test_video_without_audio_passed_as_audio(tmp_path: Path) -> None:
    path = tmp_path / "silent.mp4"
    with VideoWriter(path, 64, 48, 25, None) as writer:
        for _ in range(10):
            writer.write(np.zeros((48, 64, 3), np.uint8))
    assert probe(path).audio is None
    with pytest.raises(AudioMissing):
        load_audio(path)
    with pytest.raises(AudioMissing):
        load_audio(media_path("photo/obama.jpg"))


def test_oversized_picture_is_refused_before_decoding(tmp_path: Path) -> None:
    path = tmp_path / "banner.png"
    Image.fromarray(np.zeros((4, 9000, 3), np.uint8)).save(path)
    with pytest.raises(UnsupportedSize):
        probe(path)
    with pytest.raises(UnsupportedSize):
        VideoReader(path)


def test_audio_clip_helpers() -> None:
    clip = AudioClip(np.arange(16000, dtype=np.float32) / 16000, 16000)
    assert clip.duration == 1.0
    assert len(clip.slice(0.25, 0.5).samples) == 4000
    assert clip.slice(0.25, 0.5).samples[0] == pytest.approx(0.25)
    assert len(clip.slice(0.9, 5.0).samples) == 1600
    longer = clip.padded_to(1.74)
    assert len(longer.samples) == 27840 and not longer.samples[16000:].any()
    assert len(clip.padded_to(0.5).samples) == 8000
