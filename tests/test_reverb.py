"""A room's reverberation, read from real speech and taken out before the mouth is planned.

The rooms are simulated (bench/rooms.py: a direct path plus exponentially decaying noise,
seeded): real speech as recorded in a room of known RT60, and the same speech dry to compare
the mouth with.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import media_path

from bench.rooms import in_room, with_noise
from openlipsync.engine import audio_features
from openlipsync.engine.audio_features import extract
from openlipsync.engine.motion import TYPICAL_RANGE, PersonModel, plan_mouth
from openlipsync.engine.reverb import (
    CARRIED_HOPS,
    ChunkedSuppression,
    Room,
    measured_room,
    suppressed,
)
from openlipsync.media.audio import AudioClip, load_audio

RATE = 16000
FPS = 25.0


@pytest.fixture(scope="module")
def dry() -> np.ndarray:
    return load_audio(media_path("speech/librivox_austen_0870.wav"), RATE).samples


def heard_power(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The analysis's power spectra of one chunk (hops x bins) and the bins' frequencies."""
    hops = min(audio_features.CHUNK_HOPS, samples.size // audio_features.HOP)
    cleaning = audio_features._cleaning(samples)
    frames = audio_features._frames(samples, 0, hops, cleaning) * np.hanning(audio_features.WINDOW)
    power = np.abs(np.fft.rfft(frames, n=512, axis=1)) ** 2 / audio_features.WINDOW
    return power, np.fft.rfftfreq(512, 1.0 / RATE)


def test_dry_speech_has_no_room(dry: np.ndarray) -> None:
    assert measured_room(*heard_power(dry)) is None


@pytest.mark.parametrize("snr_db", [25.0, 15.0])
def test_noise_is_not_read_as_a_room(dry: np.ndarray, snr_db: float) -> None:
    """A level falling into steady noise stops there, as a room's tail would not let it fall:
    without the noise taken out of the bands first, 15 dB of hiss read as a full room."""
    room = measured_room(*heard_power(with_noise(dry, snr_db)))
    assert room is None or room.strength < 0.5


@pytest.mark.parametrize(("rt60", "low", "high"), [(0.6, 0.45, 0.85), (1.0, 0.7, 1.3)])
def test_a_room_is_found_with_its_decay(dry: np.ndarray, rt60: float, low: float, high: float):
    room = measured_room(*heard_power(in_room(dry, rt60)))
    assert room is not None and room.strength == 1.0
    assert low < room.rt60 < high


def test_a_room_under_noise_is_still_found(dry: np.ndarray) -> None:
    room = measured_room(*heard_power(with_noise(in_room(dry, 0.6), 20.0)))
    assert room is not None and room.strength > 0.8


def test_suppression_takes_a_tail_out_and_leaves_an_onset() -> None:
    """A burst of sound, then its tail falling 1 dB per hop: the tail goes, the burst stays."""
    power = np.full((60, 4), 1e-9)
    power[10:20] = 1.0
    power[20:] = 0.5 * 10.0 ** (-np.arange(40)[:, None] / 10.0)
    out = suppressed(power, Room(db_per_hop=1.0, strength=1.0))
    assert np.allclose(out[10:14], power[10:14])  # the onset: nothing came 40 ms before it
    assert np.all(out[26:50] <= 0.05 * power[26:50] + 1e-12)  # the tail: down to what is kept
    assert np.all(out >= 0)


def test_chunks_suppress_as_the_whole_does(dry: np.ndarray) -> None:
    power, _ = heard_power(in_room(dry, 0.6))
    room = Room(db_per_hop=0.8, strength=1.0)
    whole = suppressed(power, room)
    first = suppressed(power[:700], room)
    second = suppressed(power[700:], room, before=power[700 - CARRIED_HOPS : 700])
    assert np.allclose(np.concatenate([first, second]), whole, rtol=1e-5, atol=1e-12)


def test_a_short_last_chunk_keeps_the_room_before_it(dry: np.ndarray) -> None:
    power, freqs = heard_power(in_room(dry, 0.6))
    chunks = ChunkedSuppression()
    chunks(power[:-30], power[:-30], freqs)
    room = chunks.room
    assert room is not None
    chunks(power[-30:], power[-30:], freqs)  # 0.3 s: too short to read a room
    assert chunks.room == room
    dry_power, _ = heard_power(dry)
    chunks(dry_power[:300], dry_power[:300], freqs)  # 3 s, dry: the room is gone
    assert chunks.room is None


def test_the_mouth_in_a_room_moves_as_it_does_dry(dry: np.ndarray) -> None:
    """In a room (RT60 0.6 s), before the tail was taken out, the plan followed the dry
    take's at r 0.82, held the mouth open in pauses and lost a third of its closures."""
    person = PersonModel(neutral=np.array([0.01, 0.9, 0.6], np.float32), span=TYPICAL_RANGE)
    count = int(dry.size / RATE * FPS)
    reference = plan_mouth(AudioClip(dry, RATE), FPS, count, person)[:, 0]
    roomy = plan_mouth(AudioClip(in_room(dry, 0.6), RATE), FPS, count, person)[:, 0]
    assert np.corrcoef(reference, roomy)[0, 1] > 0.9
    closed = reference < person.neutral[0] + 0.1 * person.span[0]
    assert np.mean(roomy[closed] < person.neutral[0] + 0.2 * person.span[0]) > 0.85
    pauses = extract(AudioClip(dry, RATE), FPS, count).speech < 0.2
    assert roomy[pauses].mean() < person.neutral[0] + 0.01 * person.span[0] + 0.002
