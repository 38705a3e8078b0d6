"""Segments as a user sends them: `openlipsync serve` (API + embedded worker) over HTTP, two
drivers fetched from a real local web server, and both output URLs downloaded."""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Iterator
from pathlib import Path

import av
import httpx
import pytest

from tests.conftest import media_path
from tests.http_media import serve_directory
from tests.test_jobs_helpers import (
    free_port,
    job_settings,
    openlipsync_command,
    process,
    settings_env,
    wait_until,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def media_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("www")
    for name, source in {
        "grid.mpg": "video/grid_bbaf2n.mpg",
        "other.mpg": "video/grid_swiz3n.mpg",
        "speech.wav": "speech/arctic_a0009.wav",
    }.items():
        (root / name).write_bytes(media_path(source).read_bytes())
    with serve_directory(root) as url:
        yield url


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    root = tmp_path_factory.mktemp("serve")
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    settings = job_settings(root / "data", allow_private_urls=True, public_base_url=base_url)
    log = root / "serve.log"
    command = openlipsync_command("serve", "--port", str(port))
    with process(command, settings_env(settings), log, new_session=True) as proc:

        def ready() -> bool:
            assert proc.poll() is None, log.read_text()
            try:
                return httpx.get(f"{base_url}/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready, 90, interval=0.5)
        key = wait_until(lambda: re.search(r"^\s+(sk-ols-\S+)$", log.read_text(), re.M), 10)
        with httpx.Client(
            base_url=base_url, headers={"x-api-key": key.group(1)}, timeout=30
        ) as client:
            yield client
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=60) == 0, log.read_text()[-3000:]


def _mp4(data: bytes, path: Path) -> tuple[float, int, bool]:
    """(duration, video frames, has audio) of a downloaded MP4."""
    path.write_bytes(data)
    with av.open(str(path)) as container:
        has_audio = bool(container.streams.audio)
        frames = sum(1 for _ in container.decode(video=0))
        return container.duration / 1e6, frames, has_audio


def test_segments_complete_with_a_downloadable_segment_output(
    api: httpx.Client, media_server: str, tmp_path: Path
) -> None:
    segments = [
        {
            "startTime": 0.5,
            "endTime": 1.5,
            "audioInput": {"refId": "other", "startTime": 1.0, "endTime": 2.0},
        },
        {"startTime": 2.0, "endTime": 2.6, "audioInput": {"refId": "arctic"}},
    ]
    body = {
        "model": "lipsync-2",
        "input": [
            {"type": "video", "url": f"{media_server}/grid.mpg"},
            {"type": "audio", "url": f"{media_server}/other.mpg", "refId": "other"},
            {"type": "audio", "url": f"{media_server}/speech.wav", "refId": "arctic"},
        ],
        "segments": segments,
    }
    created = api.post("/v2/generate", json=body)
    assert created.status_code in (200, 201), created.text
    generation_id = created.json()["id"]

    def done() -> dict | None:
        got = api.get(f"/v2/generate/{generation_id}").json()
        return got if got["status"] in ("COMPLETED", "FAILED", "REJECTED") else None

    generation = wait_until(done, 300, interval=1.0)
    assert generation["status"] == "COMPLETED", (generation["error_code"], generation["error"])
    assert generation["segments"] == segments
    assert generation["outputDuration"] == pytest.approx(3.0, abs=0.05)  # the video's length
    assert generation["segmentOutputUrl"] and generation["outputUrl"]
    # Signed URLs: downloadable without the API key.
    whole = httpx.get(generation["outputUrl"], timeout=30)
    parts = httpx.get(generation["segmentOutputUrl"], timeout=30)
    assert whole.status_code == parts.status_code == 200
    seconds, frames, has_audio = _mp4(whole.content, tmp_path / "whole.mp4")
    assert frames == 75 and has_audio and seconds == pytest.approx(3.0, abs=0.05)
    seconds, frames, has_audio = _mp4(parts.content, tmp_path / "parts.mp4")
    assert frames == 25 + 15 and has_audio and seconds == pytest.approx(1.6, abs=0.05)
