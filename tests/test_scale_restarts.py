"""Nothing lost when the API, the broker or PostgreSQL restarts in the middle of a run.

Fifty small generations go through a real API process (`openlipsync serve --no-worker`) and two
real worker processes (`openlipsync worker`) on a private PostgreSQL and a private Redis started
by this test. While they run, each of the three is killed outright and started again on the same
port. At the end every generation is COMPLETED or FAILED with a reason, exactly one row exists per
request, each COMPLETED one has exactly one stored output, each has exactly one webhook delivery
id, and nothing is left PENDING or PROCESSING. Clients retry with an Idempotency-Key, as a careful
client does, so a retried create can never be the source of a duplicate.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import re
import signal
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from openlipsync.store.db import dispose_all
from openlipsync.store.models import Generation
from tests.private_services import (
    postgres_binaries_problem,
    private_postgres,
    private_rabbitmq,
    private_redis,
    rabbitmq_binary_problem,
    redis_binary_problem,
)
from tests.test_jobs_helpers import (
    free_port,
    job_settings,
    new_organization,
    open_db,
    openlipsync_command,
    process,
    settings_env,
    verify_signature,
    wait_until,
    webhook_receiver,
)
from tests.test_scale_helpers import PG, Worker, port_open, postgres_database
from tests.tiny_media import AUDIO_NAME, SOURCE_VIDEO, VIDEO_NAME, file_server, make_tiny_inputs

_PROBLEM = postgres_binaries_problem() or redis_binary_problem()
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not SOURCE_VIDEO.exists(), reason=f"shared media not found: {SOURCE_VIDEO}"),
]
needs_private_services = pytest.mark.skipif(_PROBLEM is not None, reason=_PROBLEM or "")

TOTAL = 50
PG_DOWN_SECONDS = 5.0
RABBIT_TOTAL = 20
SUBMIT_INTERVAL = 0.2  # 50 creates over 10 s, so every restart falls among them
POLL_INTERVAL = 1.0
RUN_TIMEOUT = 240.0
TERMINAL = ("COMPLETED", "FAILED", "REJECTED")


@dataclass
class Api:
    """The API process, restartable on the same port (kill -9, then start again)."""

    env: dict[str, str]
    port: int
    root: Path
    stack: ExitStack = field(default_factory=ExitStack)
    starts: int = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.starts += 1
        command = openlipsync_command("serve", "--no-worker", "--port", str(self.port))
        log = self.root / f"api-{self.starts}.log"
        self.proc = self.stack.enter_context(process(command, self.env, log))

        def up() -> bool:
            assert self.proc.poll() is None, log.read_text()[-3000:]
            try:
                return httpx.get(f"{self.base_url}/health/live", timeout=2).is_success
            except httpx.HTTPError:
                return False

        wait_until(up, 120, interval=0.2)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=30)


@dataclass
class Outcomes:
    """What the clients saw: every HTTP status and every transport error, by kind."""

    statuses: Counter[int] = field(default_factory=Counter)
    transport_errors: Counter[str] = field(default_factory=Counter)
    bodies_5xx: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def saw(self, response: httpx.Response) -> None:
        with self.lock:
            self.statuses[response.status_code] += 1
            if response.status_code >= 500 and len(self.bodies_5xx) < 20:
                self.bodies_5xx.append(response.json())

    def failed(self, exc: Exception) -> None:
        with self.lock:
            self.transport_errors[type(exc).__name__] += 1


def _call(
    client: httpx.Client,
    outcomes: Outcomes,
    method: str,
    url: str,
    deadline: float,
    **kwargs: Any,
) -> httpx.Response:
    """One logical request, retried through restarts: transport errors and 503 are retried."""
    while True:
        try:
            response = client.request(method, url, timeout=15, **kwargs)
            outcomes.saw(response)
            if response.status_code != 503:
                return response
        except httpx.TransportError as exc:
            outcomes.failed(exc)
        if time.monotonic() > deadline:
            raise AssertionError(f"{method} {url} never answered before the deadline")
        time.sleep(0.3)


@contextmanager
def _cluster(tmp: Path, database_url: str, broker_url: str) -> Iterator[tuple[Api, Any]]:
    settings = job_settings(
        tmp / "data",
        database_url=database_url,
        broker_url=broker_url,
        storage_url=str(tmp / "files"),
        job_stale_seconds=4.0,
        job_max_attempts=3,
        reaper_interval_seconds=1.0,
        job_heartbeat_seconds=0.5,
        rate_limit_generate_per_minute=10_000,
        rate_limit_other_per_minute=100_000,
        concurrency_limit=10_000,
        webhook_backoff_seconds=0.5,
    )
    sessions = open_db(settings)
    api_key, _org, secret = new_organization(sessions)
    dispose_all()
    port = free_port()
    settings.public_base_url = f"http://127.0.0.1:{port}"
    env = settings_env(settings)
    with ExitStack() as stack:
        api = Api(env, port, tmp)
        stack.enter_context(api.stack)
        workers = []
        for index in range(2):
            log = tmp / f"worker-{index}.log"
            command = openlipsync_command("worker")
            proc = stack.enter_context(process(command, env, log, kill_group=True))
            workers.append(Worker(proc, log, ExitStack()))
        api.start()
        for worker in workers:
            wait_until(worker.ready, 180, interval=0.5)
        yield api, {"key": api_key, "secret": secret, "settings": settings, "workers": workers}


@dataclass
class Run:
    """Clients that each create one generation (retried, idempotent) and poll it to the end,
    started `SUBMIT_INTERVAL` apart, while `chaos` restarts things in another thread."""

    api: Api
    headers: dict[str, str]
    media: str
    receiver: Any
    total: int
    outcomes: Outcomes = field(default_factory=Outcomes)
    ids: dict[int, str] = field(default_factory=dict)
    bodies: dict[str, dict[str, Any]] = field(default_factory=dict)
    chaos: list[tuple[str, float]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.started = time.monotonic()
        self.deadline = self.started + RUN_TIMEOUT
        # One pool for all clients: a client per request costs 50 ms of CPU (its SSL context),
        # and fifty clients retrying through an outage would starve the API restarting.
        limits = httpx.Limits(max_connections=self.total, max_keepalive_connections=self.total)
        self.http = httpx.Client(limits=limits)

    def mark(self, event: str) -> None:
        self.chaos.append((event, round(time.monotonic() - self.started, 1)))

    def client(self, index: int) -> None:
        time.sleep(index * SUBMIT_INTERVAL)
        body = {
            "model": "lipsync-1.9.0-beta",
            "input": [
                {"type": "video", "url": f"{self.media}/{VIDEO_NAME}"},
                {"type": "audio", "url": f"{self.media}/{AUDIO_NAME}"},
            ],
            "options": {"sync_mode": "cut_off"},
            "webhookUrl": f"{self.receiver.url}?n={index}",
        }
        headers = {**self.headers, "Idempotency-Key": f"restart-{index}"}
        url = f"{self.api.base_url}/v2/generate"
        response = _call(
            self.http, self.outcomes, "POST", url, self.deadline, json=body, headers=headers
        )
        assert response.status_code in (200, 201), response.text
        generation_id = response.json()["id"]
        with self.lock:
            self.ids[index] = generation_id
        while time.monotonic() < self.deadline:
            time.sleep(POLL_INTERVAL)
            polled = _call(
                self.http,
                self.outcomes,
                "GET",
                f"{url}/{generation_id}",
                self.deadline,
                headers=self.headers,
            )
            assert polled.status_code == 200, polled.text
            if polled.json()["status"] in TERMINAL:
                with self.lock:
                    self.bodies[generation_id] = polled.json()
                return

    def drive(self, chaos: Any) -> None:
        with self.http, concurrent.futures.ThreadPoolExecutor(self.total + 1) as pool:
            futures = [pool.submit(self.client, index) for index in range(self.total)]
            futures.append(pool.submit(chaos))
            for future in futures:
                future.result()
        _report(self.chaos, time.monotonic() - self.started, self.bodies, self.outcomes)
        assert len(self.ids) == self.total and len(set(self.ids.values())) == self.total
        missing = sorted(set(self.ids.values()) - set(self.bodies))
        assert not missing, f"{len(missing)} generations never finished: {missing[:10]}"

    def assert_nothing_lost(self, ctx: dict[str, Any]) -> None:
        _assert_accounted(self.bodies, self.total)
        _assert_database(ctx["settings"], self.ids, self.total)
        _assert_one_output_each(Path(ctx["settings"].storage_url), self.bodies)
        _assert_one_delivery_each(self.receiver, ctx["secret"], self.bodies, self.deadline)
        assert self.outcomes.statuses[500] == 0, self.outcomes.bodies_5xx
        for body in self.outcomes.bodies_5xx:  # the documented body while PostgreSQL is away
            assert body["statusCode"] == 503, body
            assert body["errorCode"] == "generation_database_error", body
        for worker in ctx["workers"]:
            assert worker.proc.poll() is None, worker.log.read_text()[-3000:]


def _reaper_resent(ctx: dict[str, Any]) -> int:
    return sum(
        int(count)
        for worker in ctx["workers"]
        for count in re.findall(r"Report\(requeued=(\d+)", worker.log.read_text())
    )


@pytest.mark.services
@needs_private_services
def test_fifty_generations_survive_restarts_of_api_broker_and_postgres(tmp_path: Path) -> None:
    make_tiny_inputs(tmp_path / "media")
    with (
        private_postgres() as pg,
        private_redis() as broker,
        file_server(tmp_path / "media") as media,
        webhook_receiver() as receiver,
        _cluster(tmp_path, pg.url, broker.url) as (api, ctx),
    ):
        headers = {"x-api-key": ctx["key"]}
        run = Run(api, headers, media, receiver, TOTAL)

        def restarts() -> None:
            """While clients create and poll: Redis, then PostgreSQL, then the API."""
            time.sleep(1.5)
            broker.kill()  # creates meanwhile cannot publish: the reaper must re-send them
            run.mark("broker down")
            time.sleep(3.0)
            broker.start()
            run.mark("broker up")
            time.sleep(1.0)
            pg.kill()
            run.mark("postgres down")
            _assert_503_while_database_is_down(api, headers, next(iter(run.ids.values())))
            time.sleep(PG_DOWN_SECONDS)  # longer than job_stale_seconds: runs go stale
            pg.start()
            run.mark("postgres up")
            time.sleep(1.0)
            api.kill()
            run.mark("api down")
            time.sleep(1.0)
            api.start()
            run.mark("api up")

        run.drive(restarts)
        run.assert_nothing_lost(ctx)
        # The clients really lived through the outages: refused connections while the API was
        # down, 503s while PostgreSQL was (each retried), creates the broker never got.
        assert sum(run.outcomes.transport_errors.values()) > 0, "no client saw the API restart"
        assert run.outcomes.statuses[503] > 0, "no client request met the database outage"
        assert _reaper_resent(ctx) > 0, "no create met the broker outage"


@pytest.mark.services
@pytest.mark.skipif(rabbitmq_binary_problem() is not None, reason=rabbitmq_binary_problem() or "")
@pytest.mark.skipif(not port_open(PG), reason="no PostgreSQL at 127.0.0.1:5432")
def test_generations_survive_a_rabbitmq_restart(tmp_path: Path) -> None:
    """The same with RabbitMQ as the broker (a private node), restarted while work is queued."""
    make_tiny_inputs(tmp_path / "media")
    with (
        postgres_database() as database_url,
        private_rabbitmq() as broker,
        file_server(tmp_path / "media") as media,
        webhook_receiver() as receiver,
        _cluster(tmp_path, database_url, broker.url) as (api, ctx),
    ):
        run = Run(api, {"x-api-key": ctx["key"]}, media, receiver, RABBIT_TOTAL)

        def restart() -> None:
            time.sleep(2.0)
            broker.kill()
            run.mark("rabbitmq down")
            broker.start()
            run.mark("rabbitmq up")

        run.drive(restart)
        run.assert_nothing_lost(ctx)


def _assert_503_while_database_is_down(api: Api, headers: dict[str, str], any_id: str) -> None:
    """A read while PostgreSQL is away: the documented 503 body with Retry-After, never a 500."""
    response = httpx.get(f"{api.base_url}/v2/generate/{any_id}", headers=headers, timeout=15)
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"] == "2"
    assert response.json() == {
        "statusCode": 503,
        "message": "The database is temporarily unavailable; retry shortly",
        "error": "Service Unavailable",
        "errorCode": "generation_database_error",
    }


def _report(
    chaos: list[tuple[str, float]],
    elapsed: float,
    bodies: dict[str, dict[str, Any]],
    outcomes: Outcomes,
) -> None:
    counts = Counter(body["status"] for body in bodies.values())
    codes = Counter(body.get("error_code") for body in bodies.values() if body.get("error_code"))
    print(
        f"\nrestarts at {[(name, round(t, 1)) for name, t in chaos]}; all terminal after "
        f"{elapsed:.1f} s: {dict(counts)} {dict(codes)}; HTTP {dict(outcomes.statuses)}; "
        f"transport errors {dict(outcomes.transport_errors)}"
    )


def _assert_accounted(bodies: dict[str, dict[str, Any]], total: int) -> None:
    for body in bodies.values():
        assert body["status"] in ("COMPLETED", "FAILED"), body
        if body["status"] == "FAILED":
            assert body.get("error_code") and body.get("error"), body
    completed = sum(body["status"] == "COMPLETED" for body in bodies.values())
    assert completed >= total * 0.9, "restarts may fail a few, not most"


def _assert_database(settings: Any, ids: dict[int, str], total: int) -> None:
    with open_db(settings)() as session:
        rows = session.execute(select(Generation.idempotency_key, Generation.status)).all()
    dispose_all()
    assert len(rows) == total, f"{len(rows)} rows for {total} requests"
    assert sorted(key for key, _status in rows) == sorted(f"restart-{i}" for i in ids)
    assert not [row for row in rows if row[1] in ("PENDING", "PROCESSING")]


def _assert_one_output_each(storage: Path, bodies: dict[str, dict[str, Any]]) -> None:
    for generation_id, body in bodies.items():
        folder = storage / "generations" / generation_id
        outputs = sorted(folder.rglob("*.mp4")) if folder.exists() else []
        expected = 1 if body["status"] == "COMPLETED" else 0
        assert len(outputs) == expected, (generation_id, body["status"], outputs)


def _assert_one_delivery_each(
    receiver: Any, secret: str, bodies: dict[str, dict[str, Any]], deadline: float
) -> None:
    """At least one notification per generation, all with one stable delivery id."""
    seen: dict[str, set[str]] = defaultdict(set)

    def all_notified() -> bool:
        seen.clear()
        for request in list(receiver.requests):
            payload = verify_signature(secret, request)
            seen[payload["id"]].add(request.headers["Sync-Delivery-Id"])
        return set(seen) >= set(bodies)

    wait_until(all_notified, max(5.0, deadline - time.monotonic()), interval=0.5)
    time.sleep(1.0)
    all_notified()
    assert set(seen) == set(bodies)
    doubled = {gid: ids for gid, ids in seen.items() if len(ids) != 1}
    assert not doubled, f"more than one delivery id: {json.dumps(sorted(doubled))[:500]}"
    statuses = {json.loads(r.body)["id"]: json.loads(r.body)["status"] for r in receiver.requests}
    for generation_id, body in bodies.items():
        assert statuses[generation_id] == body["status"]


@pytest.mark.parametrize("mode", ["worker", "serve"])
def test_a_worker_replaces_a_celery_process_that_died(mode: str, tmp_path: Path) -> None:
    """kombu can kill a Celery worker on a broker restart; `openlipsync worker` (and `serve`
    with its embedded worker) starts a new one instead of stopping or running on without it."""
    settings = job_settings(tmp_path / "data")
    log = tmp_path / "worker.log"
    port = ["--port", str(free_port())] if mode == "serve" else []
    command = openlipsync_command(mode, *port)
    with process(command, settings_env(settings), log, kill_group=True) as proc:
        worker = Worker(proc, log, ExitStack())
        wait_until(worker.ready, 180, interval=0.5)
        match = re.search(r"service@\S+-(\d+) ready\.", log.read_text())
        assert match, log.read_text()[-2000:]
        os.kill(int(match.group(1)), signal.SIGKILL)

        def replaced() -> bool:
            text = log.read_text(errors="replace")
            return "the service worker exited" in text and text.count(" ready.") >= 3

        wait_until(replaced, 180, interval=0.5)
        assert proc.poll() is None, "the worker process itself keeps running"
