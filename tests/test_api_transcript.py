"""The `transcript` extension on audio inputs: kept when valid, a 400 when not."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from openlipsync.api.app import create_app
from openlipsync.api.enqueue import NoEnqueue
from openlipsync.settings import Settings
from openlipsync.store.keys import create_key


@pytest.fixture
def client(tmp_path: Path) -> TestClient:
    app = create_app(Settings(data_dir=tmp_path), enqueue=NoEnqueue())
    with app.state.sessions() as session:
        key, _ = create_key(session, name="transcripts")
    return TestClient(app, headers={"x-api-key": key})


def body(transcript: object) -> dict:
    return {
        "model": "lipsync-2",
        "input": [
            {"type": "video", "url": "https://media.example.com/face.mp4"},
            {
                "type": "audio",
                "url": "https://media.example.com/voice.wav",
                "transcript": transcript,
            },
        ],
    }


def test_a_transcript_is_kept_on_the_audio_input(client: TestClient) -> None:
    created = client.post("/v2/generate", json=body("Hello there, general Kenobi."))
    assert created.status_code == 201, created.text
    assert created.json()["input"][1]["transcript"] == "Hello there, general Kenobi."


def test_a_null_transcript_is_absent(client: TestClient) -> None:
    created = client.post("/v2/generate", json=body(None))
    assert created.status_code == 201
    assert "transcript" not in created.json()["input"][1]


@pytest.mark.parametrize("bad", ["", "   ", 42, ["words"], "x" * 10_001])
def test_a_bad_transcript_is_a_400_with_the_field_named(client: TestClient, bad: object) -> None:
    answer = client.post("/v2/generate", json=body(bad))
    assert answer.status_code == 400
    problem = answer.json()
    assert problem["statusCode"] == 400
    assert any("transcript" in m for m in problem["message"])
