"""What every text-to-speech provider promises, and the checks every request goes through.

A provider turns a script into an audio file plus, when it can, per-phoneme timings. Timings are
always in ARPAbet (lowercase CMUdict phones without stress digits, ``sil`` for pauses; see
`openlipsync.tts.arpabet`) so the viseme stage never has to know which engine spoke.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

MAX_SCRIPT_CHARS = 10_000
"""ElevenLabs' own per-request limit for its multilingual models; also bounds local synthesis
time (~10 minutes of speech)."""

# Control characters (except tab/newline) and piper's raw-phoneme brackets, which would let a
# script bypass the phonemizer.
_UNSAFE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]|\[\[|\]\]")


@dataclass
class PhonemeTiming:
    """One phone of the speech: ``phoneme`` is ARPAbet (e.g. "aa", "p", "sil"), times in s."""

    phoneme: str
    start: float
    end: float


@dataclass
class Speech:
    """A synthesised track: where it is, how long it lasts, and its phones when known."""

    audio_path: Path
    sample_rate: int
    duration: float
    phonemes: list[PhonemeTiming] | None


class TtsError(Exception):
    """A TTS failure with a stable machine code and the HTTP status the API should answer.

    Codes: ``tts_provider_not_configured`` (no API key), ``tts_provider_unknown``,
    ``voice_not_found``, ``tts_invalid_request`` (bad script/settings), ``tts_unauthorized``
    (key rejected), ``tts_quota_exceeded``, ``tts_rate_limited``,
    ``elevenlabs_service_unavailable`` (spec §9: outage, 503), ``elevenlabs_timeout`` (504),
    ``tts_failed`` (the engine produced nothing usable).
    """

    code = "tts_failed"
    http_status = 500

    def __init__(self, message: str, code: str | None = None, http_status: int | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if http_status is not None:
            self.http_status = http_status


@runtime_checkable
class TtsProvider(Protocol):
    name: str

    def voices(self) -> list[dict]:
        """Each voice as {"id", "name", "language", "provider"}."""
        ...

    def synthesize(
        self,
        script: str,
        voice_id: str,
        out_dir: Path,
        stability: float | None = None,
        similarity_boost: float | None = None,
    ) -> Speech: ...


def clean_script(script: object) -> str:
    """The script as it will be spoken, or TtsError(tts_invalid_request) when unusable."""
    if not isinstance(script, str):
        raise TtsError("script must be a string", "tts_invalid_request", 400)
    text = _UNSAFE.sub(" ", script).strip()
    if not text:
        raise TtsError("script is empty", "tts_invalid_request", 400)
    if len(text) > MAX_SCRIPT_CHARS:
        raise TtsError(
            f"script has {len(text)} characters; the limit is {MAX_SCRIPT_CHARS}",
            "tts_invalid_request",
            400,
        )
    return text


def check_unit(name: str, value: float | None) -> float | None:
    """stability / similarityBoost must be numbers in [0, 1] (spec §9) when given."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise TtsError(f"{name} must be a number between 0 and 1", "tts_invalid_request", 400)
    if not 0.0 <= value <= 1.0:
        raise TtsError(f"{name} must be between 0 and 1, got {value}", "tts_invalid_request", 400)
    return float(value)
