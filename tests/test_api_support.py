"""Fixtures for the API/store tests: real databases and a real uvicorn server per test module.

Imported by the other `test_api_*`/`test_store_*` modules (`from test_api_support import ...`).
PostgreSQL tests get a uniquely named database (CREATE DATABASE openlipsync_t_<random>) that is
dropped afterwards, because other test suites share the server at 127.0.0.1:5432.
"""

from __future__ import annotations

import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from openlipsync.api.app import create_app
from openlipsync.api.enqueue import NoEnqueue
from openlipsync.settings import Settings
from openlipsync.store.db import dispose_all
from openlipsync.store.keys import create_key

PG_ADMIN = "host=127.0.0.1 port=5432 dbname=test user=postgres connect_timeout=3"
DATABASES = ["sqlite", "postgresql"]


def postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database URL for this test session (skips when the server is absent)."""
    try:
        import psycopg

        admin = psycopg.connect(PG_ADMIN, autocommit=True)
    except Exception as exc:  # any connection failure means "no server here"
        pytest.skip(f"PostgreSQL not reachable at 127.0.0.1:5432 (db test, user postgres): {exc}")
    name = f"openlipsync_t_{secrets.token_hex(6)}"
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        dispose_all()
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture(scope="module", params=DATABASES)
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """'' (SQLite under each server's data_dir) or a throw-away PostgreSQL database."""
    if request.param == "sqlite":
        yield ""
        return
    yield from postgres_database()


@dataclass
class LiveServer:
    base_url: str
    settings: Settings
    app: Any
    key: str  # organisation A
    other_key: str  # organisation B (tenancy checks)

    def client(self, key: str | None = None, **kwargs: Any) -> httpx.Client:
        headers = {"x-api-key": key if key is not None else self.key}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=30, **kwargs)

    @property
    def enqueued(self) -> NoEnqueue:
        return self.app.state.enqueue


def free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


class _Server(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # running in a thread
        pass


@dataclass
class _Running:
    server: _Server
    thread: threading.Thread


def start_server(settings_factory: Callable[[str], Settings]) -> tuple[LiveServer, _Running]:
    sock = free_socket()
    port = sock.getsockname()[1]
    settings = settings_factory(f"http://127.0.0.1:{port}")
    app = create_app(settings, enqueue=NoEnqueue())
    with app.state.sessions() as session:
        key, _ = create_key(session, "org-a")
        other, _ = create_key(session, "org-b")
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    server = _Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    live = LiveServer(f"http://127.0.0.1:{port}", settings, app, key, other)
    return live, _Running(server, thread)


def stop_server(running: _Running) -> None:
    running.server.should_exit = True
    running.thread.join(timeout=10)


def settings_for(data_dir: Path, database_url: str, **overrides: Any) -> Callable[[str], Settings]:
    """Generous limits by default; tests of the limits pass their own values."""
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "database_url": database_url,
        "signing_secret": "test-secret",
        "rate_limit_generate_per_minute": 100_000,
        "rate_limit_other_per_minute": 100_000,
        "concurrency_limit": 100_000,
        "batch_concurrency_limit": 100_000,
    }
    values.update(overrides)
    return lambda base: Settings(public_base_url=base, **values)


@pytest.fixture(scope="module")
def live(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    data_dir = tmp_path_factory.mktemp("api")
    server, running = start_server(settings_for(data_dir, database_url))
    try:
        yield server
    finally:
        stop_server(running)


@pytest.fixture
def server_factory(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., LiveServer]]:
    """Start extra servers with custom settings (stopped after the test)."""
    running: list[_Running] = []

    def make(data_dir: Path | None = None, **overrides: Any) -> LiveServer:
        directory = data_dir or tmp_path_factory.mktemp("api-custom")
        server, handle = start_server(settings_for(directory, database_url, **overrides))
        running.append(handle)
        return server

    yield make
    for handle in running:
        stop_server(handle)


MEDIA = Path(__file__).resolve().parents[1].parent / "shared" / "media"


def media(relative: str) -> Path:
    path = MEDIA / relative
    if not path.exists():
        pytest.skip(f"shared media not found: {path}")
    return path


def url_body(model: str = "lipsync-2", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": model,
        "input": [
            {"type": "video", "url": "https://media.example/v.mp4"},
            {"type": "audio", "url": "https://media.example/a.wav"},
        ],
    }
    body.update(extra)
    return body


def test_voices_lists_the_local_voice_and_needs_a_key(tmp_path) -> None:
    from fastapi.testclient import TestClient

    from openlipsync.api.app import create_app
    from openlipsync.api.enqueue import NoEnqueue
    from openlipsync.settings import Settings
    from openlipsync.store.keys import create_key

    app = create_app(Settings(data_dir=tmp_path), enqueue=NoEnqueue())
    with app.state.sessions() as session:
        key, _ = create_key(session, name="voices")
    client = TestClient(app)
    assert client.get("/v2/voices").status_code == 401
    voices = client.get("/v2/voices", headers={"x-api-key": key}).json()
    assert any(v["id"] == "en_US-joe-medium" for v in voices)
    assert client.get("/").headers["content-type"].startswith("text/html")
