"""Shared helpers for the job tests (no tests here): settings, rows, receivers, workers."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from openlipsync.settings import Settings
from openlipsync.store.db import open_database
from openlipsync.store.keys import create_key
from openlipsync.store.models import Generation, Organization

REPO = Path(__file__).resolve().parents[1]


def job_settings(data_dir: Path, **overrides: Any) -> Settings:
    """Settings for a test deployment: local everything, fast timings, private URLs allowed."""
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "allow_private_urls": True,
        "webhook_backoff_seconds": 0.2,
        "webhook_timeout_seconds": 3.0,
        "broker_polling_seconds": 0.1,
        "job_heartbeat_seconds": 0.5,
        "reaper_interval_seconds": 1.0,
        "fetch_timeout_seconds": 5.0,
        "signing_secret": "test-signing-secret",
    }
    values.update(overrides)
    return Settings(**values)


def settings_env(settings: Settings) -> dict[str, str]:
    """The OPENLIPSYNC_* environment that reproduces `settings` in a subprocess."""
    env = dict(os.environ)
    for name, value in settings.model_dump().items():
        if isinstance(value, dict | list):
            text = json.dumps(value)
        elif isinstance(value, bool):
            text = "true" if value else "false"
        else:
            text = str(value)
        env[f"OPENLIPSYNC_{name.upper()}"] = text
    env["PYTHONPATH"] = str(REPO)
    return env


def new_organization(sessions: sessionmaker[Session]) -> tuple[str, str, str]:
    """(api key, organization id, webhook secret) of a fresh organisation."""
    with sessions() as session:
        plaintext, key = create_key(session, name="test")
        org = session.get(Organization, key.organization_id)
        assert org is not None
        return plaintext, org.id, org.webhook_secret


def add_generation(sessions: sessionmaker[Session], organization_id: str, **fields: Any) -> str:
    values: dict[str, Any] = {
        "organization_id": organization_id,
        "model": "lipsync-2",
        "input": [],
        "options": {"sync_mode": "cut_off"},
    }
    values.update(fields)
    with sessions() as session:
        generation = Generation(**values)
        session.add(generation)
        session.commit()
        return generation.id


def load(sessions: sessionmaker[Session], generation_id: str) -> Generation:
    with sessions() as session:
        generation = session.get(Generation, generation_id)
        assert generation is not None
        return generation


def open_db(settings: Settings) -> sessionmaker[Session]:
    return open_database(settings)


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A real webhook endpoint answering with scripted statuses (then 200)."""

    url: str
    statuses: list[int] = field(default_factory=list)
    requests: list[Received] = field(default_factory=list)
    event: threading.Event = field(default_factory=threading.Event)

    def wait_for(self, count: int, timeout: float) -> list[Received]:
        deadline = time.monotonic() + timeout
        while len(self.requests) < count and time.monotonic() < deadline:
            self.event.wait(0.1)
            self.event.clear()
        return self.requests


@contextmanager
def webhook_receiver(statuses: list[int] | None = None) -> Iterator[Receiver]:
    receiver = Receiver(url="", statuses=list(statuses or []))

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            receiver.requests.append(Received(dict(self.headers.items()), body))
            status = receiver.statuses.pop(0) if receiver.statuses else 200
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")
            receiver.event.set()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()


def verify_signature(secret: str, received: Received, max_age: float = 300) -> dict[str, Any]:
    """What a receiver following the official samples does; returns the parsed body."""
    header = received.headers["Sync-Signature"]
    match = re.fullmatch(r"t=(\d+),v1=([0-9a-f]{64})", header)
    assert match, header
    timestamp, v1 = match.groups()
    assert abs(time.time() - int(timestamp)) < max_age
    raw = hmac.new(secret.encode(), timestamp.encode() + b"." + received.body, hashlib.sha256)
    assert hmac.compare_digest(raw.hexdigest(), v1), "signature over the raw body"
    payload = json.loads(received.body)
    # The Python sample re-serialises the parsed body: it must reproduce our bytes exactly.
    again = json.dumps(payload, separators=(",", ":")).encode()
    assert again == received.body
    assert received.body.isascii()
    assert received.headers["X-Signature-Primary"] == header
    assert received.headers["Content-Type"] == "application/json"
    return payload


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def process(
    args: list[str],
    env: dict[str, str],
    log: Path,
    new_session: bool = False,
    kill_group: bool = False,
) -> Iterator[subprocess.Popen]:
    """A real subprocess (worker, server) stopped with SIGTERM, then killed, on exit.

    `kill_group` starts it in a new session and kills that whole process group at once on
    exit instead: for a worker whose stop is not what the test is about. A warm stop takes 2-6
    s (Celery's loop on the embedded broker looks for it every 2 s, its prefork pool winds
    down over 2 more), and is tested where it matters (test_jobs_runner, test_e2e_server,
    test_scale_workers)."""
    handle = log.open("wb")
    proc = subprocess.Popen(
        args,
        env=env,
        stdout=handle,
        stderr=subprocess.STDOUT,
        cwd=REPO,
        start_new_session=new_session or kill_group,
    )
    try:
        yield proc
    finally:
        if kill_group and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.terminate()
        try:
            proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        handle.close()


def openlipsync_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "openlipsync.cli", *args]


def wait_until(check: Callable[[], Any], timeout: float, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


def descendants(pid: int) -> set[int]:
    """Every live process below `pid` (read from /proc, no psutil needed)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        children = {child for child, parent in parents.items() if parent in frontier}
        frontier = children - found
        found |= children
    return found


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
