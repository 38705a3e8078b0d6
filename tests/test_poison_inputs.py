"""Real poison inputs: files that crashed or exhausted the engine process for real.

A 64-channel WAV made PyAV segfault (every attempt killed the worker's engine process until
the attempt budget ran out), and a 40 KB WAV declaring 1 Hz sound of 5.5 hours made the engine
allocate gigabytes before checking the length. Both are now handled where the native work
happens; these tests run the risky decode in a child process so a regression fails the test
instead of killing pytest, then send the files through a real API and real workers.
"""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from openlipsync.store.models import Generation
from tests.media_helpers import damaged
from tests.poison_media import corrupt_mp4, many_channels_wav, one_hertz_wav
from tests.test_jobs_helpers import REPO, open_db
from tests.test_scale_helpers import Deployment, deployment
from tests.tiny_media import SOURCE_VIDEO, file_server, make_tiny_inputs

pytestmark = pytest.mark.skipif(
    not SOURCE_VIDEO.exists(), reason=f"shared media not found: {SOURCE_VIDEO}"
)

CHILD_MEMORY_LIMIT = 3 << 30  # address space: a regression fails with MemoryError, not OOM


def _in_child(code: str) -> subprocess.CompletedProcess[str]:
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (CHILD_MEMORY_LIMIT, CHILD_MEMORY_LIMIT))

    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        preexec_fn=limit,
    )


@pytest.mark.parametrize("channels", [8, 64])
def test_audio_with_many_channels_decodes_instead_of_crashing(
    channels: int, tmp_path: Path
) -> None:
    path = many_channels_wav(tmp_path, channels)
    result = _in_child(
        "from openlipsync.media.audio import load_audio\n"
        f"clip = load_audio({str(path)!r})\n"
        "print(len(clip.samples), float(abs(clip.samples).max()))"
    )
    assert result.returncode == 0, f"exit {result.returncode} (-11: segfault) {result.stderr}"
    count, peak = result.stdout.split()
    assert int(count) == 16000
    assert 0.1 < float(peak) < 0.5, "the channels are averaged, not lost"


def test_a_tiny_wav_claiming_hours_is_refused_before_it_is_decoded(tmp_path: Path) -> None:
    path = one_hertz_wav(tmp_path)
    assert path.stat().st_size < 50_000
    result = _in_child(
        "from openlipsync.engine.errors import InputTooLong\n"
        "from openlipsync.media.audio import load_audio\n"
        "try:\n"
        f"    load_audio({str(path)!r}, 48000)\n"
        "except InputTooLong as exc:\n"
        "    print(exc.code)\n"
        "import re\n"  # VmHWM, not ru_maxrss: that one keeps the forking parent's peak
        "status = open('/proc/self/status').read()\n"
        "print(int(re.search(r'VmHWM:\\s+(\\d+)', status).group(1)) // 1024)"
    )
    assert result.returncode == 0, result.stderr[-2000:]
    code, peak_mb = result.stdout.split()
    assert code == "generation_audio_length_exceeded"
    assert int(peak_mb) < 400, f"{peak_mb} MB peak: the sound was decoded before the check"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Deployment:
    """API + 2 workers on the embedded SQLite database and broker (the default setup)."""
    with deployment(tmp_path_factory.mktemp("poison"), 2) as running:
        yield running


def _create(cluster: Deployment, media: str, video: str, audio: str) -> str:
    body = {
        "model": "lipsync-1.9.0-beta",
        "input": [
            {"type": "video", "url": f"{media}/{video}"},
            {"type": "audio", "url": f"{media}/{audio}"},
        ],
        "options": {"sync_mode": "cut_off"},
    }
    with cluster.client() as client:
        response = client.post("/v2/generate", json=body)
    assert response.status_code == 201, response.text
    return response.json()["id"]


@pytest.mark.slow
def test_poison_inputs_end_with_a_precise_code_while_the_pool_keeps_serving(
    cluster: Deployment, tmp_path: Path
) -> None:
    folder = tmp_path / "media"
    make_tiny_inputs(folder)
    many_channels_wav(folder)
    one_hertz_wav(folder)
    corrupt_mp4(folder / "tiny.mp4", folder)
    damaged(folder / "tiny.mp4", folder / "noise.mp4", "video", every=True)
    cases = {
        "ch64.wav": ("tiny.mp4", "ch64.wav", "COMPLETED", None),
        "one_hertz.wav": (
            "tiny.mp4",
            "one_hertz.wav",
            "FAILED",
            "generation_audio_length_exceeded",
        ),
        # a few broken bytes are read past, as players do; a picture of noise is not one
        "corrupt.mp4": ("corrupt.mp4", "tiny.wav", "COMPLETED", None),
        "noise.mp4": ("noise.mp4", "tiny.wav", "FAILED", "generation_media_unreadable"),
        "normal 1": ("tiny.mp4", "tiny.wav", "COMPLETED", None),
        "normal 2": ("tiny.mp4", "tiny.wav", "COMPLETED", None),
    }
    with file_server(folder) as media:
        ids = {name: _create(cluster, media, v, a) for name, (v, a, _s, _c) in cases.items()}
        done = cluster.wait_terminal(list(ids.values()), 240)
    for name, (_v, _a, status, code) in cases.items():
        body = done[ids[name]]
        assert (body["status"], body.get("error_code")) == (status, code), (name, body)
    with open_db(cluster.settings)() as session:
        attempts = {name: session.get(Generation, gid).attempts for name, gid in ids.items()}
    assert attempts == dict.fromkeys(cases, 1), "no engine process died and was retried"
    for worker in cluster.workers:
        assert worker.proc.poll() is None, worker.log.read_text()[-3000:]
    with httpx.Client(timeout=10) as client:  # the outputs are real, downloadable files
        assert client.get(done[ids["ch64.wav"]]["outputUrl"]).content[4:8] == b"ftyp"
