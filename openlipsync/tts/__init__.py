"""Text to speech providers for `type: "text"` inputs.

``provider_for_voice(voice_id, settings).synthesize(script, voice_id, out_dir, ...)`` gives a
`Speech` (audio file, duration, ARPAbet phone timings when the provider knows them).
"""

from openlipsync.tts.base import PhonemeTiming, Speech, TtsError, TtsProvider
from openlipsync.tts.registry import get_provider, list_voices, provider_for_voice

__all__ = [
    "PhonemeTiming",
    "Speech",
    "TtsError",
    "TtsProvider",
    "get_provider",
    "list_voices",
    "provider_for_voice",
]
