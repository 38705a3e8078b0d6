"""Where each phone of a known English transcript falls in a recording (forced alignment).

Used when speech comes with its text but without timings (ElevenLabs audio, a user's audio plus
a script): phone-exact mouth targets beat anything inferred from the waveform alone. Runs
pocketsphinx 5 offline with the US English acoustic model and CMUdict it ships; words missing
from CMUdict (names, numbers) get a pronunciation from espeak-ng (bundled with piper-tts).
Two passes, as pocketsphinx requires: a word-level alignment, then a phone/state alignment
constrained by it. Output phones are ARPAbet as everywhere in openlipsync.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from pathlib import Path

import numpy as np

from openlipsync.tts.arpabet import SILENCE, ipa_to_phones, normalize_phone
from openlipsync.tts.base import PhonemeTiming, Speech

SAMPLE_RATE = 16_000  # the acoustic model's rate
MAX_SECONDS = 600.0
"""Alignment costs ~0.07 s of CPU per second of audio; beyond 10 minutes a worker should not
spend that on timings (callers fall back to audio-driven motion)."""
CHUNK_SECONDS = 30
FRAME_RATE = 100  # pocketsphinx's default frame rate ("frate"), which the decoder is built with
_SAMPLES_PER_FRAME = SAMPLE_RATE // FRAME_RATE
MAX_WORDS_PER_SECOND = 8.0  # fast speech is ~5; far more means the text is not this audio
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)*")
_ESPEAK_LOCK = threading.Lock()
_ESPEAK = None  # one phonemizer per process, used under piper's espeak lock


class AlignmentError(Exception):
    """The transcript could not be aligned to the audio; ``code`` for logs and diagnostics."""

    def __init__(self, message: str, code: str = "alignment_failed") -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def align_transcript(audio_path: Path, transcript: str) -> list[PhonemeTiming]:
    """Contiguous ARPAbet phone timings covering the whole audio, ``sil`` between phrases.

    Raises AlignmentError when the audio is unreadable, empty or too long, the transcript has
    no words, or the recording does not fit the text.
    """
    pcm = _read_pcm(Path(audio_path))
    duration = pcm.size / SAMPLE_RATE
    words = transcript_words(transcript)
    if not words:
        raise AlignmentError("the transcript has no words to align", "alignment_no_words")
    if len(words) > MAX_WORDS_PER_SECOND * duration + 5:
        raise AlignmentError(
            f"{len(words)} words cannot be spoken in {duration:.1f} s", "alignment_mismatch"
        )
    decoder = _decoder()
    _add_missing_words(decoder, words)
    word_segments = _word_pass(decoder, pcm, words)
    chunks = _chunks(word_segments, pcm.size // _SAMPLES_PER_FRAME)
    phones: list[tuple[str, float, float]] = []
    if len(chunks) == 1:  # the word pass just ran on exactly this audio and text
        phones = _phone_pass(decoder, pcm, 0)
    else:
        for first, last, chunk_words in chunks:
            piece = pcm[first * _SAMPLES_PER_FRAME : last * _SAMPLES_PER_FRAME]
            _word_pass(decoder, piece, chunk_words)
            phones += _phone_pass(decoder, piece, first)
    return _contiguous(phones, duration)


def _word_pass(decoder, pcm: np.ndarray, words: list[str]) -> list[tuple[str, int, int]]:
    """Word-level alignment: (word, first frame, last frame), pauses as ``<sil>``."""
    try:
        decoder.set_align_text(" ".join(words))
    except RuntimeError as exc:
        raise AlignmentError(f"pocketsphinx rejected the transcript: {exc}") from exc
    _decode(decoder, pcm.tobytes())
    if decoder.hyp() is None:
        raise AlignmentError("the audio does not match the transcript", "alignment_mismatch")
    return [(seg.word, seg.start_frame, seg.end_frame) for seg in decoder.seg()]


def _phone_pass(decoder, pcm: np.ndarray, offset: int) -> list[tuple[str, float, float]]:
    """Phone alignment constrained by the preceding word pass over the same audio."""
    decoder.set_alignment()
    _decode(decoder, pcm.tobytes())
    alignment = decoder.get_alignment()
    if alignment is None:
        raise AlignmentError("pocketsphinx produced no phone alignment")
    return [
        (e.name, (offset + e.start) / FRAME_RATE, (offset + e.start + e.duration) / FRAME_RATE)
        for e in alignment.phones()
    ]


def _chunks(
    segments: list[tuple[str, int, int]], total_frames: int
) -> list[tuple[int, int, list[str]]]:
    """Cut long audio in the middle of pauses into pieces of at least `CHUNK_SECONDS`, so the
    phone pass, which keeps every frame's state back-pointers, holds one piece at a time."""
    chunks: list[tuple[int, int, list[str]]] = []
    first, words = 0, []
    limit = CHUNK_SECONDS * FRAME_RATE
    for word, start, end in segments:
        if _is_word(word):
            words.append(word.split("(")[0])
        elif word == "<sil>" and words and start - first >= limit:
            cut = (start + end + 1) // 2
            chunks.append((first, cut, words))
            first, words = cut, []
    if words or not chunks:
        chunks.append((first, total_frames, words))
    else:  # trailing pause only: give it to the last piece
        chunks[-1] = (chunks[-1][0], total_frames, chunks[-1][2])
    return chunks


def _is_word(token: str) -> bool:
    return not token.startswith(("<", "[", "+", "(")) and token != "sil"


def fill_phonemes(speech: Speech, script: str) -> Speech:
    """`speech` with phonemes from forced alignment when the provider gave none (ElevenLabs);
    unchanged if alignment fails, since audio-driven motion is still a fine fallback."""
    if speech.phonemes is not None:
        return speech
    try:
        phonemes = align_transcript(speech.audio_path, script)
    except AlignmentError:
        return speech
    return Speech(speech.audio_path, speech.sample_rate, speech.duration, phonemes)


def transcript_words(transcript: str) -> list[str]:
    """Lowercase words as CMUdict spells them; punctuation and markup dropped."""
    if not isinstance(transcript, str):
        return []
    text = unicodedata.normalize("NFKD", transcript.lower())  # café -> cafe + accent
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    text = text.replace("\u2019", "'").replace("\u2018", "'")
    text = re.sub(r"</?s>|\([^)]*\)", " ", text)  # sphinx transcription markup
    return _WORD.findall(text)


def _read_pcm(path: Path) -> np.ndarray:
    """Mono int16 at 16 kHz: the sound the lips hear, read as media/audio.py reads it (the
    played track, a surround mix's dialogue, damaged packets and dropped sound as silence,
    so that the phones fall where the output plays them)."""
    from openlipsync.engine.errors import EngineError, InputTooLong
    from openlipsync.media.audio import load_audio

    try:
        clip = load_audio(path, SAMPLE_RATE, max_seconds=MAX_SECONDS)
    except InputTooLong as exc:
        raise AlignmentError(
            f"audio longer than {MAX_SECONDS:.0f} s", "alignment_too_long"
        ) from exc
    except (EngineError, OSError, ValueError) as exc:
        raise AlignmentError(
            f"cannot read audio {path.name}: {exc}", "alignment_bad_audio"
        ) from exc
    if clip.samples.size < SAMPLE_RATE // 10:
        raise AlignmentError("audio is shorter than 0.1 s", "alignment_bad_audio")
    return np.round(clip.samples * 32767).astype(np.int16)


def _decoder():
    from pocketsphinx import Decoder

    # bestpath=False: the pocketsphinx tests require it for phone alignment (a known bug).
    return Decoder(lm=None, bestpath=False, loglevel="FATAL", frate=FRAME_RATE)


def _decode(decoder, raw: bytes) -> None:
    decoder.start_utt()
    decoder.process_raw(raw, no_search=False, full_utt=True)
    decoder.end_utt()


def _add_missing_words(decoder, words: list[str]) -> None:
    """Pronounce out-of-dictionary words with espeak-ng; unpronounceable ones are an error."""
    for word in sorted(set(words)):
        if decoder.lookup_word(word) is not None:
            continue
        phones = _espeak_phones(word)
        if not phones:
            raise AlignmentError(f"no pronunciation for {word!r}", "alignment_oov")
        decoder.add_word(word, " ".join(p.upper() for p in phones), True)


def _espeak_phones(word: str) -> list[str]:
    global _ESPEAK
    try:
        from piper import voice as piper_voice
        from piper.phonemize_espeak import EspeakPhonemizer
    except ImportError:
        return []
    # espeak-ng keeps its state in the process: share piper's own lock so a synthesis running
    # in another thread never interleaves with this lookup.
    lock = getattr(piper_voice, "_ESPEAK_PHONEMIZER_LOCK", _ESPEAK_LOCK)
    with lock:
        _ESPEAK = _ESPEAK or EspeakPhonemizer()
        sentences = _ESPEAK.phonemize("en-us", word)
    return ipa_to_phones("".join("".join(s) for s in sentences))


def _contiguous(raw: list[tuple[str, float, float]], duration: float) -> list[PhonemeTiming]:
    """Normalise labels, merge silence runs and stretch the ends to 0 and the audio duration."""
    out: list[PhonemeTiming] = []
    for name, _start, end in raw:
        label = normalize_phone(name)
        begin = out[-1].end if out else 0.0
        end = min(max(end, begin), duration)
        if out and label == SILENCE and out[-1].phoneme == SILENCE:
            out[-1].end = end
        else:
            out.append(PhonemeTiming(label, begin, end))
    if out and out[-1].end < duration:
        if out[-1].phoneme == SILENCE:
            out[-1].end = duration
        else:
            out.append(PhonemeTiming(SILENCE, out[-1].end, duration))
    return [p for p in out if p.end > p.start]
