"""Segments through the whole engine on real GRID clips: picture and sound untouched outside the
segments, the new audio and new lip motion inside, and the segment-only MP4."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from openlipsync.engine import GenerateRequest, generate
from openlipsync.engine.errors import InputTooLong
from openlipsync.engine.presets import preset_for
from openlipsync.engine.request import SegmentAudio
from openlipsync.engine.segments import from_frames
from openlipsync.media.audio import AudioClip, load_audio
from openlipsync.media.encode import VideoWriter
from openlipsync.media.video import VideoReader
from tests.conftest import media_path

pytestmark = pytest.mark.slow

SR = 16_000


def decode(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


def corr(a: AudioClip, b: AudioClip, a_start: float, b_start: float, seconds: float) -> float:
    """Correlation of `seconds` of `a` from a_start with the same length of `b` from b_start."""
    n = round(seconds * SR)
    x = a.samples[round(a_start * SR) :][:n]
    y = b.samples[round(b_start * SR) :][:n]
    return float(np.corrcoef(x, y)[0, 1])


@pytest.fixture(scope="module")
def clips() -> dict[str, Path]:
    return {
        "video": media_path("video/grid_bbaf2n.mpg"),
        "other": media_path("video/grid_swiz3n.mpg"),  # another speaker's real speech
        "third": media_path("video/grid_lbax4n.mpg"),
    }


@pytest.fixture(scope="module")
def reference(clips: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    """The input through the engine's own decoder and encoder untouched (the decoder's planes
    handed to the encoder, as the render pass hands a frame it does not change): what
    "unchanged" can best look like."""
    path = tmp_path_factory.mktemp("ref") / "ref.mp4"
    preset = preset_for("lipsync-2")
    with VideoReader(clips["video"]) as reader:
        info = reader.info
        writer = VideoWriter(
            path, info.width, info.height, 25.0, None, crf=preset.crf, preset=preset.x264
        )
        with writer:
            for picture in reader.pictures():
                writer.write_picture(writer.encodable(picture))
    return decode(path)


def mouth(frames: np.ndarray) -> np.ndarray:
    """The lower middle of a GRID frame, where the lips are (fixed camera, one speaker)."""
    h, w = frames.shape[-3:-1]
    return frames[..., int(0.55 * h) : int(0.85 * h), int(0.3 * w) : int(0.7 * w), :]


def test_one_segment_changes_only_its_second(
    tmp_path: Path, clips: dict[str, Path], reference: np.ndarray
) -> None:
    segment = SegmentAudio(1.0, 2.0, clips["other"], 1.0, 2.0)  # the driver's own speech
    request = GenerateRequest(
        clips["video"],
        clips["other"],
        tmp_path / "out.mp4",
        segments=[segment],
        segment_output=tmp_path / "segments.mp4",
    )
    result = generate(request)
    assert result.frame_count == 75 and result.duration == pytest.approx(3.0)
    assert result.segment_output == tmp_path / "segments.mp4"
    assert result.segment_duration == pytest.approx(1.0)
    out = decode(result.output)
    assert out.shape == reference.shape
    # Well before the segment: pixel for pixel the plain re-encode.
    assert min(psnr(out[i], reference[i]) for i in range(0, 20)) > 45
    # Well after: only the encoder's reference-frame drift (same GOP as changed frames).
    assert min(psnr(out[i], reference[i]) for i in range(56, 75)) > 40
    inside = [psnr(mouth(out[i]), mouth(reference[i])) for i in range(25, 50)]
    outside = [psnr(mouth(out[i]), mouth(reference[i])) for i in [*range(20), *range(56, 75)]]
    assert min(inside) < min(outside) - 4, (min(inside), min(outside))
    # Sound: the video's own outside, the driver's [1, 2) inside.
    own, new = load_audio(clips["video"], SR), load_audio(clips["other"], SR)
    sound = load_audio(result.output, SR)
    assert sound.duration == pytest.approx(3.0, abs=0.03)
    assert corr(sound, own, 0.05, 0.05, 0.9) > 0.9 and corr(sound, own, 2.05, 2.05, 0.9) > 0.9
    assert corr(sound, new, 1.05, 1.05, 0.9) > 0.9 and abs(corr(sound, own, 1.05, 1.05, 0.9)) < 0.3
    # The segment output: those 25 frames with that sound.
    only = decode(result.segment_output)
    assert len(only) == 25 and min(psnr(only[i], out[25 + i]) for i in range(25)) > 35
    only_sound = load_audio(result.segment_output, SR)
    assert only_sound.duration == pytest.approx(1.0, abs=0.03)
    assert corr(only_sound, new, 0.05, 1.05, 0.9) > 0.9


def test_two_drivers_crop_empty_and_overlong_segments(
    tmp_path: Path, clips: dict[str, Path]
) -> None:
    segments = [
        SegmentAudio(0.2, 1.0, clips["other"], 1.0, 1.8),  # cropped
        SegmentAudio(1.2, 1.2, clips["third"]),  # zero length: nothing
        SegmentAudio(2.0, 60.0, clips["third"]),  # runs past the end: clipped at 3 s
        SegmentAudio(70.0, 80.0, clips["other"]),  # entirely past the end: nothing
    ]
    request = GenerateRequest(
        clips["video"],
        clips["other"],
        tmp_path / "out.mp4",
        segments=segments,
        segment_output=tmp_path / "segments.mp4",
    )
    result = generate(request)
    assert result.frame_count == 75 and result.segment_duration == pytest.approx(1.8)
    own, sound = load_audio(clips["video"], SR), load_audio(result.output, SR)
    other, third = load_audio(clips["other"], SR), load_audio(clips["third"], SR)
    assert corr(sound, other, 0.25, 1.05, 0.7) > 0.9  # crop [1.0, 1.8) played at 0.2 s
    assert corr(sound, own, 1.05, 1.05, 0.9) > 0.9  # the zero-length segment changed nothing
    assert corr(sound, third, 2.05, 0.05, 0.9) > 0.9  # uncropped: the driver from its start
    only = load_audio(result.segment_output, SR)
    assert only.duration == pytest.approx(1.8, abs=0.03)
    assert corr(only, other, 0.05, 1.05, 0.7) > 0.9 and corr(only, third, 0.85, 0.05, 0.9) > 0.9
    assert len(decode(result.segment_output)) == 45


def test_deprecated_frames_form_and_no_segment_output(
    tmp_path: Path, clips: dict[str, Path], reference: np.ndarray
) -> None:
    # segments_frames [[25, 50]] with a single driver: its own seconds [1, 2) at video [1, 2).
    segments = from_frames([[25, 50]], 25.0, clips["other"])
    result = generate(
        GenerateRequest(clips["video"], clips["other"], tmp_path / "o.mp4", segments=segments)
    )
    assert result.frame_count == 75 and result.segment_output is None
    sound, new = load_audio(result.output, SR), load_audio(clips["other"], SR)
    assert corr(sound, new, 1.05, 1.05, 0.9) > 0.9
    out = decode(result.output)
    assert min(psnr(out[i], reference[i]) for i in range(20)) > 45


def test_only_empty_segments_leave_the_video_as_it_was(
    tmp_path: Path, clips: dict[str, Path], reference: np.ndarray
) -> None:
    result = generate(
        GenerateRequest(
            clips["video"],
            clips["other"],
            tmp_path / "o.mp4",
            segments=[SegmentAudio(1.0, 1.0, clips["other"])],
            segment_output=tmp_path / "never.mp4",
        )
    )
    assert result.segment_output is None and not (tmp_path / "never.mp4").exists()
    out = decode(result.output)
    assert len(out) == len(reference)
    assert min(psnr(f, r) for f, r in zip(out, reference, strict=True)) > 45
    own, sound = load_audio(clips["video"], SR), load_audio(result.output, SR)
    assert corr(sound, own, 0.05, 0.05, 2.9) > 0.95


def test_a_photo_with_a_far_segment_end_is_refused(tmp_path: Path) -> None:
    audio = media_path("speech/arctic_a0009.wav")
    request = GenerateRequest(
        media_path("photo/obama.jpg"),
        audio,
        tmp_path / "o.mp4",
        segments=[SegmentAudio(0.0, 1e9, audio)],
        max_seconds=60.0,
    )
    with pytest.raises(InputTooLong):
        generate(request)
    assert not (tmp_path / "o.mp4").exists()
