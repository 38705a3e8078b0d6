"""Local Piper speech end to end: real model, real audio file, exact phone timings."""

from __future__ import annotations

import wave
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import av
import numpy as np
import pytest

from bench.alignment import boundary_errors
from openlipsync.engine.alignment import align_transcript
from openlipsync.tts.arpabet import PHONES
from openlipsync.tts.base import MAX_SCRIPT_CHARS, Speech, TtsError, TtsProvider
from openlipsync.tts.piper import PiperProvider

SCRIPT = "He turned sharply, and faced Gregson across the table. Maybe!"


@pytest.fixture(scope="module")
def provider() -> PiperProvider:
    return PiperProvider()


@pytest.fixture(scope="module")
def speech(provider: PiperProvider, tmp_path_factory: pytest.TempPathFactory) -> Speech:
    return provider.synthesize(SCRIPT, "joe", tmp_path_factory.mktemp("piper"))


def test_is_a_provider_and_lists_joe(provider: PiperProvider) -> None:
    assert isinstance(provider, TtsProvider)
    assert {
        "id": "en_US-joe-medium",
        "name": "joe",
        "language": "en_US",
        "provider": "piper",
    } in provider.voices()
    for spelling in ("joe", "JOE", "en_US-joe-medium", " en_us-joe-medium "):
        assert provider.find_voice(spelling) is not None
    assert provider.find_voice("21m00Tcm4TlvDq8ikWAM") is None


def test_audio_file_is_real_speech(speech: Speech) -> None:
    assert speech.audio_path.suffix == ".wav"
    with wave.open(str(speech.audio_path)) as wav:
        assert wav.getframerate() == speech.sample_rate == 22050
        assert wav.getnchannels() == 1
        frames = wav.getnframes()
        samples = np.frombuffer(wav.readframes(frames), "<i2")
    assert speech.duration == pytest.approx(frames / speech.sample_rate)
    assert 2.5 < speech.duration < 6.0
    assert np.abs(samples).max() > 10_000  # not silence
    with av.open(str(speech.audio_path)) as container:  # the engine reads it with PyAV
        assert container.streams.audio[0].rate == 22050


def test_phoneme_timings_are_monotonic_and_cover_the_audio(speech: Speech) -> None:
    phones = speech.phonemes
    assert phones is not None and len(phones) > 30
    assert phones[0].start == 0.0
    assert phones[-1].end == pytest.approx(speech.duration, abs=1e-6)
    for a, b in zip(phones, phones[1:], strict=False):
        assert a.end == pytest.approx(b.start) and a.start <= a.end
    assert all(p.phoneme in PHONES for p in phones)
    labels = [p.phoneme for p in phones]
    # "sharply" and "maybe" keep their bilabials; the comma and the full stop are pauses
    assert labels[7:13] == ["sh", "aa", "r", "p", "l", "iy"]
    assert labels.count("sil") >= 3
    assert "m" in labels and "ey" in labels


def test_timings_agree_with_an_independent_forced_alignment(speech: Speech) -> None:
    """The model's own durations must describe the audio: pocketsphinx, listening to the
    waveform only, puts the phone boundaries within a few tens of milliseconds of them."""
    aligned = align_transcript(speech.audio_path, SCRIPT)
    errors = boundary_errors(speech.phonemes, aligned)
    assert errors.size > 25
    assert float(np.mean(errors)) < 0.045


@pytest.mark.parametrize(
    ("script", "code"),
    [
        ("", "tts_invalid_request"),
        ("   \n\t", "tts_invalid_request"),
        ("\x00\x01\x02", "tts_invalid_request"),
        ("...!?", "tts_invalid_request"),
        ("x" * (MAX_SCRIPT_CHARS + 1), "tts_invalid_request"),
        (None, "tts_invalid_request"),
        (b"bytes", "tts_invalid_request"),
    ],
)
def test_unusable_scripts_get_clear_errors(
    provider: PiperProvider, tmp_path: Path, script: object, code: str
) -> None:
    with pytest.raises(TtsError) as caught:
        provider.synthesize(script, "joe", tmp_path)  # type: ignore[arg-type]
    assert caught.value.code == code
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"voice_id": "nobody"}, "voice_not_found"),
        ({"voice_id": "../../etc/passwd"}, "voice_not_found"),
        ({"stability": 1.5}, "tts_invalid_request"),
        ({"stability": float("nan")}, "tts_invalid_request"),
        ({"similarity_boost": -0.1}, "tts_invalid_request"),
        ({"stability": "high"}, "tts_invalid_request"),
        ({"voice_id": None}, "voice_not_found"),
    ],
)
def test_bad_voice_and_settings(provider: PiperProvider, tmp_path: Path, kwargs, code) -> None:
    args = {"voice_id": "joe", **kwargs}
    with pytest.raises(TtsError) as caught:
        provider.synthesize("Hello.", out_dir=tmp_path, **args)
    assert caught.value.code == code


def test_raw_phoneme_blocks_cannot_be_injected(provider: PiperProvider, tmp_path: Path) -> None:
    speech = provider.synthesize("[[ p p p p p p ]]", "joe", tmp_path, stability=1.0)
    labels = [p.phoneme for p in speech.phonemes or []]
    # spelled as letter names "pee", never the raw phoneme string /pppppp/
    assert "p" in labels
    assert all(labels[i + 1] == "iy" for i, label in enumerate(labels) if label == "p")


def test_corrupt_voice_file_is_an_error_not_a_crash(tmp_path: Path) -> None:
    voices = tmp_path / "voices"
    voices.mkdir()
    (voices / "en_GB-broken-low.onnx").write_bytes(b"\x08\x01garbage" * 100)
    (voices / "en_GB-broken-low.onnx.json").write_text('{"language": {"code": "en_GB"}}')
    (voices / "orphan.onnx").write_bytes(b"no config beside me")
    provider = PiperProvider(voices)
    ids = [v["id"] for v in provider.voices()]
    assert "en_GB-broken-low" in ids and "orphan" not in ids
    with pytest.raises(TtsError) as caught:
        provider.synthesize("Hello.", "broken", tmp_path / "out")
    assert caught.value.code == "tts_failed"


def test_concurrent_synthesis_and_alignment(provider: PiperProvider, tmp_path: Path) -> None:
    """Workers run threads: piper and the aligner share the process-wide espeak-ng library."""
    reference = provider.synthesize("Quixotic Zyrtec buzzes.", "joe", tmp_path / "ref")
    with ThreadPoolExecutor(3) as pool:
        jobs = [
            pool.submit(
                provider.synthesize, f"Sentence number {n}, spoken.", "joe", tmp_path / str(n)
            )
            for n in range(2)
        ]
        aligned = pool.submit(align_transcript, reference.audio_path, "Quixotic Zyrtec buzzes.")
        results = [job.result(timeout=60) for job in jobs]
        phones = aligned.result(timeout=60)
    assert all(r.phonemes and r.duration > 1.0 for r in results)
    assert results[0].audio_path != results[1].audio_path
    assert [p.phoneme for p in phones if p.phoneme != "sil"][:3] == ["k", "w", "ih"]
