"""ElevenLabs text-to-speech, the provider the sync.so wire format names (spec §2.2, §9).

One request per script: ``POST {base}/v1/text-to-speech/{voice_id}`` with the account key in
``xi-api-key`` and ``{"text", "model_id", "voice_settings": {"stability", "similarity_boost"}}``;
the answer is MP3. Every failure becomes a TtsError whose code tells the caller what to do:
fix the key (``tts_unauthorized``), the voice (``voice_not_found``), the request
(``tts_invalid_request``), wait (``tts_rate_limited``, ``tts_quota_exceeded``) or retry later
(``elevenlabs_service_unavailable`` 503, ``elevenlabs_timeout`` 504). ElevenLabs returns no
phone timings; `openlipsync.engine.alignment.fill_phonemes` can add them from the script.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import httpx

from openlipsync.tts.base import Speech, TtsError, check_unit, clean_script

PROVIDER_NAME = "elevenlabs"
DEFAULT_MODEL_ID = "eleven_multilingual_v2"
OUTPUT_FORMAT = "mp3_44100_128"
DEFAULT_STABILITY = 0.5  # ElevenLabs' own defaults, sent explicitly so requests are reproducible
DEFAULT_SIMILARITY_BOOST = 0.75
MAX_AUDIO_BYTES = 100 * 1024 * 1024  # ~100 min of 128 kbit/s MP3: far above any valid answer
_VOICE_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
"""ElevenLabs ids are 20 alphanumerics; anything with '/', '.', '?' would re-route the request."""


class ElevenLabsProvider:
    """`TtsProvider` over the ElevenLabs REST API; needs ``OPENLIPSYNC_ELEVENLABS_API_KEY``."""

    name = PROVIDER_NAME

    def __init__(
        self,
        api_key: str,
        base_url: str = "https://api.elevenlabs.io",
        model_id: str = DEFAULT_MODEL_ID,
        timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.api_key = api_key
        self.base_url = base_url.rstrip("/")
        self.model_id = model_id
        self.timeout = timeout
        self._transport = transport

    def voices(self) -> list[dict]:
        """Voices are the account's, listed by ElevenLabs itself; openlipsync does not proxy
        them, so this is empty (any voice id is passed through)."""
        return []

    def synthesize(
        self,
        script: str,
        voice_id: str,
        out_dir: Path,
        stability: float | None = None,
        similarity_boost: float | None = None,
    ) -> Speech:
        """Write the MP3 to ``out_dir/speech-*.mp3`` after checking it decodes as audio."""
        if not self.api_key:
            raise TtsError(
                "ElevenLabs is not configured: set OPENLIPSYNC_ELEVENLABS_API_KEY",
                "tts_provider_not_configured",
                422,
            )
        text = clean_script(script)
        if not isinstance(voice_id, str) or not _VOICE_ID.match(voice_id):
            raise TtsError(f"invalid ElevenLabs voice id {voice_id!r}", "voice_not_found", 404)
        body = {
            "text": text,
            "model_id": self.model_id,
            "voice_settings": {
                "stability": _or(check_unit("stability", stability), DEFAULT_STABILITY),
                "similarity_boost": _or(
                    check_unit("similarityBoost", similarity_boost), DEFAULT_SIMILARITY_BOOST
                ),
            },
        }
        audio = self._post(voice_id, body)
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / f"speech-{uuid.uuid4().hex[:12]}.mp3"
        path.write_bytes(audio)
        sample_rate, duration = _probe(path)
        return Speech(path, sample_rate, duration, None)

    def _post(self, voice_id: str, body: dict) -> bytes:
        url = f"{self.base_url}/v1/text-to-speech/{voice_id}"
        headers = {"xi-api-key": self.api_key, "accept": "audio/mpeg"}
        try:
            with (
                httpx.Client(timeout=self.timeout, transport=self._transport) as client,
                client.stream(
                    "POST",
                    url,
                    params={"output_format": OUTPUT_FORMAT},
                    json=body,
                    headers=headers,
                ) as response,
            ):
                if response.status_code != 200:
                    response.read()
                    raise _status_error(response, voice_id)
                return _read_capped(response)
        except httpx.TimeoutException as exc:
            raise TtsError(
                f"ElevenLabs did not answer within {self.timeout:.0f} s",
                "elevenlabs_timeout",
                504,
            ) from exc
        except httpx.HTTPError as exc:
            raise TtsError(
                f"ElevenLabs is unreachable: {exc}", "elevenlabs_service_unavailable", 503
            ) from exc


def _or(value: float | None, default: float) -> float:
    return default if value is None else value


def _read_capped(response: httpx.Response) -> bytes:
    content_type = response.headers.get("content-type", "")
    if not content_type.startswith(("audio/", "application/octet-stream")):
        raise TtsError(
            f"ElevenLabs answered {content_type or 'no content type'} instead of audio",
            "elevenlabs_service_unavailable",
            503,
        )
    chunks, size = [], 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > MAX_AUDIO_BYTES:
            raise TtsError("ElevenLabs audio is implausibly large", "tts_failed", 502)
        chunks.append(chunk)
    return b"".join(chunks)


def _status_error(response: httpx.Response, voice_id: str) -> TtsError:
    """ElevenLabs errors carry {"detail": {"status": ..., "message": ...}} (or a string)."""
    status, detail = response.status_code, _detail(response)
    kind = detail.get("status", "")
    message = detail.get("message") or response.reason_phrase or f"HTTP {status}"
    if status in (401, 403):
        if kind in ("quota_exceeded", "payment_required"):
            return TtsError(f"ElevenLabs quota exceeded: {message}", "tts_quota_exceeded", 402)
        return TtsError(f"ElevenLabs rejected the API key: {message}", "tts_unauthorized", 502)
    if status == 404:
        return TtsError(
            f"ElevenLabs voice {voice_id!r} not found: {message}", "voice_not_found", 404
        )
    if status in (400, 422):
        return TtsError(f"ElevenLabs rejected the request: {message}", "tts_invalid_request", 422)
    if status == 429:
        return TtsError(f"ElevenLabs rate limit: {message}", "tts_rate_limited", 429)
    return TtsError(
        f"ElevenLabs failed with HTTP {status}: {message}", "elevenlabs_service_unavailable", 503
    )


def _detail(response: httpx.Response) -> dict:
    try:
        payload = response.json()
    except ValueError:
        return {}
    detail = payload.get("detail") if isinstance(payload, dict) else None
    if isinstance(detail, dict):
        return {k: str(v) for k, v in detail.items() if isinstance(v, str | int | float)}
    if isinstance(detail, str):
        return {"message": detail}
    if isinstance(detail, list) and detail and isinstance(detail[0], dict):
        return {"message": str(detail[0].get("msg", ""))}  # FastAPI-style validation errors
    return {}


def _probe(path: Path) -> tuple[int, float]:
    """Sample rate and exact duration by decoding the whole file (MP3 headers can lie)."""
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise TtsError("ElevenLabs returned a file without audio", "tts_failed", 502)
            stream = container.streams.audio[0]
            samples = sum(frame.samples for frame in container.decode(stream))
            rate = int(stream.codec_context.sample_rate or stream.rate or 0)
    except TtsError:
        raise
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise TtsError(f"ElevenLabs returned undecodable audio: {exc}", "tts_failed", 502) from exc
    if samples == 0 or rate <= 0:
        raise TtsError("ElevenLabs returned empty audio", "tts_failed", 502)
    return rate, samples / rate
