"""Spec §7 sync modes made exact: counts, source indices, audio length, lipsync mask."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import media_path

from openlipsync.engine.request import SYNC_MODES
from openlipsync.media.audio import AudioClip, load_audio
from openlipsync.media.timeline import audio_frames, plan_timeline

FPS = 25.0

# Spec worked examples: (video seconds, audio seconds) -> output seconds per mode.
# 1.74 s is 43.5 frames and rounds half up to 44 frames = 1.76 s.
EXAMPLES = {
    (4.00, 8.64): {"bounce": 216, "loop": 216, "remap": 216, "silence": 216, "cut_off": 100},
    (10.00, 1.74): {"bounce": 44, "loop": 44, "remap": 44, "cut_off": 44, "silence": 250},
}


def _speech(seconds: float) -> AudioClip:
    """Real speech, looped to the wanted length (the content is irrelevant, the length is not)."""
    speech = load_audio(media_path("speech/librivox_austen_0870.wav"))
    reps = int(np.ceil(seconds / speech.duration))
    return AudioClip(np.tile(speech.samples, reps), 16000).padded_to(seconds)


@pytest.mark.parametrize("video_s,audio_s", list(EXAMPLES))
@pytest.mark.parametrize("mode", SYNC_MODES)
def test_spec_worked_examples_exact_counts(video_s: float, audio_s: float, mode: str) -> None:
    video_frames = round(video_s * FPS)
    audio = _speech(audio_s)
    timeline = plan_timeline(video_frames, FPS, audio, mode)
    expected = EXAMPLES[(video_s, audio_s)][mode]
    assert timeline.frame_count == expected
    assert len(timeline.src_index) == len(timeline.lipsync) == expected
    assert timeline.src_index.dtype == np.int32 and timeline.lipsync.dtype == bool
    assert timeline.duration == expected / FPS
    assert len(timeline.audio.samples) == round(expected / FPS * 16000)
    assert timeline.src_index.min() >= 0 and timeline.src_index.max() < video_frames
    n = min(len(audio.samples), len(timeline.audio.samples))
    assert np.array_equal(timeline.audio.samples[:n], audio.samples[:n])  # cut/pad, never shift


def test_loop_values() -> None:
    t = plan_timeline(100, FPS, _speech(8.64), "loop")
    assert t.src_index.tolist() == [i % 100 for i in range(216)]
    assert t.lipsync.all()


def test_bounce_values_do_not_double_the_turning_frames() -> None:
    t = plan_timeline(100, FPS, _speech(8.64), "bounce")
    expected = list(range(100)) + list(range(98, 0, -1)) + list(range(0, 18))
    assert t.src_index.tolist() == expected
    assert np.abs(np.diff(t.src_index)).max() == 1  # no jump cut anywhere
    assert plan_timeline(1, FPS, _speech(1.0), "bounce").src_index.tolist() == [0] * 25
    assert plan_timeline(2, FPS, _speech(0.2), "bounce").src_index.tolist() == [0, 1, 0, 1, 0]


def test_cut_off_values_and_audio_clipped() -> None:
    t = plan_timeline(100, FPS, _speech(8.64), "cut_off")
    assert t.src_index.tolist() == list(range(100))
    assert t.audio.duration == 4.0


def test_silence_audio_shorter_pads_silence_and_masks_lips() -> None:
    audio = _speech(1.74)
    t = plan_timeline(250, FPS, audio, "silence")
    assert t.src_index.tolist() == list(range(250))
    assert t.lipsync.tolist() == [True] * 44 + [False] * 206
    assert t.audio.duration == 10.0
    assert not t.audio.samples[len(audio.samples) :].any()


def test_silence_audio_longer_loops_the_picture() -> None:
    t = plan_timeline(100, FPS, _speech(8.64), "silence")
    assert t.src_index.tolist() == [i % 100 for i in range(216)]
    assert t.lipsync.all()


def test_remap_slows_down_and_speeds_up_evenly() -> None:
    slow = plan_timeline(100, FPS, _speech(8.64), "remap")
    assert slow.src_index[0] == 0 and slow.src_index[-1] == 99
    assert np.all(np.diff(slow.src_index) >= 0)
    assert set(np.bincount(slow.src_index).tolist()) <= {2, 3}  # every frame shown 2-3 times
    fast = plan_timeline(250, FPS, _speech(1.74), "remap")
    assert fast.src_index.tolist() == [int((i + 0.5) * 250 / 44) for i in range(44)]
    assert np.all(np.diff(fast.src_index) >= 5)  # 250 -> 44 frames: about every 5.7th frame


@pytest.mark.parametrize("mode", SYNC_MODES)
def test_equal_lengths_are_the_identity(mode: str) -> None:
    t = plan_timeline(75, FPS, _speech(3.0), mode)
    assert t.src_index.tolist() == list(range(75)) and t.lipsync.all()


@pytest.mark.parametrize("mode", SYNC_MODES)
def test_stills_ignore_the_mode(mode: str) -> None:
    t = plan_timeline(1, FPS, _speech(8.64), mode, is_still=True)
    assert t.frame_count == 216 and not t.src_index.any() and t.lipsync.all()
    assert t.audio.duration == 8.64


def test_rounding_rule_is_half_up_on_sample_counts() -> None:
    assert audio_frames(AudioClip.silence(1.74), 25) == 44  # 43.5 -> 44 (not banker's 44/43)
    assert audio_frames(AudioClip.silence(1.7399), 25) == 43
    assert audio_frames(AudioClip.silence(0.001), 25) == 1  # never an empty output
    t = plan_timeline(600, 24000 / 1001, _speech(10.0), "loop")
    assert t.frame_count == 240 and t.duration == pytest.approx(240 * 1001 / 24000)


def test_bad_arguments() -> None:
    audio = AudioClip.silence(1.0)
    with pytest.raises(ValueError, match="sync_mode"):
        plan_timeline(10, FPS, audio, "stretch")
    with pytest.raises(ValueError):
        plan_timeline(0, FPS, audio, "loop")
    with pytest.raises(ValueError):
        plan_timeline(10, 0.0, audio, "loop")
