"""The whole product as a user runs it: `openlipsync serve` (uvicorn + embedded worker) on a fresh
data directory, driven over HTTP, by the official Python SDK and by the official TypeScript SDK."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import httpx
import pytest

from tests.conftest import media_path
from tests.test_jobs_helpers import (
    alive,
    descendants,
    free_port,
    job_settings,
    openlipsync_command,
    process,
    settings_env,
    wait_until,
)

VIDEO = "video/grid_bbaf2n.mpg"
AUDIO = "speech/librivox_austen_0870.wav"
SHORT_AUDIO = "speech/arctic_a0009.wav"
ENGINE_TIMEOUT = 300.0


@dataclass
class Server:
    base_url: str
    api_key: str
    log: Path

    def client(self, key: bool = True) -> httpx.Client:
        headers = {"x-api-key": self.api_key} if key else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=30)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("serve")
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    # Production SSRF policy: private URLs are refused (one test relies on it).
    settings = job_settings(root / "data", allow_private_urls=False, public_base_url=base_url)
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
        match = wait_until(lambda: re.search(r"^\s+(sk-ols-\S+)$", log.read_text(), re.M), 10)
        children = descendants(proc.pid)
        yield Server(base_url, match.group(1), log)
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: API, workers and reaper all stop cleanly
        assert proc.wait(timeout=60) == 0, log.read_text()[-3000:]
        wait_until(lambda: not any(alive(pid) for pid in children), 10)


def _wait_terminal(server: Server, generation_id: str) -> dict:
    with server.client() as client:

        def done() -> dict | None:
            body = client.get(f"/v2/generate/{generation_id}").json()
            return body if body["status"] in ("COMPLETED", "FAILED", "REJECTED") else None

        return wait_until(done, ENGINE_TIMEOUT, interval=1.0)


def _assert_mp4(data: bytes, tmp_path: Path, seconds: float) -> None:
    path = tmp_path / "downloaded.mp4"
    path.write_bytes(data)
    with av.open(str(path)) as container:
        assert container.format.name.startswith("mov,mp4")
        video = container.streams.video[0]
        assert video.codec_context.name == "h264"
        assert container.streams.audio, "the output carries the new audio"
        assert container.duration / 1e6 == pytest.approx(seconds, abs=0.3)
        frames = sum(1 for _ in container.decode(video=0))
        assert frames >= 25 * (seconds - 0.3)


def test_first_start_prints_a_key_and_working_examples(server: Server) -> None:
    text = server.log.read_text()
    assert server.api_key in text
    assert "curl -s -X POST" in text and "../shared/media/video/grid_bbaf2n.mpg" in text
    assert "from sync import Sync" in text and "create_with_files" in text
    with server.client() as client:
        assert client.get("/v2/generations").status_code == 200
    with server.client(key=False) as anonymous:
        assert anonymous.get("/v2/generations").status_code == 401


def test_private_url_input_fails_with_inaccessible(server: Server) -> None:
    body = {
        "model": "lipsync-2",
        "input": [
            {"type": "video", "url": "http://169.254.169.254/latest/video.mp4"},
            {"type": "audio", "url": f"{server.base_url}/health"},  # ourselves: loopback
        ],
    }
    with server.client() as client:
        created = client.post("/v2/generate", json=body)
    assert created.status_code in (200, 201), created.text
    generation = _wait_terminal(server, created.json()["id"])
    assert generation["status"] == "FAILED"
    assert generation["error_code"] == "generation_input_video_inaccessible"
    assert "non-public" in generation["error"]


@pytest.mark.slow
def test_multipart_create_poll_and_download_without_the_key(server: Server, tmp_path: Path) -> None:
    began = time.monotonic()
    with (
        server.client() as client,
        media_path(VIDEO).open("rb") as video,
        media_path(AUDIO).open("rb") as audio,
    ):
        created = client.post(
            "/v2/generate",
            data={"model": "lipsync-2", "options": json.dumps({"sync_mode": "cut_off"})},
            files={"video": ("grid.mpg", video), "audio": ("speech.wav", audio)},
        )
    assert created.status_code in (200, 201), created.text
    assert created.json()["status"] == "PENDING"
    generation = _wait_terminal(server, created.json()["id"])
    assert generation["status"] == "COMPLETED", generation
    assert generation["outputDuration"] == pytest.approx(3.0, abs=0.15)
    assert generation["options"]["sync_mode"] == "cut_off"
    download = httpx.get(generation["outputUrl"], timeout=30, follow_redirects=True)
    assert download.status_code == 200
    _assert_mp4(download.content, tmp_path, generation["outputDuration"])
    print(f"multipart round trip: {time.monotonic() - began:.1f} s")
    # the uploaded video became an asset whose thumbnail the service worker made meanwhile
    with server.client() as client:
        asset = client.get(f"/v2/assets/{generation['input'][0]['assetId']}").json()
    assert asset["thumbnailUrl"], asset
    thumbnail = httpx.get(asset["thumbnailUrl"], timeout=30)
    assert thumbnail.status_code == 200 and thumbnail.content[:2] == b"\xff\xd8"  # a JPEG


@pytest.mark.slow
def test_python_sdk_round_trip(server: Server, tmp_path: Path) -> None:
    from sync import Sync

    client = Sync(base_url=server.base_url, api_key=server.api_key)
    # No `options`: syncsdk 0.3.0 puts them in the form as a dict, which httpx 0.28 refuses
    # client-side. A 3.1 s voice keeps the default `loop` run as short as cut_off.
    with media_path(VIDEO).open("rb") as video, media_path(SHORT_AUDIO).open("rb") as audio:
        job = client.generations.create_with_files(model="lipsync-2", video=video, audio=audio)
    assert job.status == "PENDING"
    deadline = time.monotonic() + ENGINE_TIMEOUT
    while job.status in ("PENDING", "PROCESSING") and time.monotonic() < deadline:
        time.sleep(1)
        job = client.generations.get(job.id)
    assert job.status == "COMPLETED", (job.error_code, job.error)
    assert job.output_duration == pytest.approx(3.1, abs=0.15)  # loop: the audio's length
    assert job.options is not None and job.options.sync_mode == "loop"
    assert job.id in [item.id for item in client.generations.list()]
    download = httpx.get(job.output_url, timeout=30, follow_redirects=True)
    _assert_mp4(download.content, tmp_path, job.output_duration)


TS_SCRIPT = """
const fs = require("fs");
const { SyncClient } = require("@sync.so/sdk");
(async () => {
  const client = new SyncClient({ baseUrl: process.env.BASE_URL, apiKey: process.env.API_KEY });
  let job = await client.generations.createWithFiles(
    fs.createReadStream(process.env.VIDEO), fs.createReadStream(process.env.AUDIO),
    { model: "lipsync-2", options: { sync_mode: "cut_off" } });
  const deadline = Date.now() + 300000;
  while ((job.status === "PENDING" || job.status === "PROCESSING") && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 1000));
    job = await client.generations.get(job.id);
  }
  const listed = (await client.generations.list()).map((g) => g.id);
  const response = await fetch(job.outputUrl);
  const bytes = Buffer.from(await response.arrayBuffer());
  fs.writeFileSync(process.env.OUT, bytes);
  console.log(JSON.stringify({ id: job.id, status: job.status, outputDuration: job.outputDuration,
    errorCode: job.error_code ?? job.errorCode ?? null, listed: listed.includes(job.id),
    httpStatus: response.status }));
})().catch((e) => { console.error(e); process.exit(1); });
"""


@pytest.fixture(scope="module")
def ts_sdk(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("npm") is None or shutil.which("node") is None:
        pytest.skip("node/npm not installed")
    root = tmp_path_factory.mktemp("ts-sdk")
    try:
        subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--silent", "@sync.so/sdk@0.3.0"],
            cwd=root,
            check=True,
            capture_output=True,
            timeout=240,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"npm install @sync.so/sdk@0.3.0 failed: {exc}")
    return root


@pytest.mark.slow
def test_typescript_sdk_round_trip(server: Server, ts_sdk: Path, tmp_path: Path) -> None:
    script = ts_sdk / "roundtrip.js"
    script.write_text(TS_SCRIPT)
    out = tmp_path / "ts.mp4"
    env = {
        "PATH": __import__("os").environ["PATH"],
        "BASE_URL": server.base_url,
        "API_KEY": server.api_key,
        "VIDEO": str(media_path(VIDEO)),
        "AUDIO": str(media_path(AUDIO)),
        "OUT": str(out),
    }
    result = subprocess.run(
        ["node", str(script)], cwd=ts_sdk, env=env, capture_output=True, text=True, timeout=400
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["status"] == "COMPLETED", report
    assert report["listed"] and report["httpStatus"] == 200
    _assert_mp4(out.read_bytes(), tmp_path, report["outputDuration"])
