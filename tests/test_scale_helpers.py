"""A small multi-process deployment for the scale tests and bench/scale.py (no tests here).

One `openlipsync serve --no-worker` and N `openlipsync worker` processes, exactly as separate
machines would run them: they share only the PostgreSQL database, the broker and the file
storage, all named uniquely so parallel runs on a shared server never meet.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from openlipsync.settings import Settings
from openlipsync.store.db import dispose_all
from tests.http_media import serve_directory
from tests.test_jobs_helpers import (
    alive,
    descendants,
    free_port,
    job_settings,
    new_organization,
    open_db,
    openlipsync_command,
    process,
    settings_env,
    wait_until,
)

PG = ("127.0.0.1", 5432)
REDIS = ("127.0.0.1", 6379)
RABBIT = ("127.0.0.1", 5672)
PG_ADMIN = "host=127.0.0.1 user=postgres dbname=postgres"
MEDIA = Path(__file__).resolve().parents[2] / "shared" / "media"
GRID_CLIPS = ("grid_bbaf2n", "grid_lbax4n", "grid_pwij3p", "grid_sbwe5n", "grid_swiz3n")
TERMINAL = ("COMPLETED", "FAILED", "REJECTED")


def port_open(address: tuple[str, int]) -> bool:
    try:
        with socket.create_connection(address, timeout=0.5):
            return True
    except OSError:
        return False


@contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh, uniquely named PostgreSQL database; dropped (connections and all) afterwards."""
    import psycopg

    name = f"olps_scale_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@{PG[0]}:{PG[1]}/{name}"
    finally:
        dispose_all()
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def redis_broker() -> Iterator[tuple[str, str]]:
    """(broker url, key prefix) on db 13; every key with the prefix is deleted afterwards."""
    import redis

    prefix = f"olps-scale-{uuid.uuid4().hex[:8]}:"
    try:
        yield f"redis://{REDIS[0]}:{REDIS[1]}/13", prefix
    finally:
        client = redis.Redis(host=REDIS[0], port=REDIS[1], db=13)
        keys = list(client.scan_iter(match=f"{prefix}*"))
        if keys:
            client.delete(*keys)


def rabbitmq_vhost_error() -> str | None:
    """Why a private RabbitMQ vhost cannot be made here, or None when it can."""
    if not port_open(RABBIT):
        return "no RabbitMQ at 127.0.0.1:5672"
    try:
        subprocess.run(["rabbitmqctl", "list_vhosts"], capture_output=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"rabbitmqctl unusable (needed for a private vhost): {exc}"
    return None


@contextmanager
def rabbitmq_broker() -> Iterator[str]:
    """An amqp:// URL on a private vhost (the queue names are fixed), deleted afterwards."""
    vhost = f"olps-scale-{uuid.uuid4().hex[:8]}"

    def ctl(*args: str) -> None:
        subprocess.run(["rabbitmqctl", *args], capture_output=True, timeout=60, check=True)

    ctl("add_vhost", vhost)
    try:
        ctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        yield f"amqp://guest:guest@{RABBIT[0]}:{RABBIT[1]}/{vhost}"
    finally:
        ctl("delete_vhost", vhost)


@dataclass
class Worker:
    proc: subprocess.Popen
    log: Path
    stack: ExitStack

    def pids(self) -> set[int]:
        return {self.proc.pid, *descendants(self.proc.pid)}

    def ready(self) -> bool:
        """Both Celery workers (engine and service) said `ready.`."""
        assert self.proc.poll() is None, self.log.read_text()[-3000:]
        return self.log.read_text(errors="replace").count(" ready.") >= 2

    def kill_all(self) -> None:
        """kill -9 of every process of this worker at once: the machine is gone."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        wait_until(lambda: not any(alive(pid) for pid in self.pids()), 15)


@dataclass
class Deployment:
    settings: Settings
    base_url: str
    api_key: str
    organization_id: str
    webhook_secret: str
    root: Path
    workers: list[Worker] = field(default_factory=list)
    pin_cores: bool = False  # each worker on one core of its own: a one-core machine each
    _stack: ExitStack = field(default_factory=ExitStack)

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, headers={"x-api-key": self.api_key}, timeout=60)

    def start_worker(self) -> Worker:
        stack = ExitStack()
        log = self.root / f"worker-{len(self.workers)}.log"
        command = openlipsync_command("worker")
        if self.pin_cores:
            cores = sorted(os.sched_getaffinity(0))
            command = ["taskset", "-c", str(cores[len(self.workers) % len(cores)]), *command]
        proc = stack.enter_context(
            process(command, settings_env(self.settings), log, kill_group=True)
        )
        worker = Worker(proc, log, stack)
        self.workers.append(worker)
        self._stack.callback(stack.close)
        return worker

    def wait_ready(self, timeout: float = 180) -> None:
        for worker in self.workers:
            if worker.proc.poll() is None:
                wait_until(worker.ready, timeout, interval=0.5)

    def worker_of(self, pid: int) -> Worker:
        """The worker whose process tree holds `pid` (the pool process named in worker_id)."""
        for worker in self.workers:
            if pid in worker.pids():
                return worker
        raise AssertionError(f"pid {pid} belongs to no worker")

    def generation(self, generation_id: str) -> dict[str, Any]:
        with self.client() as client:
            response = client.get(f"/v2/generate/{generation_id}")
            response.raise_for_status()
            return response.json()

    def wait_terminal(self, ids: list[str], timeout: float) -> dict[str, dict[str, Any]]:
        done: dict[str, dict[str, Any]] = {}

        def finished() -> bool:
            for generation_id in ids:
                if generation_id not in done:
                    body = self.generation(generation_id)
                    if body["status"] in TERMINAL:
                        done[generation_id] = body
            return len(done) == len(ids)

        wait_until(finished, timeout, interval=1.0)
        return done


@contextmanager
def deployment(
    root: Path, workers: int, pin_cores: bool = False, **overrides: Any
) -> Iterator[Deployment]:
    """API + `workers` worker processes on the given database/broker settings."""
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    values: dict[str, Any] = {
        "public_base_url": base_url,
        "storage_url": str(root / "files"),  # one storage for all "machines"
        "job_stale_seconds": 4.0,
        "reaper_interval_seconds": 1.0,
        "job_heartbeat_seconds": 0.5,
        "rate_limit_generate_per_minute": 1000,
        "concurrency_limit": 1000,  # the per-organisation cap would throttle the benchmark
        "fetch_timeout_seconds": 30.0,  # inputs come from a server in the busy test process
    }
    values.update(overrides)
    settings = job_settings(root / "data", **values)
    sessions = open_db(settings)  # migrate once before the processes race for it
    api_key, organization_id, webhook_secret = new_organization(sessions)
    dispose_all()
    with ExitStack() as stack:
        log = root / "api.log"
        command = openlipsync_command("serve", "--no-worker", "--port", str(port))
        api = stack.enter_context(process(command, settings_env(settings), log))

        def api_up() -> bool:
            assert api.poll() is None, log.read_text()[-3000:]
            try:
                return httpx.get(f"{base_url}/health/live", timeout=2).is_success
            except httpx.HTTPError:
                return False

        cluster = Deployment(settings, base_url, api_key, organization_id, webhook_secret, root)
        cluster.pin_cores = pin_cores
        stack.enter_context(cluster._stack)
        for _ in range(workers):
            cluster.start_worker()
        wait_until(api_up, 120, interval=0.5)
        cluster.wait_ready()
        yield cluster


def media_server(directory: Path = MEDIA) -> AbstractContextManager[str]:
    """../shared/media (or `directory`) over real HTTP on loopback (workers fetch inputs)."""
    return serve_directory(directory)


def submit(
    cluster: Deployment,
    media_url: str,
    index: int,
    *,
    audio: str = "speech/arctic_a0009.wav",
    sync_mode: str = "cut_off",
    webhook_url: str | None = None,
) -> str:
    """One small generation through the official SDK: a 3 s GRID clip and a 3 s voice."""
    from sync import Sync
    from sync.common import Audio, GenerationOptions, Video

    client = Sync(base_url=cluster.base_url, api_key=cluster.api_key, timeout=60)
    clip = f"video/{GRID_CLIPS[index % len(GRID_CLIPS)]}.mpg"
    created = client.generations.create(
        model="lipsync-1.9.0-beta",
        input=[Video(url=f"{media_url}/{clip}"), Audio(url=f"{media_url}/{audio}")],
        options=GenerationOptions(sync_mode=sync_mode),
        **({"webhook_url": webhook_url} if webhook_url else {}),
    )
    assert created.status == "PENDING", created
    return created.id


def timed(seconds: float) -> float:
    return round(time.monotonic() - seconds, 2)
