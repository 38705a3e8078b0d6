"""Forced alignment with pocketsphinx against hand-labelled phone boundaries and real readings."""

from __future__ import annotations

import difflib
import re
import wave
from pathlib import Path

import av
import numpy as np
import pytest

from bench.alignment import ARCTIC_A0009, boundary_errors, read_lab
from openlipsync.engine import alignment
from openlipsync.engine.alignment import AlignmentError, align_transcript, transcript_words
from openlipsync.tts.arpabet import PHONES, SILENCE
from openlipsync.tts.base import PhonemeTiming
from tests.conftest import media_path


def _check_contiguous(phones: list[PhonemeTiming], duration: float) -> None:
    assert phones[0].start == 0.0
    assert phones[-1].end == pytest.approx(duration, abs=0.011)
    for a, b in zip(phones, phones[1:], strict=False):
        assert a.end == b.start and a.start < a.end
    assert all(p.phoneme in PHONES for p in phones)


def test_arctic_phone_sequence_matches_the_reconstructed_sentence() -> None:
    """The lab file's phones spell "he turned sharply and faced gregson across the table"."""
    reference = read_lab(media_path("speech/arctic_a0009_phone.lab"))
    aligned = align_transcript(media_path("speech/arctic_a0009.wav"), ARCTIC_A0009)
    assert [p.phoneme for p in aligned] == [p.phoneme for p in reference]


def test_arctic_boundary_accuracy() -> None:
    reference = read_lab(media_path("speech/arctic_a0009_phone.lab"))
    aligned = align_transcript(media_path("speech/arctic_a0009.wav"), ARCTIC_A0009)
    errors = boundary_errors(reference, aligned)
    assert errors.size == len(reference) - 1
    assert float(np.mean(errors)) < 0.030  # measured 13 ms; a broken aligner is > 100 ms
    assert float(np.mean(errors <= 0.020)) > 0.6
    _check_contiguous(aligned, 49520 / 16000)  # the wav's length; the labels stop at 3.075 s


def _librivox() -> dict[str, str]:
    text = media_path("speech/librivox_transcription.txt").read_text()
    found = re.findall(r"<s> (.*?) </s> \(\S+-(\d{4})\)", text)
    return {clip: sentence for sentence, clip in found}


@pytest.mark.parametrize("clip", ["0870", "0890", "0920"])
def test_librivox_readings_align(clip: str) -> None:
    path = media_path(f"speech/librivox_austen_{clip}.wav")
    sentence = _librivox()[clip]
    phones = align_transcript(path, sentence)
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        duration = float(stream.duration * stream.time_base)
    _check_contiguous(phones, duration)
    speech = [p for p in phones if p.phoneme != SILENCE]
    assert speech[0].start < 0.5 and speech[-1].end > duration - 0.5  # covers the reading
    assert len(speech) >= 3 * len(sentence.split())  # every word got its phones
    assert sum(p.end - p.start for p in speech) > 0.8 * (speech[-1].end - speech[0].start)


def test_words_missing_from_cmudict_get_espeak_pronunciations(tmp_path: Path) -> None:
    from openlipsync.tts.piper import PiperProvider

    script = "Zorblax met Gregson in 1984."
    speech = PiperProvider().synthesize(script, "joe", tmp_path)
    phones = align_transcript(speech.audio_path, script)
    labels = [p.phoneme for p in phones if p.phoneme != SILENCE]
    assert labels[:4] == ["z", "ao", "r", "b"]
    assert "n" in labels and "ay" in labels  # "nineteen eighty four" spelled out by espeak
    errors = boundary_errors(speech.phonemes, phones)
    assert float(np.mean(errors)) < 0.05


def test_transcript_normalisation() -> None:
    assert transcript_words("<s> Don\u2019t STOP, Mr. Smith! </s> (clip-0001)") == [
        "don't",
        "stop",
        "mr",
        "smith",
    ]
    assert transcript_words("¿¡...!?") == []
    assert transcript_words("Café NAÏVE ﬁne") == ["cafe", "naive", "fine"]
    assert transcript_words(None) == []  # type: ignore[arg-type]


@pytest.mark.parametrize("transcript", ["", "   ", "... !!!", "😀"])
def test_no_words(transcript: str) -> None:
    with pytest.raises(AlignmentError) as caught:
        align_transcript(media_path("speech/arctic_a0009.wav"), transcript)
    assert caught.value.code == "alignment_no_words"


def test_far_too_many_words_for_the_audio() -> None:
    with pytest.raises(AlignmentError) as caught:
        align_transcript(media_path("speech/arctic_a0009.wav"), "word " * 200)
    assert caught.value.code == "alignment_mismatch"


def test_unreadable_audio(tmp_path: Path) -> None:
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunk" * 10)
    for path in (junk, tmp_path / "missing.wav", media_path("photo/obama.jpg")):
        with pytest.raises(AlignmentError) as caught:
            align_transcript(path, "hello")
        assert caught.value.code == "alignment_bad_audio"


def test_video_container_audio_is_aligned() -> None:
    """GRID clips are MPEG-1 video with MP2 audio at 25 fps: "bin blue at f two now"."""
    phones = align_transcript(media_path("video/grid_bbaf2n.mpg"), "bin blue at f two now")
    labels = [p.phoneme for p in phones if p.phoneme != SILENCE]
    assert labels == ["b", "ih", "n", "b", "l", "uw", "ae", "t", "eh", "f", "t", "uw", "n", "aw"]
    assert phones[-1].end == pytest.approx(3.0, abs=0.05)


def test_long_audio_is_aligned_in_pieces_cut_at_pauses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two readings back to back, aligned whole and in pieces: same phones, same boundaries."""
    sentences = _librivox()
    pcm = b""
    for clip in ("0870", "0890"):
        with wave.open(str(media_path(f"speech/librivox_austen_{clip}.wav"))) as wav:
            pcm += wav.readframes(wav.getnframes())
    path = tmp_path / "two.wav"
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes(pcm)
    text = f"{sentences['0870']} {sentences['0890']}"
    whole = align_transcript(path, text)
    monkeypatch.setattr(alignment, "CHUNK_SECONDS", 3)
    pieces = align_transcript(path, text)
    _check_contiguous(pieces, len(pcm) / 2 / 16000)
    same = difflib.SequenceMatcher(
        a=[p.phoneme for p in whole], b=[p.phoneme for p in pieces], autojunk=False
    ).ratio()
    assert same > 0.95  # only alternative pronunciations ("and": ae/ah) may differ
    assert float(np.mean(boundary_errors(whole, pieces))) < 0.02


def test_too_long_audio_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(alignment, "MAX_SECONDS", 2.0)
    with pytest.raises(AlignmentError) as caught:
        align_transcript(media_path("speech/arctic_a0009.wav"), ARCTIC_A0009)
    assert caught.value.code == "alignment_too_long"
