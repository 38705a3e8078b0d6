"""ElevenLabs provider against a real local HTTP server that behaves like api.elevenlabs.io.

The server checks the request exactly as ElevenLabs documents it (path, xi-api-key, JSON body)
and answers with real MP3 speech encoded by PyAV, or with ElevenLabs-shaped errors. Nothing
here reaches the network.
"""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import av
import numpy as np
import pytest

from openlipsync.engine.alignment import fill_phonemes
from openlipsync.settings import Settings
from openlipsync.tts import get_provider, list_voices, provider_for_voice
from openlipsync.tts.base import TtsError
from openlipsync.tts.elevenlabs import ElevenLabsProvider
from openlipsync.tts.piper import PiperProvider
from tests.conftest import media_path

API_KEY = "sk_test_0123456789"
VOICE = "21m00Tcm4TlvDq8ikWAM"
ARCTIC_TEXT = "He turned sharply, and faced Gregson across the table."


def _mp3_of(wav: Path) -> bytes:
    """Real speech as 44.1 kHz MP3, like ElevenLabs' mp3_44100_128."""
    out = io.BytesIO()
    with av.open(str(wav)) as source, av.open(out, "w", format="mp3") as sink:
        stream = sink.add_stream("mp3", rate=44100)
        stream.layout = "mono"
        stream.bit_rate = 128_000
        resampler = av.AudioResampler(format="s16p", layout="mono", rate=44100)
        for frame in source.decode(audio=0):
            for piece in resampler.resample(frame):
                for packet in stream.encode(piece):
                    sink.mux(packet)
        for piece in resampler.resample(None):
            for packet in stream.encode(piece):
                sink.mux(packet)
        for packet in stream.encode(None):
            sink.mux(packet)
    return out.getvalue()


class FakeElevenLabs(BaseHTTPRequestHandler):
    mp3 = b""
    requests: list[dict] = []
    ERRORS = {
        "missingvoice": (
            404,
            {
                "detail": {
                    "status": "voice_not_found",
                    "message": "A voice with that id was not found.",
                }
            },
        ),
        "ratelimited": (
            429,
            {
                "detail": {
                    "status": "too_many_concurrent_requests",
                    "message": "Too many concurrent requests.",
                }
            },
        ),
        "broken": (500, {"detail": "Internal Server Error"}),
        "overloaded": (503, {"detail": {"status": "system_busy", "message": "Busy."}}),
        "quota": (
            401,
            {"detail": {"status": "quota_exceeded", "message": "This request exceeds your quota."}},
        ),
    }

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, payload: dict) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json")

    def do_POST(self) -> None:  # noqa: N802 (http.server naming)
        url = urlparse(self.path)
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        record = {
            "path": url.path,
            "query": parse_qs(url.query),
            "key": self.headers.get("xi-api-key"),
            "raw": body,
        }
        type(self).requests.append(record)
        prefix = "/v1/text-to-speech/"
        if not url.path.startswith(prefix) or "/" in url.path[len(prefix) :]:
            return self._json(404, {"detail": "Not Found"})
        if self.headers.get("xi-api-key") != API_KEY:
            return self._json(
                401, {"detail": {"status": "invalid_api_key", "message": "Invalid API key"}}
            )
        try:
            payload = json.loads(body)
            record["json"] = payload
            settings = payload["voice_settings"]
            assert isinstance(payload["text"], str) and payload["text"]
            assert isinstance(payload["model_id"], str)
            assert 0 <= settings["stability"] <= 1 and 0 <= settings["similarity_boost"] <= 1
        except (ValueError, KeyError, TypeError, AssertionError):
            return self._json(422, {"detail": [{"loc": ["body"], "msg": "invalid body"}]})
        voice = url.path[len(prefix) :]
        if voice in self.ERRORS:
            status, error = self.ERRORS[voice]
            return self._json(status, error)
        if voice == "slowvoice":
            time.sleep(2.0)
        if voice == "htmlvoice":
            return self._send(200, b"<html>maintenance</html>", "text/html")
        if voice == "noisevoice":
            noise = np.random.default_rng(0).integers(0, 256, 4000, np.uint8).tobytes()
            return self._send(200, noise, "audio/mpeg")
        return self._send(200, self.mp3, "audio/mpeg")


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    FakeElevenLabs.mp3 = _mp3_of(media_path("speech/arctic_a0009.wav"))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), FakeElevenLabs)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


@pytest.fixture
def provider(server: str) -> ElevenLabsProvider:
    FakeElevenLabs.requests = []
    return ElevenLabsProvider(API_KEY, server + "/", timeout=1.0)


def test_synthesis_sends_the_documented_request(provider: ElevenLabsProvider, tmp_path: Path):
    speech = provider.synthesize(ARCTIC_TEXT, VOICE, tmp_path, stability=0.3, similarity_boost=0.9)
    (request,) = FakeElevenLabs.requests
    assert request["path"] == f"/v1/text-to-speech/{VOICE}"
    assert request["key"] == API_KEY
    assert request["query"] == {"output_format": ["mp3_44100_128"]}
    assert request["json"] == {
        "text": ARCTIC_TEXT,
        "model_id": "eleven_multilingual_v2",
        "voice_settings": {"stability": 0.3, "similarity_boost": 0.9},
    }
    assert speech.audio_path.parent == tmp_path and speech.audio_path.suffix == ".mp3"
    assert speech.audio_path.read_bytes() == FakeElevenLabs.mp3
    assert speech.sample_rate == 44100
    assert speech.duration == pytest.approx(3.095, abs=0.08)  # arctic_a0009 is 3.095 s
    assert speech.phonemes is None


def test_defaults_are_sent_when_settings_are_omitted(provider, tmp_path: Path) -> None:
    provider.synthesize("Hi there.", VOICE, tmp_path)
    settings = FakeElevenLabs.requests[0]["json"]["voice_settings"]
    assert settings == {"stability": 0.5, "similarity_boost": 0.75}


def test_phonemes_can_be_filled_by_forced_alignment(provider, tmp_path: Path) -> None:
    speech = fill_phonemes(provider.synthesize(ARCTIC_TEXT, VOICE, tmp_path), ARCTIC_TEXT)
    labels = [p.phoneme for p in speech.phonemes or []]
    assert labels[:4] == ["sil", "hh", "iy", "t"]
    assert speech.phonemes[-1].end == pytest.approx(speech.duration, abs=0.03)


@pytest.mark.parametrize(
    ("voice", "code", "status"),
    [
        ("missingvoice", "voice_not_found", 404),
        ("ratelimited", "tts_rate_limited", 429),
        ("broken", "elevenlabs_service_unavailable", 503),
        ("overloaded", "elevenlabs_service_unavailable", 503),
        ("quota", "tts_quota_exceeded", 402),
        ("slowvoice", "elevenlabs_timeout", 504),
        ("htmlvoice", "elevenlabs_service_unavailable", 503),
        ("noisevoice", "tts_failed", 502),
    ],
)
def test_provider_failures_map_to_precise_codes(
    provider: ElevenLabsProvider, tmp_path: Path, voice: str, code: str, status: int
) -> None:
    with pytest.raises(TtsError) as caught:
        provider.synthesize("Hello.", voice, tmp_path)
    assert (caught.value.code, caught.value.http_status) == (code, status)
    assert len(FakeElevenLabs.requests) == 1


def test_wrong_key_is_unauthorized_and_not_echoed(server: str, tmp_path: Path) -> None:
    provider = ElevenLabsProvider("sk_wrong_secret", server)
    with pytest.raises(TtsError) as caught:
        provider.synthesize("Hello.", VOICE, tmp_path)
    assert caught.value.code == "tts_unauthorized"
    assert "sk_wrong_secret" not in str(caught.value)


def test_invalid_body_from_the_api_is_a_request_error(server: str, tmp_path: Path) -> None:
    provider = ElevenLabsProvider(API_KEY, server, model_id="")
    provider.model_id = None  # type: ignore[assignment]  # the server answers 422
    with pytest.raises(TtsError) as caught:
        provider.synthesize("Hello.", VOICE, tmp_path)
    assert caught.value.code == "tts_invalid_request"
    assert "invalid body" in caught.value.message


def test_missing_key_fails_before_any_request(server: str, tmp_path: Path) -> None:
    FakeElevenLabs.requests = []
    with pytest.raises(TtsError) as caught:
        ElevenLabsProvider("", server).synthesize("Hello.", VOICE, tmp_path)
    assert caught.value.code == "tts_provider_not_configured"
    assert FakeElevenLabs.requests == []


def test_unreachable_service(tmp_path: Path) -> None:
    provider = ElevenLabsProvider(API_KEY, "http://127.0.0.1:9", timeout=2.0)
    with pytest.raises(TtsError) as caught:
        provider.synthesize("Hello.", VOICE, tmp_path)
    assert caught.value.code == "elevenlabs_service_unavailable"


@pytest.mark.parametrize("voice", ["../../v1/user", "a/b", "v?x=1", "", "x" * 200, None, 42])
def test_hostile_voice_ids_never_reach_the_api(provider, tmp_path: Path, voice) -> None:
    with pytest.raises(TtsError) as caught:
        provider.synthesize("Hello.", voice, tmp_path)
    assert caught.value.code == "voice_not_found"
    assert FakeElevenLabs.requests == []


@pytest.mark.parametrize(
    "kwargs",
    [
        {"script": ""},
        {"script": "a" * 10_001},
        {"stability": 2},
        {"similarity_boost": float("inf")},
        {"stability": True},
    ],
)
def test_invalid_requests_never_reach_the_api(provider, tmp_path: Path, kwargs) -> None:
    args = {"script": "Hello.", "voice_id": VOICE, "out_dir": tmp_path, **kwargs}
    with pytest.raises(TtsError) as caught:
        provider.synthesize(**args)
    assert caught.value.code == "tts_invalid_request"
    assert FakeElevenLabs.requests == []


def test_registry_routes_by_voice(server: str, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, elevenlabs_api_key=API_KEY, elevenlabs_base_url=server)
    assert isinstance(provider_for_voice("joe", settings), PiperProvider)
    assert isinstance(provider_for_voice("en_US-joe-medium", settings), PiperProvider)
    remote = provider_for_voice(VOICE, settings)
    assert isinstance(remote, ElevenLabsProvider) and remote.base_url == server
    assert isinstance(get_provider("local", settings), PiperProvider)
    assert isinstance(get_provider("ElevenLabs", settings), ElevenLabsProvider)
    with pytest.raises(TtsError) as caught:
        get_provider("polly", settings)
    assert caught.value.code == "tts_provider_unknown"
    assert any(v["id"] == "en_US-joe-medium" for v in list_voices(settings))
