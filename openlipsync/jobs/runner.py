"""`openlipsync serve` and `openlipsync worker`: the processes of a deployment.

A worker is two Celery worker processes: one for the `engine` queue (prefork, so a crashing
engine only takes down a pool child and the message is re-delivered) and one small threaded one
for webhooks and batch bookkeeping on `default` and thumbnails on `assets`, so notifications
never wait behind a long generation (nor behind a backlog of downloads: it takes from its two
queues in turn). The parent process runs the reaper thread and, for `serve`, the HTTP API. Every
process is built from the same Settings, so `serve --no-worker` and `worker` started with the
same OPENLIPSYNC_* environment cooperate through the database and the broker.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.process
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from openlipsync.settings import Settings

log = logging.getLogger("openlipsync.jobs")

STOP_GRACE_SECONDS = 20.0
SERVICE_THREADS = 4
MAX_RESTARTS = 5  # Celery workers replaced within the window before the worker gives up
RESTART_WINDOW_SECONDS = 300.0
MEDIA = Path("../shared/media")

Child = multiprocessing.process.BaseProcess


def worker(settings: Settings, concurrency: int = 1) -> int:
    """Run the job workers until SIGINT/SIGTERM; 0 on a clean stop."""
    _setup_logging()
    children = start_workers(settings, concurrency)
    reaper = ReaperThread(settings)
    reaper.start()
    stop = threading.Event()

    def _on_signal(signum: int, _frame: object) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    restarts: list[float] = []
    try:
        while not stop.is_set():
            if not replace_dead(children, settings, concurrency, restarts):
                if not stop.is_set():
                    log.error("a worker process stopped or keeps crashing; stopping")
                break
            stop.wait(1.0)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        reaper.stop()
        codes = stop_workers(children)
    return 0 if stop.is_set() and all(code in (0, None) for code in codes) else 1


def serve(
    settings: Settings, host: str | None = None, port: int | None = None, with_worker: bool = True
) -> int:
    """Run the API (and, unless with_worker is False, the workers and reaper) until stopped."""
    import uvicorn

    from openlipsync.api.app import create_app
    from openlipsync.jobs.celery_app import configure

    _setup_logging()
    host = host or settings.host
    port = port or settings.port
    configure(settings)
    app = create_app(settings)  # opens and migrates the database before anything else
    announce_first_key(settings, host, port)
    children: list[Child] = []
    reaper = ReaperThread(settings)
    supervisor = SupervisorThread(settings, children)
    if with_worker:
        children.extend(start_workers(settings, 1))
        reaper.start()
        supervisor.start()
    # uvicorn re-raises SIGINT/SIGTERM after its graceful shutdown, with the handler that was
    # installed before it started: a recording handler lets us stop the workers afterwards.
    received: list[int] = []
    previous = {
        sig: signal.signal(sig, lambda signum, _frame: received.append(signum))
        for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="info"))
        server.run()  # returns on SIGINT/SIGTERM after a graceful shutdown
    finally:
        supervisor.stop()  # first, so it does not replace the workers being stopped
        reaper.stop()
        stop_workers(children)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0 if server.started or received else 1


# ---- worker processes -----------------------------------------------------------------------


def _specs(concurrency: int) -> list[tuple[str, list[str], str, int]]:
    from openlipsync.jobs.celery_app import ASSETS_QUEUE, DEFAULT_QUEUE, ENGINE_QUEUE

    return [
        ("engine", [ENGINE_QUEUE], "prefork", max(1, concurrency)),
        ("service", [DEFAULT_QUEUE, ASSETS_QUEUE], "threads", SERVICE_THREADS),
    ]


def start_workers(settings: Settings, concurrency: int) -> list[Child]:
    """The engine worker and the service worker, each a fresh interpreter with `settings`."""
    return [_start_one(settings, spec) for spec in _specs(concurrency)]


def _start_one(settings: Settings, spec: tuple[str, list[str], str, int]) -> Child:
    name, queues, pool, size = spec
    child = multiprocessing.get_context("spawn").Process(
        target=run_celery_worker,
        args=(settings, name, queues, pool, size, os.getpid()),
        name=f"openlipsync-{name}-worker",
    )
    child.start()
    return child


def replace_dead(
    children: list[Child], settings: Settings, concurrency: int, restarts: list[float]
) -> bool:
    """Start a fresh Celery worker in place of one that crashed (kombu can die on a broker
    restart). False when supervision should end: a worker stopped cleanly (exit code 0, a
    shutdown was asked for, e.g. Ctrl-C to the process group) or more than MAX_RESTARTS
    happened within RESTART_WINDOW_SECONDS.

    Safe because messages are acknowledged late and the database is the truth: whatever the
    dead worker held is redelivered or resumed by the reaper.
    """
    now = time.monotonic()
    restarts[:] = [t for t in restarts if now - t < RESTART_WINDOW_SECONDS]
    for index, (child, spec) in enumerate(zip(children, _specs(concurrency), strict=True)):
        if child.is_alive():
            continue
        if child.exitcode == 0 or len(restarts) >= MAX_RESTARTS:
            return False
        log.error("the %s worker exited (code %s); starting a new one", spec[0], child.exitcode)
        restarts.append(now)
        children[index] = _start_one(settings, spec)
    return True


def run_celery_worker(
    settings: Settings,
    name: str,
    queues: Sequence[str],
    pool: str,
    concurrency: int,
    parent_pid: int | None = None,
) -> None:
    """Child process entry point: a Celery worker consuming `queues`."""
    from openlipsync.jobs.celery_app import configure

    _die_with_parent(parent_pid)
    if name == "engine" and settings.engine_niceness:
        os.nice(settings.engine_niceness)  # its pool processes inherit it
    _setup_logging()
    app = configure(settings)
    argv = [
        "worker",
        f"--hostname={name}@%h-{os.getpid()}",
        f"--queues={','.join(queues)}",
        f"--pool={pool}",
        f"--concurrency={concurrency}",
        "--loglevel=INFO",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    ]
    try:
        app.worker_main(argv)
    except SystemExit as exc:
        sys.exit(exc.code)


def _die_with_parent(parent_pid: int | None) -> None:
    """Linux: get SIGTERM (a warm Celery shutdown) if the parent is killed outright (kill -9),
    instead of living on as an orphan worker nobody will stop."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
    except (OSError, AttributeError):
        return
    if parent_pid is not None and os.getppid() != parent_pid:  # it died before prctl
        os.kill(os.getpid(), signal.SIGTERM)


def stop_workers(children: Sequence[Child]) -> list[int | None]:
    """Warm shutdown (running tasks may finish), then cold, then kill; never hang forever."""
    for child in children:
        if child.is_alive() and child.pid:
            os.kill(child.pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for child in children:
        child.join(max(0.0, deadline - time.monotonic()))
    for child in children:
        if child.is_alive() and child.pid:
            os.kill(child.pid, signal.SIGQUIT)  # Celery's cold shutdown
            child.join(5.0)
        if child.is_alive():
            child.kill()
            child.join(5.0)
    return [child.exitcode for child in children]


class _ParentThread:
    """A daemon thread of the parent process that stops promptly when asked."""

    name = "parent"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _run(self) -> None:
        raise NotImplementedError


class SupervisorThread(_ParentThread):
    """`serve`'s counterpart of the `worker` loop: replaces Celery workers that exited."""

    name = "supervisor"

    def __init__(self, settings: Settings, children: list[Child]) -> None:
        self.children = children
        super().__init__(settings)

    def _run(self) -> None:
        restarts: list[float] = []
        while not self._stop.wait(1.0):
            if not replace_dead(self.children, self.settings, 1, restarts):
                if not self._stop.is_set():
                    log.error("a worker process stopped or keeps crashing; API only from now")
                return


class ReaperThread(_ParentThread):
    """Runs the reaper every `reaper_interval_seconds` in the parent process."""

    name = "reaper"

    def _run(self) -> None:
        from openlipsync.jobs.celery_app import configure
        from openlipsync.jobs.context import sessions, storage
        from openlipsync.jobs.reaper import reap

        configure(self.settings)
        while not self._stop.is_set():
            try:
                reap(sessions(self.settings), storage(self.settings), self.settings)
            except Exception:
                log.exception("reaper pass failed")
            self._stop.wait(self.settings.reaper_interval_seconds)


# ---- first start ----------------------------------------------------------------------------


def announce_first_key(settings: Settings, host: str, port: int) -> str | None:
    """On a fresh install, create an API key and print how to use it; None when keys exist."""
    from sqlalchemy import func, select

    from openlipsync.store import keys
    from openlipsync.store.db import open_database
    from openlipsync.store.models import ApiKey

    with open_database(settings)() as session:
        if session.scalar(select(func.count()).select_from(ApiKey)):
            return None
        plaintext, _key = keys.create_key(session, name="default")
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    print(first_start_banner(plaintext, f"http://{shown}:{port}"), flush=True)
    return plaintext


def first_start_banner(api_key: str, base_url: str) -> str:
    video = MEDIA / "video/grid_bbaf2n.mpg"
    audio = MEDIA / "speech/librivox_austen_0870.wav"
    return f"""
openlipsync: created your first API key (shown only once; `openlipsync keys create` makes more):

    {api_key}

Open {base_url}/ in a browser (the Studio) and sign in with the key, or lip-sync a sample
with curl (run from the repository directory):

    curl -s -X POST {base_url}/v2/generate -H "x-api-key: {api_key}" \\
      -F model=lipsync-2 -F video=@{video} -F audio=@{audio}
    curl -s {base_url}/v2/generate/<id from above> -H "x-api-key: {api_key}"

Or with the official Python SDK (pip install syncsdk==0.3.0):

    import time
    from sync import Sync
    client = Sync(base_url="{base_url}", api_key="{api_key}")
    job = client.generations.create_with_files(
        model="lipsync-2",
        video=open("{video}", "rb"),
        audio=open("{audio}", "rb"),
    )
    while job.status in ("PENDING", "PROCESSING"):
        time.sleep(2)
        job = client.generations.get(job.id)
    print(job.status, job.output_url, job.error)
"""


def _setup_logging() -> None:
    # Text by default; OPENLIPSYNC_LOG_FORMAT=json for one JSON object per line (openlipsync.logs).
    from openlipsync.logs import configure_logging

    configure_logging()
