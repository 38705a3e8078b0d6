"""Faults of the recording, not of the speech: the mouth must move as it does for the clean take.

Real speech (LibriVox, 1 s of silence on each side) with a DC offset, recorded 20-40 dB too
quietly, or under mains hum. Before: a DC offset of 0.1 held the speech gate shut (mean opening
0.008 vs 0.045 clean), speech 30 dB quieter fell under the fixed -55 dBFS silence threshold
(0.013), 60 Hz hum at -30 dBFS took 42 % off every syllable (with its harmonics, 39 %); 40 dB
quieter, the mouth never moved.
"""

from __future__ import annotations

import numpy as np
import pytest

from openlipsync.engine.audio_features import RATE
from openlipsync.engine.motion import fit_person, plan_mouth
from openlipsync.media.audio import AudioClip, load_audio
from tests.conftest import media_path

FPS = 25.0


@pytest.fixture(scope="module")
def take() -> np.ndarray:
    speech = load_audio(media_path("speech/librivox_austen_0870.wav"), RATE).samples
    return np.concatenate([np.zeros(RATE), speech, np.zeros(RATE)]).astype(np.float32)


def _opening(samples: np.ndarray) -> np.ndarray:
    person = fit_person(None, np.array([[0.004, 0.85, 0.5]], np.float32), FPS)
    count = int(len(samples) / RATE * FPS)
    return plan_mouth(AudioClip(samples.astype(np.float32), RATE), FPS, count, person)[:, 0]


def _hum(length: int, dbfs: float, mains: float, harmonics: int = 1) -> np.ndarray:
    t = np.arange(length) / RATE
    wave = sum(np.sin(2 * np.pi * mains * k * t) / k for k in range(1, harmonics + 1))
    return 10 ** (dbfs / 20) * np.sqrt(2) * wave


FAULTS = {
    "dc offset 0.02": lambda x: x + 0.02,
    "dc offset 0.1": lambda x: x + 0.1,
    "20 dB too quiet": lambda x: x * 0.1,
    "30 dB too quiet": lambda x: x * 10 ** (-30 / 20),
    "40 dB too quiet": lambda x: x * 0.01,
    "50 Hz hum at -30 dBFS": lambda x: x + _hum(len(x), -30, 50),
    "60 Hz hum at -30 dBFS": lambda x: x + _hum(len(x), -30, 60),
    "60 Hz hum and harmonics at -30 dBFS": lambda x: x + _hum(len(x), -30, 60, 5),
}


@pytest.mark.parametrize("fault", FAULTS)
def test_a_faulty_recording_moves_the_mouth_as_the_clean_one(take: np.ndarray, fault: str) -> None:
    clean, faulty = _opening(take), _opening(FAULTS[fault](take))
    assert np.corrcoef(clean, faulty)[0, 1] > 0.95
    assert 0.8 < faulty.mean() / clean.mean() < 1.25, (faulty.mean(), clean.mean())
    silent = np.r_[faulty[: int(0.8 * FPS)], faulty[-int(0.8 * FPS) :]]
    assert silent.max() < 0.01  # the offset or the hum alone keeps it shut


def test_pure_hum_or_an_offset_alone_never_opens_the_mouth() -> None:
    silence = np.zeros(3 * RATE, np.float32)
    for sound in (silence + 0.1, _hum(len(silence), -20, 50, 5), silence + 1e-4):
        assert _opening(sound).max() < 0.01
