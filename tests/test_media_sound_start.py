"""A video whose sound starts after (or before) its picture: its own sound is read against the
picture, as a player plays it, for the person's model and for the segments' untouched parts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from openlipsync.engine import GenerateRequest, generate
from openlipsync.engine.request import SegmentAudio
from openlipsync.media.audio import load_audio, load_audio_to_file
from openlipsync.media.probe import probe
from tests.conftest import media_path
from tests.media_helpers import offset_sound

RATE = 16000
GRID = media_path("video/grid_bbaf2n.mpg")  # its sound and picture start together


def lag_seconds(reference: np.ndarray, other: np.ndarray, most: float = 0.6) -> float:
    """Where `other` best matches `reference`: > 0 when it runs late."""
    n = min(reference.size, other.size)
    a, b = reference[:n] - reference[:n].mean(), other[:n] - other[:n].mean()
    size = 1 << (2 * n - 1).bit_length()
    scores = np.fft.irfft(np.fft.rfft(b, size) * np.conj(np.fft.rfft(a, size)), size)
    span = int(most * RATE)
    lags = np.r_[np.arange(0, span + 1), np.arange(-span, 0)]
    return float(lags[int(np.argmax(scores[lags]))] / RATE)


@pytest.mark.parametrize("delay", [0.4, -0.4])
def test_a_videos_own_sound_is_read_from_its_first_frame(tmp_path: Path, delay: float) -> None:
    clip = offset_sound(GRID, tmp_path / "offset.mp4", delay)
    video = probe(clip).video
    assert video is not None and video.start == pytest.approx(max(0.0, -delay), abs=0.001)
    truth = load_audio(GRID, RATE).samples[round(video.start * RATE) :]  # from the first frame
    plain = load_audio(clip, RATE).samples
    assert abs(lag_seconds(truth, plain) + delay) < 0.03  # the offset is really in the file
    aligned = load_audio_to_file(clip, tmp_path / "own.f32", RATE, start_at=video.start).samples
    assert abs(lag_seconds(truth, aligned)) < 0.002
    if delay > 0:  # nothing was heard before the sound began
        assert not np.any(aligned[: round(0.35 * RATE)])


def test_stamps_past_belief_are_not_followed(tmp_path: Path) -> None:
    clip = offset_sound(GRID, tmp_path / "offset.mp4", 0.4)
    plain = load_audio(clip, RATE).samples
    for claimed in (-20.0, 20.0):  # a picture said to start 20 s before or after its sound
        read = load_audio_to_file(clip, tmp_path / "own.f32", RATE, start_at=claimed).samples
        assert read.shape == plain.shape and np.array_equal(read, plain)


def test_the_parts_outside_segments_keep_their_sound_in_sync(tmp_path: Path) -> None:
    """A segment redraws 1.0-2.0 s; before and after it the video's own sound plays: where
    the sound started 0.4 s late it was moved 0.4 s early, out of sync with the lips."""
    clip = offset_sound(GRID, tmp_path / "offset.mp4", 0.4)
    out = tmp_path / "out.mp4"
    speech = media_path("speech/arctic_a0009.wav")
    generate(GenerateRequest(clip, speech, out, segments=[SegmentAudio(1.0, 2.0, speech)]))
    heard = load_audio(out, RATE).samples
    truth = load_audio(GRID, RATE).samples
    tail = slice(round(2.1 * RATE), round(2.9 * RATE))  # the last words, after the segment
    assert abs(lag_seconds(truth[tail], heard[tail], most=0.5)) < 0.01
