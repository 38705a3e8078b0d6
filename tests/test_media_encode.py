"""VideoWriter output: H.264 + AAC MP4, exact frame count, audio exactly as long as the picture."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from conftest import media_path
from media_helpers import psnr

from openlipsync.engine.errors import EngineError
from openlipsync.engine.presets import PRESETS
from openlipsync.media.audio import AudioClip, load_audio
from openlipsync.media.encode import MAX_AUDIO_LAG, VideoWriter, frame_rate
from openlipsync.media.probe import probe
from openlipsync.media.video import VideoReader


@pytest.fixture(scope="module")
def grid_frames() -> list[np.ndarray]:
    with VideoReader(media_path("video/grid_bbaf2n.mpg")) as reader:
        return list(reader)


def _streams(path: Path) -> dict[str, tuple[str, int, float]]:
    """codec name, decoded frame count (video) and duration per stream type."""
    out = {}
    with av.open(str(path)) as container:
        for stream in container.streams:
            out[stream.type] = (
                stream.codec_context.name,
                stream.frames,
                float(stream.duration * stream.time_base),
            )
        assert container.format.name.startswith("mov,mp4")
    return out


@pytest.mark.parametrize(
    "audio_seconds,frames,fps",
    [(8.64, 75, 25.0), (1.74, 75, 25.0), (3.0, 72, 24000 / 1001), (2.0, 60, 30.0)],
)
def test_exact_frames_and_audio_as_long_as_video(
    tmp_path: Path, grid_frames, audio_seconds: float, frames: int, fps: float
) -> None:
    speech = load_audio(media_path("speech/librivox_austen_0890.wav")).padded_to(audio_seconds)
    path = tmp_path / "out.mp4"
    with VideoWriter(path, 360, 288, fps, speech) as writer:
        for i in range(frames):
            writer.write(grid_frames[i % 75])
    assert writer.close() == frames
    streams = _streams(path)
    assert streams["video"][:2] == ("h264", frames)
    assert streams["audio"][0] == "aac"
    video_duration = frames / fps
    assert streams["video"][2] == pytest.approx(video_duration, abs=1e-3)
    assert streams["audio"][2] == pytest.approx(video_duration, abs=1 / fps)
    info = probe(path)
    assert info.video is not None and info.video.frame_count == frames
    assert info.video.fps == pytest.approx(fps)
    with VideoReader(path) as reader:
        assert sum(1 for _ in reader) == frames


def test_picture_and_sound_survive_the_round_trip(tmp_path: Path, grid_frames) -> None:
    grid = media_path("video/grid_bbaf2n.mpg")
    speech = load_audio(grid, sample_rate=44100)  # an AAC rate: kept as is
    path = tmp_path / "out.mp4"
    with VideoWriter(path, 360, 288, 25.0, speech) as writer:
        for frame in grid_frames:
            writer.write(frame)
    with VideoReader(path) as reader:
        decoded = list(reader)
    assert min(psnr(a, b) for a, b in zip(decoded, grid_frames, strict=True)) > 33
    back = load_audio(path, 44100)
    assert back.duration == pytest.approx(3.0, abs=0.03)
    n = len(speech.samples)
    assert np.corrcoef(back.samples[:n], speech.samples)[0, 1] > 0.95  # no offset


def test_unusual_audio_rate_is_resampled_to_48k(tmp_path: Path) -> None:
    tone = np.sin(np.arange(7000 * 2) * 2 * np.pi * 440 / 7000).astype(np.float32) * 0.5
    path = tmp_path / "tone.mp4"
    with VideoWriter(path, 64, 48, 25, AudioClip(tone, 7000)) as writer:
        for _ in range(50):
            writer.write(np.full((48, 64, 3), 128, np.uint8))
    info = probe(path)
    assert info.audio is not None and info.audio.sample_rate == 48000
    assert info.audio.duration == pytest.approx(2.0, abs=0.04)


@pytest.mark.parametrize("size", [(361, 289), (359, 288), (360, 287), (1, 1)])
def test_odd_sizes_are_padded_by_edge_replication(tmp_path: Path, grid_frames, size) -> None:
    width, height = size
    frames = [cv2.resize(f, (width, height), interpolation=cv2.INTER_AREA) for f in grid_frames]
    path = tmp_path / "odd.mp4"
    with VideoWriter(path, width, height, 25, None) as writer:
        for frame in frames[:25]:
            writer.write(frame)
        assert (writer.width, writer.height) == (width + width % 2, height + height % 2)
    with VideoReader(path) as reader:
        decoded = list(reader)
    assert len(decoded) == 25
    assert decoded[0].shape == (height + height % 2, width + width % 2, 3)
    if width > 8:
        assert psnr(decoded[10][:height, :width], frames[10]) > 33
        if width % 2:  # the added column repeats the last one: no black edge
            assert psnr(decoded[10][:height, -1], decoded[10][:height, -2]) > 30


def test_colours_are_tagged_so_players_invert_them_exactly(tmp_path: Path) -> None:
    for height, colorspace in ((720, 6), (288, 6)):
        path = tmp_path / f"{height}.mp4"
        with VideoWriter(path, 64, height, 25, None) as writer:
            writer.write(np.full((height, 64, 3), (200, 60, 30), np.uint8))
        with av.open(str(path)) as container:
            frame = next(container.decode(video=0))
            assert frame.colorspace == colorspace
            rgb = frame.to_ndarray(format="rgb24")[8, 8].astype(int)
            assert np.abs(rgb - (200, 60, 30)).max() < 4


def test_writer_rejects_wrong_frames_and_removes_partial_files(tmp_path: Path) -> None:
    path = tmp_path / "bad.mp4"
    with pytest.raises(ValueError), VideoWriter(path, 64, 48, 25, None) as writer:
        writer.write(np.zeros((48, 64, 3), np.uint8))
        writer.write(np.zeros((64, 48, 3), np.uint8))
    assert not path.exists()
    writer = VideoWriter(path, 64, 48, 25, None)
    with pytest.raises(EngineError):
        writer.close()
    assert not path.exists()
    with pytest.raises(ValueError):
        VideoWriter(path, 0, 48, 25, None)


class _SlowSound(AudioClip):
    """Sound that takes its time to read, or fails at a given sample."""

    fail_at: int | None = None

    def window(self, start: int, count: int) -> np.ndarray:
        time.sleep(0.002)
        if self.fail_at is not None and start >= self.fail_at:
            raise OSError("scratch file unreadable")
        return super().window(start, count)


def test_sound_encoded_on_its_own_thread_keeps_up_and_is_exact(tmp_path: Path) -> None:
    """The audio thread may fall behind the picture (a slow read): `write` waits for it beyond
    MAX_AUDIO_LAG, and the file is the same as when the sound keeps up."""
    rng = np.random.default_rng(3)
    sound = (0.1 * rng.standard_normal(16000 * 3)).astype(np.float32)
    frames = [np.full((48, 64, 3), 8 * i, np.uint8) for i in range(75)]
    outputs = []
    for clip in (AudioClip(sound, 16000), _SlowSound(sound, 16000)):
        path = tmp_path / f"{type(clip).__name__}.mp4"
        with VideoWriter(path, 64, 48, 25, clip, preset="ultrafast") as writer:
            for frame in frames:
                writer.write(frame)
                feed = writer._feed
                assert writer.frames - feed._done <= round(MAX_AUDIO_LAG * 25) + 1
        outputs.append(path.read_bytes())
        assert _streams(path)["audio"][2] == pytest.approx(3.0, abs=0.03)
    assert outputs[0] == outputs[1]


def test_a_stopped_audio_thread_lets_a_waiting_writer_go(tmp_path: Path) -> None:
    """`write` waits while the sound is behind; once the audio thread has stopped (an aborted
    file) it must not wait for frames that will never be encoded."""
    clip = _SlowSound(np.zeros(16000 * 60, np.float32), 16000)
    writer = VideoWriter(tmp_path / "out.mp4", 64, 48, 25, clip, preset="ultrafast")
    feed = writer._feed
    feed.stop()
    waiting = threading.Thread(target=feed.advance, args=(1500, 10), daemon=True)
    waiting.start()
    waiting.join(timeout=10)
    assert not waiting.is_alive()
    writer._abort()
    assert not (tmp_path / "out.mp4").exists()


def test_a_sound_that_fails_fails_the_file(tmp_path: Path) -> None:
    sound = np.zeros(16000 * 3, np.float32)
    clip = _SlowSound(sound, 16000)
    clip.fail_at = 16000
    path = tmp_path / "out.mp4"
    writer = VideoWriter(path, 64, 48, 25, clip, preset="ultrafast")
    with pytest.raises(OSError, match="unreadable"), writer:  # raised by write or by close
        for _ in range(75):
            writer.write(np.zeros((48, 64, 3), np.uint8))
    assert not path.exists()
    assert not writer._feed._thread.is_alive()


def test_pictures_converted_elsewhere_encode_as_written_frames(tmp_path: Path, grid_frames) -> None:
    """`picture` (any thread) + `write_picture` (the encoder's) is `write`, byte for byte; a
    picture of another size is refused."""
    files = []
    for name in ("write", "picture"):
        path = tmp_path / f"{name}.mp4"
        with VideoWriter(path, 359, 287, 25, None, preset="ultrafast") as writer:
            for frame in grid_frames[:20]:
                odd = np.ascontiguousarray(frame[:287, :359])
                if name == "write":
                    writer.write(odd)
                else:
                    writer.write_picture(writer.picture(odd))
        files.append(path.read_bytes())
    assert files[0] == files[1]
    with VideoWriter(tmp_path / "x.mp4", 64, 48, 25, None) as writer:
        other = VideoWriter(tmp_path / "y.mp4", 64, 64, 25, None)
        with pytest.raises(ValueError, match="yuv420p 64x48"):
            writer.write_picture(other.picture(np.zeros((64, 64, 3), np.uint8)))
        other._abort()
        writer.write(np.zeros((48, 64, 3), np.uint8))


_ENCODE_ONE = """
import sys
from openlipsync.media.encode import VideoWriter
from openlipsync.media.video import VideoReader
with VideoReader(sys.argv[3]) as reader, VideoWriter(
    sys.argv[1], 360, 288, 25, None, crf=16, preset=sys.argv[2]
) as writer:
    for frame in reader:
        writer.write(frame)
"""


@pytest.mark.parametrize("x264", sorted({p.x264 for p in PRESETS.values()} - {"veryfast"}))
def test_encoder_presets_repeat_whatever_memory_held_before(tmp_path: Path, x264: str) -> None:
    """The presets' x264 settings must not read uninitialised memory (see presets.py): the
    same frames encoded in processes whose fresh allocations hold different bytes
    (MALLOC_PERTURB_) give the same file."""
    outputs = []
    for perturb in ("7", "165"):
        path = tmp_path / f"{perturb}.mp4"
        env = {**os.environ, "MALLOC_PERTURB_": perturb}
        clip = str(media_path("video/grid_lbax4n.mpg"))
        command = [sys.executable, "-c", _ENCODE_ONE, str(path), x264, clip]
        subprocess.run(command, check=True, env=env, timeout=120)
        outputs.append(path.read_bytes())
    assert outputs[0] == outputs[1]


def test_frame_rate_fractions() -> None:
    assert frame_rate(25.0) == 25
    assert frame_rate(24000 / 1001).denominator == 1001
    assert frame_rate(30000 / 1001).numerator == 30000
