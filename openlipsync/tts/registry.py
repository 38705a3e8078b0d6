"""Which provider speaks a `type: "text"` input.

The wire format always names ``"elevenlabs"`` (the SDK sends nothing else), so the voice id
decides: an id or short name of a local Piper voice (``en_US-joe-medium``, ``joe``) is spoken
locally, offline and free; any other id goes to ElevenLabs, which needs an API key. Provider
names: ``"elevenlabs"`` and ``"piper"`` (alias ``"local"``).
"""

from __future__ import annotations

from openlipsync.settings import Settings
from openlipsync.tts.base import TtsError, TtsProvider
from openlipsync.tts.elevenlabs import ElevenLabsProvider
from openlipsync.tts.piper import PiperProvider

LOCAL_NAMES = ("piper", "local")


def get_provider(name: str, settings: Settings) -> TtsProvider:
    """The provider called `name`; TtsError(tts_provider_unknown) for any other name."""
    key = name.strip().lower() if isinstance(name, str) else ""
    if key == ElevenLabsProvider.name:
        return ElevenLabsProvider(settings.elevenlabs_api_key, settings.elevenlabs_base_url)
    if key in LOCAL_NAMES:
        return PiperProvider(settings.data_dir / "voices")
    raise TtsError(
        f"unknown TTS provider {name!r}; use 'elevenlabs' or 'piper'", "tts_provider_unknown", 400
    )


def provider_for_voice(voice_id: str, settings: Settings, requested: str = "elevenlabs"):
    """Route by voice: local Piper voices stay local whatever provider name the request used."""
    local = PiperProvider(settings.data_dir / "voices")
    if local.find_voice(voice_id) is not None:
        return local
    return get_provider(requested, settings)


def list_voices(settings: Settings) -> list[dict]:
    """Every voice this server can speak without being told the id: the local Piper voices
    (ElevenLabs voices belong to the account and are not listed)."""
    return [*PiperProvider(settings.data_dir / "voices").voices()]
