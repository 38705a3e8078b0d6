"""Speech over a bed of noise or music: the mouth speaks as it would in the clear, and the bed
alone keeps it shut. Real speech (arctic_a0009) from 1.5 s, 1.5 s of bed alone on each side.

Before: the level gate opened from 6 dB over the bed's floor, so white noise 26 dB under the
speech planned its openings at a third of their clean size (p50 0.010 vs 0.033), and a chord
bed at half (0.015).
"""

from __future__ import annotations

import numpy as np
import pytest

from openlipsync.engine.audio_features import RATE, _bed, _hop_analysis, _speech_level
from openlipsync.engine.motion import fit_person, plan_mouth
from openlipsync.engine.voice_activity import WINDOW, speech_probability
from openlipsync.media.audio import AudioClip, load_audio
from tests.conftest import media_path

FPS = 25.0
LEAD = 1.5  # seconds of bed before the speech


def _speech() -> np.ndarray:
    return load_audio(media_path("speech/arctic_a0009.wav"), RATE).samples.astype(np.float32)


def _with_bed(bed: str) -> np.ndarray:
    speech = _speech()
    length = len(speech) + 3 * RATE
    t = np.arange(length) / RATE
    if bed == "clean":
        under = np.zeros(length)
    elif bed == "noise":
        under = np.random.default_rng(0).standard_normal(length) * 0.05 * np.abs(speech).max()
    else:  # a chord with harmonics, pulsing four times a second (as syllables do)
        under = sum(
            np.sin(2 * np.pi * f0 * h * t) / h
            for f0 in (130.8, 261.6, 329.6, 392.0)
            for h in range(1, 6)
        )
        under *= 0.5 + 0.5 * np.sin(2 * np.pi * 2.0 * t) ** 2
        under *= 0.25 * np.abs(speech).max() / np.abs(under).max()
    mixed = under.astype(np.float32)
    start = int(LEAD * RATE)
    mixed[start : start + len(speech)] += speech
    return mixed


def _opening(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The plan's opening per frame for a still face (the general mapping), and where the
    speech is."""
    person = fit_person(None, np.array([[0.0, 0.85, 0.5]], np.float32), FPS)
    count = int(len(samples) / RATE * FPS)
    opening = plan_mouth(AudioClip(samples, RATE), FPS, count, person)[:, 0]
    times = np.arange(count) / FPS
    speaking = (times > LEAD + 0.2) & (times < LEAD + len(_speech()) / RATE - 0.2)
    return opening, speaking


def test_the_voice_model_hears_speech_and_not_the_bed() -> None:
    for bed in ("noise", "music"):
        probability = speech_probability(_with_bed(bed))
        times = np.arange(len(probability)) * WINDOW / RATE
        assert np.median(probability[(times > LEAD + 0.3) & (times < LEAD + 2.5)]) > 0.9, bed
        assert probability[times < LEAD - 0.1].max() < 0.2, bed


def test_clean_speech_has_next_to_no_bed() -> None:
    """0 before the analysis high-passed at 70 Hz; since, ARCTIC's pauses lose their rumble,
    fall silent, and its floor is read higher (0.08 of a bed, the noise beds 1.0)."""
    for samples in (_with_bed("clean"), _speech()):
        heard = _hop_analysis(samples)["heard_db"]
        audible = heard > -55
        assert _bed(heard - _speech_level(heard), audible) < 0.1


@pytest.mark.parametrize("bed", ["noise", "music"])
def test_speech_over_a_bed_opens_as_in_the_clear_and_the_bed_alone_stays_shut(bed: str) -> None:
    clean, speaking = _opening(_with_bed("clean"))
    under, _ = _opening(_with_bed(bed))
    for q in (50, 90):
        assert np.percentile(under[speaking], q) > 0.75 * np.percentile(clean[speaking], q), q
    alone = np.arange(len(under)) / FPS < LEAD - 0.1
    assert under[alone].max() < 0.01
