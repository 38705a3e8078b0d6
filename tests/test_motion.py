"""Audio to mouth motion on real speech and real faces: closes, opens, smooth, scaled, learned."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import media_path

from openlipsync.engine.audio_features import AudioFeatures, extract
from openlipsync.engine.errors import AudioMissing, InputTooLong
from openlipsync.engine.motion import PersonModel, fit_person, plan_mouth
from openlipsync.media.audio import AudioClip, load_audio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the bench/ scripts


@pytest.fixture(scope="module")
def speech() -> AudioClip:
    return load_audio(media_path("speech/librivox_austen_0870.wav"), 16000)


@pytest.fixture(scope="module")
def grid_measured() -> tuple[AudioClip, np.ndarray, float]:
    """A GRID talker's own audio and their MediaPipe mouth shapes, frame by frame."""
    from bench.dlib_landmarks import read_rgb_frames
    from bench.quality import measure_mouth_shapes

    path = media_path("video/grid_sbwe5n.mpg")
    frames, fps = read_rgb_frames(path)
    return load_audio(path, 16000), measure_mouth_shapes(frames), fps


def still_person() -> PersonModel:
    return fit_person(None, np.array([[0.004, 0.85, 0.5]], np.float32), 25.0)


def with_silence(clip: AudioClip, before: float, after: float) -> AudioClip:
    rate = clip.sample_rate
    samples = np.concatenate(
        [np.zeros(int(before * rate)), clip.samples, np.zeros(int(after * rate))]
    )
    return AudioClip(samples.astype(np.float32), rate)


def test_mouth_closes_in_silence_and_opens_in_speech(speech: AudioClip) -> None:
    fps, person = 25.0, still_person()
    clip = with_silence(speech, 1.5, 1.0)
    count = int(clip.duration * fps)
    plan = plan_mouth(clip, fps, count, person)
    opening = plan[:, 0]
    lead_in = opening[: int(1.5 * fps) - 3]
    tail = opening[-int(1.0 * fps) + 3 :]
    talk = opening[int(1.5 * fps) : -int(1.0 * fps)]
    closed = person.neutral[0] + 0.02 * person.span[0]
    assert lead_in.max() <= closed and tail.max() <= closed
    assert np.percentile(talk, 90) > person.neutral[0] + 0.4 * person.span[0]
    assert talk.mean() > person.neutral[0] + 0.15 * person.span[0]
    # Speech has closures too: the mouth must not just stay open while someone talks.
    assert np.mean(talk < person.neutral[0] + 0.1 * person.span[0]) > 0.05


def test_pauses_over_background_noise_stay_closed(speech: AudioClip) -> None:
    """A noisy room: hiss only 20 dB under the voice must not hold the mouth open in pauses."""
    clip = with_silence(speech, 1.5, 1.0)
    rms = float(np.sqrt(np.mean(speech.samples**2)))
    noise = np.random.default_rng(0).normal(0.0, rms * 0.1, clip.samples.size)
    noisy = AudioClip((clip.samples + noise).astype(np.float32), clip.sample_rate)
    person = still_person()
    opening = plan_mouth(noisy, 25.0, int(noisy.duration * 25), person)[:, 0]
    relative = (opening - person.neutral[0]) / person.span[0]
    assert relative[: int(1.5 * 25) - 3].max() < 0.05
    assert np.percentile(relative[int(1.5 * 25) : -25], 90) > 0.4


def test_a_track_of_room_noise_does_not_talk() -> None:
    """pyfeat_single_face.mp4's audio is hiss and one click: no speech, so no mouth motion."""
    noise = load_audio(media_path("video/pyfeat_single_face.mp4"), 16000)
    person = still_person()
    opening = plan_mouth(noise, 30.0, int(noise.duration * 30), person)[:, 0]
    relative = (opening - person.neutral[0]) / person.span[0]
    assert np.median(relative) < 0.02 and np.mean(relative > 0.1) < 0.1


def high_frequency_share(curve: np.ndarray, fps: float, cutoff: float = 8.0) -> float:
    """Share of a curve's motion power above `cutoff` Hz: faster than syllables, i.e. jitter."""
    power = np.abs(np.fft.rfft(curve - curve.mean())) ** 2
    freqs = np.fft.rfftfreq(curve.size, 1.0 / fps)
    return float(power[freqs >= cutoff].sum() / power[1:].sum())


def test_motion_is_smooth(speech: AudioClip) -> None:
    """Bounds from real talking heads (GRID, MediaPipe, 25 fps): a mouth moves at most ~0.8 of
    its speaking range between frames, and 1-2.6% of its motion power lies above 8 Hz."""
    for fps in (25.0, 30.0):
        person = still_person()
        plan = plan_mouth(speech, fps, int(speech.duration * fps), person, temperature=0.5)
        steps = np.abs(np.diff(plan, axis=0)) / person.span
        assert steps.max() < 0.85
        assert high_frequency_share(plan[:, 0], fps) < 0.05


def test_temperature_scales_amplitude_monotonically(speech: AudioClip) -> None:
    person = still_person()
    count = int(speech.duration * 25)
    amplitude = [
        np.percentile(plan_mouth(speech, 25.0, count, person, t)[:, 0] - person.neutral[0], 90)
        for t in (0.0, 0.5, 1.0)
    ]
    assert amplitude[0] < amplitude[1] < amplitude[2]
    assert amplitude[2] > 2 * amplitude[0]


def test_person_fit_sets_the_range_to_the_measured_one(speech: AudioClip, grid_measured) -> None:
    _, measured, fps = grid_measured
    bigger = measured.copy()
    bigger[:, 0] = 0.02 + 2.5 * measured[:, 0]
    count = int(speech.duration * fps)
    small_person = fit_person(None, measured, fps)
    big_person = fit_person(None, bigger, fps)
    small = plan_mouth(speech, fps, count, small_person)[:, 0]
    big = plan_mouth(speech, fps, count, big_person)[:, 0]
    assert small_person.source == big_person.source == "general"
    assert np.ptp(big) == pytest.approx(2.5 * np.ptp(small), rel=0.05)
    assert big.min() == pytest.approx(np.nanpercentile(bigger[:, 0], 5), abs=0.01)
    # The plan stays within what this face was seen to do (plus temperature headroom).
    assert np.percentile(small, 95) <= 1.3 * np.nanpercentile(measured[:, 0], 95) + 0.01


def test_speaking_source_teaches_the_person_mapping(grid_measured) -> None:
    audio, measured, fps = grid_measured
    person = fit_person(audio, measured, fps)
    assert person.source == "learned"
    assert person.fit_r > 0.3
    general = fit_person(None, measured, fps)
    assert not np.allclose(person.open_weights, general.open_weights)


@pytest.mark.parametrize("fps", [23.976, 25.0, 30.0])
@pytest.mark.parametrize("count", [1, 37, 101])
def test_output_shape_is_exact(speech: AudioClip, fps: float, count: int) -> None:
    plan = plan_mouth(speech, fps, count, still_person())
    assert plan.shape == (count, 3) and plan.dtype == np.float32
    assert np.isfinite(plan).all()


def test_frames_past_the_audio_are_closed(speech: AudioClip) -> None:
    person = still_person()
    count = int((speech.duration + 2.0) * 25)
    plan = plan_mouth(speech, 25.0, count, person)
    assert np.allclose(plan[-40:], person.neutral, atol=1e-3)


def test_inactive_frames_get_the_neutral_mouth(speech: AudioClip) -> None:
    person = still_person()
    count = int(speech.duration * 25)
    active = np.ones(count, bool)
    active[10:30] = False
    plan = plan_mouth(speech, 25.0, count, person, active=active[:-5])  # short mask: rest off
    assert np.allclose(plan[10:30], person.neutral)
    assert np.allclose(plan[-5:], person.neutral)
    assert plan[30:-5, 0].max() > person.neutral[0] + 0.2 * person.span[0]


def test_a_smiling_photo_is_planned_closed_in_silence() -> None:
    person = fit_person(None, np.array([[0.14, 0.95, 0.6]], np.float32), 25.0)
    assert person.source == "still"
    assert person.neutral[0] < 0.01 and person.neutral[1] < 0.95
    plan = plan_mouth(AudioClip(np.zeros(16000, np.float32), 16000), 25.0, 25, person)
    assert np.allclose(plan, person.neutral)


def test_bad_inputs_give_clear_errors(speech: AudioClip) -> None:
    person = still_person()
    with pytest.raises(AudioMissing):
        plan_mouth(AudioClip(np.zeros(0, np.float32), 16000), 25.0, 10, person)
    with pytest.raises(ValueError, match="fps"):
        plan_mouth(speech, 0.0, 10, person)
    with pytest.raises(ValueError, match="fps"):
        plan_mouth(speech, float("nan"), 10, person)
    assert plan_mouth(speech, 25.0, 0, person).shape == (0, 3)
    with pytest.raises(ValueError, match="measured"):
        fit_person(speech, np.zeros((10, 2), np.float32), 25.0)
    with pytest.raises(InputTooLong):
        plan_mouth(speech, 25.0, 10**9, person)
    hostile = AudioClip(np.full(16000, np.nan, np.float32), 16000)
    assert np.isfinite(plan_mouth(hostile, 25.0, 25, person)).all()
    loud = AudioClip(np.full(16000, 1e30, np.float32), 16000)
    assert np.isfinite(plan_mouth(loud, 25.0, 25, person)).all()
    # No face anywhere in the source: typical human mouth, never NaN.
    faceless = fit_person(speech, np.full((50, 3), np.nan, np.float32), 25.0)
    assert np.isfinite(faceless.neutral).all() and faceless.source == "still"
    assert np.isfinite(plan_mouth(speech, 25.0, 30, faceless, temperature=float("nan"))).all()


def test_features_cover_every_frame_at_high_frame_rates(speech: AudioClip) -> None:
    features = extract(speech, 240.0, 480)
    assert isinstance(features, AudioFeatures)
    assert features.level.shape == (480,) and features.mfcc.shape == (480, 13)
    assert np.isfinite(features.mfcc).all()


@pytest.mark.slow
def test_plan_follows_real_lips_better_than_loudness() -> None:
    """Truth protocol on one GRID clip: first half teaches, second half's audio drives.

    Fails if the model degenerates to 'open with loudness' (loudness alone r ~0.85 here)."""
    from bench.quality import truth_case

    row = truth_case(media_path("video/grid_sbwe5n.mpg"), Path("."), True, None)
    assert row.r >= 0.9
    assert row.r > row.loudness_r + 0.05
    assert row.diff_r >= 0.6


def test_a_face_that_never_spoke_opens_at_least_half_the_typical_range(
    grid_measured: tuple[AudioClip, np.ndarray, float],
) -> None:
    """Without speech in the source its spread is a smile or a frown, not how far it opens to
    speak: the general mapping keeps at least half the typical range; learned speech does not
    need the floor."""
    from openlipsync.engine.motion import GENERAL_SPAN, TYPICAL_RANGE

    audio, measured, fps = grid_measured
    middle = np.median(measured, axis=0)
    barely = (middle + 0.2 * (measured - middle)).astype(np.float32)  # a fifth of the motion
    shuffled = np.random.default_rng(0).permutation(barely)
    for source in (None, audio):  # no sound; sound its mouth does not follow
        silent = fit_person(source, shuffled, fps)
        assert silent.source == "general"
        assert np.all(silent.span >= GENERAL_SPAN * TYPICAL_RANGE - 1e-6)
        assert silent.span[0] == pytest.approx(GENERAL_SPAN * TYPICAL_RANGE[0])
    learned = fit_person(audio, measured, fps)
    assert learned.source == "learned"
    spread = np.percentile(measured, 95, axis=0) - np.percentile(measured, 5, axis=0)
    assert np.allclose(learned.span[0], max(spread[0], 0.25 * TYPICAL_RANGE[0]), rtol=1e-4)
