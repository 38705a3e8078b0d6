"""`openlipsync serve --no-worker` and `openlipsync worker` as separate processes sharing one
data directory: they cooperate, and both stop cleanly (no stray children) on Ctrl-C / SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from openlipsync.jobs.runner import first_start_banner
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


def test_banner_has_runnable_examples() -> None:
    text = first_start_banner("sk-ols-abc", "http://127.0.0.1:8000")
    assert "x-api-key: sk-ols-abc" in text
    assert "-F video=@../shared/media/video/grid_bbaf2n.mpg" in text
    assert 'Sync(base_url="http://127.0.0.1:8000", api_key="sk-ols-abc")' in text
    compile(text.split("SDK (pip install syncsdk==0.3.0):")[1].replace("\n    ", "\n"), "x", "exec")


@pytest.mark.slow
def test_separate_api_and_worker_cooperate_and_stop_cleanly(tmp_path: Path) -> None:
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    settings = job_settings(tmp_path / "data", public_base_url=base_url)
    env = settings_env(settings)
    api_cmd = openlipsync_command("serve", "--no-worker", "--port", str(port))
    with (
        process(api_cmd, env, tmp_path / "api.log", new_session=True) as api,
        process(
            openlipsync_command("worker"), env, tmp_path / "worker.log", new_session=True
        ) as worker,
    ):

        def ready() -> bool:
            assert api.poll() is None, (tmp_path / "api.log").read_text()
            try:
                return httpx.get(f"{base_url}/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready, 90, interval=0.5)
        log = (tmp_path / "api.log").read_text()
        key = next(line.strip() for line in log.splitlines() if line.strip().startswith("sk-"))
        body = {
            "model": "lipsync-2",
            "input": [
                {"type": "video", "url": "http://127.0.0.1:9/nothing-listens-here.mp4"},
                {"type": "audio", "url": "http://127.0.0.1:9/nothing.wav"},
            ],
            "options": {"sync_mode": "cut_off"},
        }
        headers = {"x-api-key": key}
        created = httpx.post(f"{base_url}/v2/generate", json=body, headers=headers, timeout=30)
        assert created.status_code in (200, 201), created.text
        url = f"{base_url}/v2/generate/{created.json()['id']}"

        def failed() -> dict | None:
            generation = httpx.get(url, headers=headers, timeout=10).json()
            return generation if generation["status"] == "FAILED" else None

        generation = wait_until(failed, 90, interval=0.5)
        assert generation["error_code"] == "generation_input_video_inaccessible"

        worker_children = descendants(worker.pid)
        assert len(worker_children) >= 2  # the engine and service Celery workers (+ pools)
        began = time.monotonic()
        os.killpg(worker.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        assert worker.wait(timeout=40) == 0
        worker_seconds = time.monotonic() - began
        print(f"the worker stopped in {worker_seconds:.1f} s")
        # 6.3 s when each Celery worker waited out kombu's 2 s poll first (jobs/sql_broker.py)
        assert worker_seconds < 5.0
        os.kill(api.pid, signal.SIGTERM)
        assert api.wait(timeout=40) == 0
        stop_seconds = time.monotonic() - began
        wait_until(lambda: not any(alive(pid) for pid in worker_children), 10)
    print(f"clean stop of worker + api took {stop_seconds:.1f} s")


@pytest.mark.slow
def test_workers_do_not_outlive_a_killed_parent(tmp_path: Path) -> None:
    """(On the way, the engine worker and its pool run `engine_niceness` nicer than the
    service worker, which stays at the parent's priority.)"""
    settings = job_settings(tmp_path / "data", engine_niceness=7)
    log = tmp_path / "worker.log"
    with process(openlipsync_command("worker"), settings_env(settings), log) as worker:
        wait_until(lambda: log.read_text().count(" ready.") == 2, 90)
        children = descendants(worker.pid)
        assert len(children) >= 3  # two Celery workers and the engine pool process
        _assert_engine_runs_nicer(log.read_text(), worker.pid, 7)
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)
        wait_until(lambda: not any(alive(pid) for pid in children), 40)


def _assert_engine_runs_nicer(log: str, parent: int, niceness: int) -> None:
    pids = {name: int(pid) for name, pid in re.findall(r"(engine|service)@\S+-(\d+) ready\.", log)}
    base = os.getpriority(os.PRIO_PROCESS, parent)
    engine = [pids["engine"], *descendants(pids["engine"])]  # with its pool process
    assert len(engine) >= 2
    priorities = [os.getpriority(os.PRIO_PROCESS, pid) for pid in engine]
    assert priorities == [base + niceness] * len(engine)
    assert os.getpriority(os.PRIO_PROCESS, pids["service"]) == base


_FIRST_USE = """
import sys, time
from openlipsync.jobs.celery_app import configure
from openlipsync.settings import get_settings
time.sleep(max(0.0, float(sys.argv[1]) - time.time()))  # all start at the same instant
app = configure(get_settings())
with app.connection_for_write() as connection:  # what a starting worker does
    for queue in app.conf.task_queues:
        queue(connection.default_channel).declare()
"""


def test_workers_starting_together_on_the_embedded_broker_all_start(tmp_path: Path) -> None:
    """kombu's SQL transport creates its queue rows with an unlocked check-then-insert: without
    care, one of several workers starting at once died on a UNIQUE constraint."""
    settings = job_settings(tmp_path / "data")
    env = {**os.environ, **settings_env(settings)}
    start_at = f"{time.time() + 4.0:.3f}"
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _FIRST_USE, start_at],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(12)
    ]
    outputs = [child.communicate(timeout=120)[0] for child in children]
    assert [child.returncode for child in children] == [0] * 12, "\n".join(outputs)[-3000:]
    with sqlite3.connect(settings.data_dir / "broker.db") as database:
        names = sorted(row[0] for row in database.execute("SELECT name FROM kombu_queue"))
    assert names == ["assets", "default", "engine"]
