"""Operating a deployment: liveness/readiness probes, Prometheus metrics, JSON logs.

Real SQLite files, real PostgreSQL/Redis when they run on 127.0.0.1 (else those cases skip),
and the exposition is read back with prometheus_client's own parser.
"""

from __future__ import annotations

import json
import logging
import shutil
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from openlipsync.api.app import create_app
from openlipsync.api.enqueue import NoEnqueue
from openlipsync.logs import (
    GenerationFilter,
    JsonFormatter,
    bind_generation,
    configure_logging,
    generation_logger,
)
from openlipsync.settings import Settings
from openlipsync.store.models import WebhookDelivery, utcnow
from tests.test_jobs_helpers import (
    add_generation,
    free_port,
    job_settings,
    new_organization,
    open_db,
    openlipsync_command,
    process,
    settings_env,
    wait_until,
)
from tests.test_scale_helpers import PG, PG_ADMIN, REDIS, port_open, postgres_database

needs_pg = pytest.mark.skipif(not port_open(PG), reason="no PostgreSQL at 127.0.0.1:5432")
needs_redis = pytest.mark.skipif(not port_open(REDIS), reason="no Redis at 127.0.0.1:6379")


@pytest.fixture
def pg_url() -> Iterator[str]:
    with postgres_database() as url:
        yield url


def _client(settings: Settings) -> TestClient:
    return TestClient(create_app(settings, enqueue=NoEnqueue()))


# ---- probes ---------------------------------------------------------------------------------


def test_live_and_ready_on_a_healthy_node(tmp_path: Path) -> None:
    settings = job_settings(tmp_path / "data")
    with _client(settings) as client:
        assert client.get("/health/live").json() == {"status": "ok"}
        for path in ("/health", "/v2/health"):  # the old probe keeps answering as before
            assert client.get(path).json() == {"status": "ok"}
        ready = client.get("/health/ready")
        assert ready.status_code == 200, ready.text
        assert ready.json() == {
            "status": "ok",
            "checks": {"database": "ok", "broker": "ok", "storage": "ok"},
            "failing": [],
        }
    probes = list((tmp_path / "data" / "files").rglob("probe-*"))
    assert probes == [], "the storage probe deletes its object"


def test_ready_is_503_naming_a_dead_broker_while_live_stays_200(tmp_path: Path) -> None:
    dead = free_port()
    settings = job_settings(tmp_path / "data", broker_url=f"redis://127.0.0.1:{dead}/0")
    with _client(settings) as client:
        ready = client.get("/health/ready")
        assert ready.status_code == 503
        body = ready.json()
        assert body["failing"] == ["broker"]
        assert "refused" in body["checks"]["broker"].lower()
        assert body["checks"]["database"] == body["checks"]["storage"] == "ok"
        assert client.get("/health/live").status_code == 200
        # /metrics still answers, reporting the broker as down.
        families = _families(client.get("/metrics").text)
        assert _value(families, "openlipsync_broker_up") == 0


def test_ready_is_503_when_storage_cannot_be_written(tmp_path: Path) -> None:
    settings = job_settings(tmp_path / "data")
    with _client(settings) as client:
        root = tmp_path / "data" / "files"
        shutil.rmtree(root)
        root.write_text("a file where the storage directory should be")
        ready = client.get("/health/ready")
        assert ready.status_code == 503
        assert ready.json()["failing"] == ["storage"]


@pytest.mark.services
@needs_pg
def test_ready_is_503_when_the_database_goes_away(tmp_path: Path, pg_url: str) -> None:
    import psycopg

    settings = job_settings(tmp_path / "data", database_url=pg_url)
    with _client(settings) as client:
        assert client.get("/health/ready").status_code == 200
        name = pg_url.rsplit("/", 1)[1]
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        ready = client.get("/health/ready")
        assert ready.status_code == 503
        assert ready.json()["failing"] == ["database"]
        assert client.get("/health/live").status_code == 200


# ---- metrics --------------------------------------------------------------------------------


def _families(text: str) -> dict:
    return {family.name: family for family in text_string_to_metric_families(text)}


def _value(families: dict, name: str, sample: str | None = None, **labels: str) -> float:
    family = families[name]
    for item in family.samples:
        if item.name == (sample or name) and all(
            item.labels.get(k) == v for k, v in labels.items()
        ):
            return item.value
    raise AssertionError(f"no sample {sample or name}{labels} in {family.samples}")


def _seed(settings: Settings) -> None:
    """Generations in every state with known timings, and webhook rows in every state."""
    sessions = open_db(settings)
    _key, org, _secret = new_organization(sessions)
    now = utcnow()
    for _ in range(3):
        add_generation(sessions, org)  # PENDING
    add_generation(
        sessions, org, status="PROCESSING", heartbeat_at=now - timedelta(hours=1), started_at=now
    )
    add_generation(sessions, org, status="PROCESSING", heartbeat_at=now, started_at=now)
    # Completed in 4 s and 40 s, 3 s of output each: 6 s of output in 44 s of work.
    for seconds in (4, 40):
        add_generation(
            sessions,
            org,
            status="COMPLETED",
            started_at=now - timedelta(seconds=seconds + 5),
            finished_at=now - timedelta(seconds=5),
            output_duration=3.0,
        )
    add_generation(
        sessions,
        org,
        status="FAILED",
        started_at=now - timedelta(seconds=2),
        finished_at=now - timedelta(seconds=1),
    )
    add_generation(sessions, org, status="REJECTED")
    with sessions() as session:
        for fields in (
            {"delivered_at": now, "attempts": 1},
            {"failed_at": now, "attempts": 5},
            {"attempts": 2},
            {},
            {},
        ):
            session.add(
                WebhookDelivery(organization_id=org, url="http://hook", payload="{}", **fields)
            )
        session.commit()


def _assert_seeded_metrics(text: str) -> dict:
    families = _families(text)
    generations = {s.labels["status"]: s.value for s in families["openlipsync_generations"].samples}
    assert generations == {
        "PENDING": 3,
        "PROCESSING": 2,
        "COMPLETED": 2,
        "FAILED": 1,
        "REJECTED": 1,
    }
    assert _value(families, "openlipsync_queue_depth", source="database") == 3
    assert _value(families, "openlipsync_generations_stale") == 1
    histogram = "openlipsync_generation_duration_seconds"
    bucket = f"{histogram}_bucket"
    assert _value(families, histogram, bucket, status="COMPLETED", le="2.5") == 0
    assert _value(families, histogram, bucket, status="COMPLETED", le="5.0") == 1
    assert _value(families, histogram, bucket, status="COMPLETED", le="60.0") == 2
    assert _value(families, histogram, bucket, status="COMPLETED", le="+Inf") == 2
    assert _value(families, histogram, f"{histogram}_count", status="COMPLETED") == 2
    assert _value(families, histogram, f"{histogram}_sum", status="COMPLETED") == pytest.approx(
        44, abs=0.1
    )
    assert _value(families, histogram, bucket, status="FAILED", le="0.5") == 0
    assert _value(families, histogram, bucket, status="FAILED", le="2.5") == 1
    fps = _value(families, "openlipsync_engine_frames_per_second", model="lipsync-2")
    assert fps == pytest.approx(6 * 25 / 44, rel=0.01)
    webhooks = {
        s.labels["state"]: s.value for s in families["openlipsync_webhook_deliveries"].samples
    }
    assert webhooks == {"delivered": 1, "failed": 1, "retrying": 1, "pending": 2}
    return families


def test_metrics_on_sqlite_parse_and_count_exactly(tmp_path: Path) -> None:
    settings = job_settings(tmp_path / "data")
    with _client(settings) as client:
        empty = client.get("/metrics")
        assert empty.status_code == 200
        assert empty.headers["content-type"].startswith("text/plain; version=0.0.4")
        families = _families(empty.text)
        assert _value(families, "openlipsync_queue_depth", source="database") == 0
        assert _value(families, "openlipsync_broker_up") == 1
        _seed(settings)
        _assert_seeded_metrics(client.get("/metrics").text)
        assert "x-api-key" not in client.get("/metrics").request.headers  # keyless


@pytest.mark.services
@needs_pg
@needs_redis
def test_metrics_on_postgres_with_the_redis_queue_length(tmp_path: Path, pg_url: str) -> None:
    import redis
    from kombu import Connection

    prefix = f"olps-obs-{uuid.uuid4().hex[:8]}:"
    settings = job_settings(
        tmp_path / "data",
        database_url=pg_url,
        broker_url="redis://127.0.0.1:6379/13",
        broker_key_prefix=prefix,
    )
    try:
        # Three messages waiting in the engine queue, published the way Celery's kombu does.
        with Connection(settings.broker_url, transport_options={"global_keyprefix": prefix}) as c:
            queue = c.SimpleQueue("engine")
            for number in range(3):
                queue.put({"n": number})
            queue.close()
        with _client(settings) as client:
            _seed(settings)
            families = _assert_seeded_metrics(client.get("/metrics").text)
            assert _value(families, "openlipsync_queue_depth", source="broker") == 3
            assert client.get("/health/ready").status_code == 200
    finally:
        server = redis.Redis(host=REDIS[0], port=REDIS[1], db=13)
        keys = list(server.scan_iter(match=f"{prefix}*"))
        if keys:
            server.delete(*keys)


# ---- logs -----------------------------------------------------------------------------------


def _json_lines(records: list[logging.LogRecord]) -> list[dict]:
    formatter = JsonFormatter()
    return [json.loads(formatter.format(record)) for record in records]


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []
        self.addFilter(GenerationFilter())

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_json_records_carry_the_bound_generation_id() -> None:
    logger = logging.getLogger("openlipsync.test.json")
    handler = _Collect()
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        logger.info("outside")
        with bind_generation("gen-1"):
            logger.info("inside %s", "ok", extra={"stage": "render"})
            try:
                raise ValueError('bad "quote" \n newline ünïcode')
            except ValueError:
                logger.exception("crashed")
        generation_logger(logger, "gen-2").warning("adapter")
        logger.info("after")
    finally:
        logger.removeHandler(handler)
    outside, inside, crashed, adapter, after = _json_lines(handler.records)
    assert "generation_id" not in outside and "generation_id" not in after
    assert inside["generation_id"] == "gen-1" and inside["message"] == "inside ok"
    assert inside["stage"] == "render" and inside["level"] == "INFO"
    assert inside["logger"] == "openlipsync.test.json" and inside["ts"].endswith("+00:00")
    assert crashed["generation_id"] == "gen-1"
    assert 'ValueError: bad "quote"' in crashed["exception"]
    assert adapter["generation_id"] == "gen-2" and adapter["level"] == "WARNING"


def test_configure_logging_switches_existing_handlers_to_json(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        monkeypatch.setenv("OPENLIPSYNC_LOG_FORMAT", "nonsense")  # unknown: text, untouched
        configure_logging()
        assert not isinstance(handler.formatter, JsonFormatter)
        monkeypatch.setenv("OPENLIPSYNC_LOG_FORMAT", "JSON")
        configure_logging()
        configure_logging()  # idempotent: one filter, one handler
        assert isinstance(handler.formatter, JsonFormatter)
        assert sum(isinstance(f, GenerationFilter) for f in handler.filters) == 1
        assert root.handlers.count(handler) == 1
    finally:
        root.removeHandler(handler)


def test_a_served_api_logs_json_lines_including_uvicorn(tmp_path: Path) -> None:
    """`openlipsync serve --no-worker` with OPENLIPSYNC_LOG_FORMAT=json: every line parses."""
    port = free_port()
    settings = job_settings(tmp_path / "data", public_base_url=f"http://127.0.0.1:{port}")
    env = settings_env(settings) | {"OPENLIPSYNC_LOG_FORMAT": "json"}
    log = tmp_path / "serve.log"
    command = openlipsync_command("serve", "--no-worker", "--port", str(port))
    with process(command, env, log) as proc:

        def up() -> bool:
            assert proc.poll() is None, log.read_text()
            try:
                return httpx.get(f"http://127.0.0.1:{port}/health/live", timeout=2).is_success
            except httpx.HTTPError:
                return False

        wait_until(up, 60, interval=0.5)
        httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    lines = log.read_text().splitlines()
    entries = [json.loads(line) for line in lines if line.startswith("{")]
    loggers = {entry["logger"] for entry in entries}
    assert {"alembic.runtime.migration", "uvicorn.error", "uvicorn.access"} <= loggers, loggers
    assert any("/metrics" in entry["message"] for entry in entries)
    assert all("color_message" not in entry for entry in entries)
    # From the application's startup on, every line is JSON (uvicorn's two lines before the
    # startup hook runs are still text; the first-start banner is printed, not logged).
    started = next(i for i, line in enumerate(lines) if "Application startup complete" in line)
    assert all(line.startswith("{") for line in lines[started:] if line.strip())


def test_probe_and_metrics_ignore_junk_and_refuse_other_methods(tmp_path: Path) -> None:
    settings = job_settings(tmp_path / "data")
    with _client(settings) as client:
        for path in ("/health/live", "/health/ready", "/metrics"):
            assert client.get(path, params={"x": "y" * 5000, "le": "+Inf"}).status_code == 200
            assert client.post(path, content=b"\x00" * 1024).status_code == 405
            assert client.delete(path).status_code == 405
        assert client.get("/metrics", params={"q": "\x00"}).status_code == 400  # NUL refused


def test_a_worker_run_logs_with_its_generation_id(tmp_path: Path) -> None:
    """The Celery task binds the id: a library's log line deep inside the run carries it."""
    from openlipsync.jobs import tasks
    from openlipsync.jobs.celery_app import configure
    from tests.test_scale_helpers import media_server

    settings = job_settings(tmp_path / "data")
    sessions = open_db(settings)
    configure(settings)
    _key, org, _secret = new_organization(sessions)
    with media_server() as media:
        missing = f"{media}/video/no-such-clip.mp4"
        generation_id = add_generation(
            sessions,
            org,
            input=[{"type": "video", "url": missing}, {"type": "audio", "url": missing}],
        )
        handler = _Collect()
        httpx_logger = logging.getLogger("httpx")
        previous = httpx_logger.level
        httpx_logger.addHandler(handler)
        httpx_logger.setLevel(logging.INFO)
        try:
            assert tasks.generate(generation_id) == "FAILED"
        finally:
            httpx_logger.removeHandler(handler)
            httpx_logger.setLevel(previous)
    lines = _json_lines(handler.records)
    fetches = [line for line in lines if "no-such-clip" in line["message"]]
    assert fetches and all(line["generation_id"] == generation_id for line in fetches)
