"""Real worker processes (`openlipsync worker`) on the SQLite and Redis brokers, plus the
claim/attempt/reaper rules that keep a generation's lifecycle exact when workers die."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from openlipsync.jobs import dispatch, reaper
from openlipsync.jobs.celery_app import configure
from openlipsync.jobs.context import sessions as job_sessions
from openlipsync.jobs.generation import claim, finish, run_generation, worker_token
from openlipsync.settings import Settings
from openlipsync.store.files import open_storage
from openlipsync.store.models import Asset, Batch, Generation, WebhookDelivery, utcnow
from tests.test_jobs_helpers import (
    add_generation,
    job_settings,
    load,
    new_organization,
    open_db,
    openlipsync_command,
    process,
    settings_env,
    verify_signature,
    wait_until,
    webhook_receiver,
)

REDIS = ("127.0.0.1", 6379)


def _redis_up() -> bool:
    try:
        with socket.create_connection(REDIS, timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _terminal(sessions, generation_id: str):  # type: ignore[no-untyped-def]
    generation = load(sessions, generation_id)
    return generation if generation.status in ("COMPLETED", "FAILED") else None


BROKERS = [
    pytest.param("sqlite", id="sqlite-broker"),
    pytest.param(
        "redis",
        id="redis-broker",
        marks=[
            pytest.mark.services,
            pytest.mark.skipif(not _redis_up(), reason="no Redis at 127.0.0.1:6379"),
        ],
    ),
]


@pytest.fixture(scope="module", params=BROKERS)
def running_worker(request, tmp_path_factory) -> Iterator[Settings]:  # type: ignore[no-untyped-def]
    """`openlipsync worker` with short timings: orphans are noticed after 3 s, 2 attempts max."""
    root = tmp_path_factory.mktemp(request.param)
    prefix = f"olps-test-{uuid.uuid4().hex[:8]}:"
    overrides: dict = {"job_stale_seconds": 3.0, "job_max_attempts": 2}
    if request.param == "redis":
        # db 13 and a unique prefix: never touches anyone else's keys on a shared server.
        overrides.update(broker_url="redis://127.0.0.1:6379/13", broker_key_prefix=prefix)
    settings = job_settings(root / "data", **overrides)
    open_db(settings)
    configure(settings)
    try:
        command, log = openlipsync_command("worker"), root / "worker.log"
        with process(command, settings_env(settings), log, kill_group=True):
            yield settings
    finally:
        if request.param == "redis":
            _delete_redis_keys(prefix)


def _delete_redis_keys(prefix: str) -> None:
    import redis

    client = redis.Redis(host=REDIS[0], port=REDIS[1], db=13)
    keys = list(client.scan_iter(match=f"{prefix}*"))
    if keys:
        client.delete(*keys)


@pytest.fixture(autouse=True)
def _configured(request) -> None:  # type: ignore[no-untyped-def]
    """Tests share one process: point the dispatcher at this test's deployment."""
    if "running_worker" in request.fixturenames:
        configure(request.getfixturevalue("running_worker"))


def test_worker_fails_bad_requests_precisely_and_signs_retried_webhooks(
    running_worker: Settings,
) -> None:
    settings = running_worker
    sessions = open_db(settings)
    _key, org_id, secret = new_organization(sessions)
    with webhook_receiver([500]) as receiver:
        no_inputs = add_generation(sessions, org_id, webhook_url=receiver.url)
        only_video = add_generation(
            sessions,
            org_id,
            input=[
                {"type": "video", "assetId": str(uuid.uuid4())},  # not an asset of ours
                {"type": "audio", "url": "http://127.0.0.1:9/a.wav"},
            ],
        )
        with_segments = add_generation(
            sessions,
            org_id,
            input=[{"type": "video", "url": "http://x/v.mp4"}],
            segments=[{"startTime": 0, "endTime": 1, "audioInput": {"refId": "a"}}],
        )
        began = time.monotonic()
        for generation_id in (no_inputs, only_video, with_segments):
            dispatch.enqueue_generation(generation_id)
        assert time.monotonic() - began < 5
        failed = {
            gid: wait_until(lambda gid=gid: _terminal(sessions, gid), 90)
            for gid in (no_inputs, only_video, with_segments)
        }
        assert failed[no_inputs].error_code == "generation_video_missing"
        assert failed[only_video].error_code == "generation_input_video_inaccessible"
        assert failed[with_segments].error_code == "generation_audio_missing"  # refId "a" unknown
        for generation in failed.values():
            assert generation.status == "FAILED" and generation.attempts == 1
            assert generation.error and generation.finished_at is not None
        requests = receiver.wait_for(2, timeout=30)
    assert len(requests) == 2, "one failed POST (500) then one retry"
    assert {r.headers["Sync-Delivery-Id"] for r in requests} == {
        requests[0].headers["Sync-Delivery-Id"]
    }
    payload = verify_signature(secret, requests[1])
    assert payload["id"] == no_inputs and payload["status"] == "FAILED"
    assert payload["error_code"] == payload["errorCode"] == "generation_video_missing"
    with sessions() as session:
        delivery = session.get(WebhookDelivery, requests[0].headers["Sync-Delivery-Id"])
        assert delivery is not None and delivery.delivered_at and delivery.attempts == 2


def test_a_dead_broker_does_not_block_enqueue_and_the_reaper_recovers(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        dead_port = sock.getsockname()[1]
    dead = job_settings(tmp_path, broker_url=f"redis://127.0.0.1:{dead_port}/0")
    sessions = open_db(dead)
    _key, org_id, _secret = new_organization(sessions)
    generation_id = add_generation(sessions, org_id, created_at=utcnow() - timedelta(minutes=1))
    configure(dead)
    began = time.monotonic()
    dispatch.enqueue_generation(generation_id)
    assert time.monotonic() - began < 5
    assert load(sessions, generation_id).stage is None  # not queued: the reaper's cue
    # The broker comes back (here: the SQLite one); the reaper publishes the forgotten row.
    alive = job_settings(tmp_path)
    configure(alive)
    report = reaper.reap(job_sessions(alive), open_storage(alive), alive)
    assert report.requeued == 1
    generation = load(sessions, generation_id)
    assert generation.status == "PENDING" and generation.stage == dispatch.QUEUED_STAGE
    assert reaper.reap(job_sessions(alive), open_storage(alive), alive).requeued == 0


@pytest.fixture
def local(tmp_path: Path):  # type: ignore[no-untyped-def]
    settings = job_settings(tmp_path, job_stale_seconds=5.0, job_max_attempts=2)
    configure(settings)
    sessions = open_db(settings)
    _key, org_id, _ = new_organization(sessions)
    return settings, sessions, open_storage(settings), org_id


def test_claim_is_exclusive_and_a_second_run_is_a_no_op(local) -> None:  # type: ignore[no-untyped-def]
    settings, sessions, storage, org_id = local
    generation_id = add_generation(sessions, org_id)
    with sessions() as session:
        assert claim(session, generation_id, "a", settings)
        assert not claim(session, generation_id, "b", settings)  # fresh heartbeat: taken
        assert finish(session, generation_id, "FAILED", storage, settings, token="b") is None
        done = finish(
            session,
            generation_id,
            "FAILED",
            storage,
            settings,
            token="a",
            error="x",
            error_code="generation_pipeline_failed",
        )
        assert done is not None
    assert run_generation(generation_id, sessions, storage, settings) is None  # terminal
    generation = load(sessions, generation_id)
    assert generation.status == "FAILED" and generation.attempts == 1


def test_finishing_sweeps_what_dead_runs_left_behind(local) -> None:  # type: ignore[no-untyped-def]
    """A run killed after storing its output (or mid-write) leaves files no row references."""
    settings, sessions, storage, org_id = local
    generation_id = add_generation(sessions, org_id)
    folder = f"generations/{generation_id}"
    dead = [f"{folder}/1111aaaa/output.mp4", f"{folder}/chunks-2222bbbb/plan.npz"]
    kept = f"{folder}/3333cccc/output.mp4"
    for key in [*dead, kept]:
        storage.put_bytes(key, b"x")
    (storage.path(f"{folder}/1111aaaa") / ".part-half").write_bytes(b"half")
    other = f"generations/{generation_id}x/output.mp4"  # a neighbour sharing the id's prefix
    storage.put_bytes(other, b"y")
    with sessions() as session:
        assert claim(session, generation_id, "a", settings)
        assert finish(
            session, generation_id, "COMPLETED", storage, settings, token="a", output_key=kept
        )
    assert storage.keys(folder) == [kept]
    assert storage.exists(other)


def test_orphans_are_resumed_then_failed_after_max_attempts(local) -> None:  # type: ignore[no-untyped-def]
    settings, sessions, storage, org_id = local
    stale = utcnow() - timedelta(seconds=60)
    generation_id = add_generation(
        sessions,
        org_id,
        status="PROCESSING",
        attempts=1,
        worker_id="dead-worker",
        heartbeat_at=stale,
        webhook_url="http://127.0.0.1:9/hook",
    )
    report = reaper.reap(job_sessions(settings), storage, settings)
    assert report.orphans_resumed == 1
    generation = load(sessions, generation_id)
    assert generation.status == "PROCESSING" and generation.worker_id is None
    # The re-delivered message takes it over (attempt 2); that worker dies too.
    with sessions() as session:
        assert claim(session, generation_id, worker_token(), settings)
        session.execute(
            Generation.__table__.update()
            .where(Generation.id == generation_id)
            .values(heartbeat_at=stale)
        )
        session.commit()
    report = reaper.reap(job_sessions(settings), storage, settings)
    assert report.exhausted == 1
    generation = load(sessions, generation_id)
    assert generation.status == "FAILED" and generation.attempts == 2
    assert generation.error_code == "generation_pipeline_failed"
    with sessions() as session:
        rows = session.query(WebhookDelivery).filter_by(generation_id=generation_id).all()
        assert len(rows) == 1  # the FAILED notification, written with the status change
    assert reaper.reap(job_sessions(settings), storage, settings).exhausted == 0


def test_the_reaper_queues_missing_thumbnails_at_most_once_a_minute(local) -> None:  # type: ignore[no-untyped-def]
    settings, sessions, storage, org_id = local
    old, now = utcnow() - timedelta(minutes=5), utcnow()
    rows = [  # (type, stored file, thumbnail, last touched): two need one
        ("VIDEO", "a/lost-message.mp4", None, old),
        ("IMAGE", "a/from-before-thumbnails.heic", None, old),
        ("IMAGE", "a/undecodable.png", "", old),
        ("AUDIO", "a/voice.wav", None, old),
        ("VIDEO", "a/just-uploaded.mp4", None, now),
        ("VIDEO", None, None, old),  # registered by URL: nothing stored
    ]
    with sessions() as session, session.begin():
        for kind, key, thumbnail, when in rows:
            session.add(
                Asset(
                    organization_id=org_id,
                    type=kind,
                    storage_key=key,
                    thumbnail_key=thumbnail,
                    created_at=when,
                    updated_at=when,
                )
            )
    assert reaper.reap(job_sessions(settings), storage, settings).thumbnails == 2
    assert reaper.reap(job_sessions(settings), storage, settings).thumbnails == 0


def test_retention_deletes_old_outputs(local) -> None:  # type: ignore[no-untyped-def]
    settings, sessions, storage, org_id = local
    settings.retention_seconds = 3600
    storage.put_bytes("generations/old/output.mp4", b"x")
    storage.put_bytes("generations/new/output.mp4", b"x")
    old = add_generation(
        sessions,
        org_id,
        status="COMPLETED",
        output_key="generations/old/output.mp4",
        finished_at=utcnow() - timedelta(hours=2),
    )
    new = add_generation(
        sessions,
        org_id,
        status="COMPLETED",
        output_key="generations/new/output.mp4",
        finished_at=utcnow(),
    )
    assert reaper.reap(job_sessions(settings), storage, settings).expired_files == 1
    assert not storage.exists("generations/old/output.mp4")
    assert storage.exists("generations/new/output.mp4")
    assert load(sessions, old).output_key is None
    assert load(sessions, new).output_key is not None


@pytest.fixture
def stalling_server() -> Iterator[str]:
    """Sends a media header, then a byte every 0.2 s: keeps a worker busy in the fetch stage."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    stop = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Type", "video/mp4")
            self.end_headers()
            try:
                self.wfile.write(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 1000)
                while not stop.wait(0.2):
                    self.wfile.write(b"\x00")
                    self.wfile.flush()
            except OSError:
                pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/video.mp4"
    finally:
        stop.set()
        server.shutdown()
        server.server_close()


@pytest.mark.slow
def test_a_generation_that_keeps_killing_its_worker_ends_failed(
    running_worker: Settings, stalling_server: str
) -> None:
    """SIGKILL the pool process running the job, twice: resumed once, then FAILED for good."""
    settings = running_worker
    sessions = open_db(settings)
    _key, org_id, _secret = new_organization(sessions)
    generation_id = add_generation(
        sessions,
        org_id,
        input=[
            {"type": "video", "url": stalling_server},
            {"type": "audio", "url": stalling_server},
        ],
    )
    dispatch.enqueue_generation(generation_id)
    killed = []
    for attempt in (1, 2):

        def running(attempt: int = attempt) -> Generation | None:
            generation = load(sessions, generation_id)
            ok = generation.status == "PROCESSING" and generation.attempts == attempt
            return generation if ok and generation.worker_id else None

        generation = wait_until(running, 60)
        pid = int(generation.worker_id.split(":")[1])
        assert pid not in killed
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)
    generation = wait_until(lambda: _terminal(sessions, generation_id), 60)
    assert generation.status == "FAILED"
    assert generation.error_code == "generation_pipeline_failed"
    assert generation.attempts == 2


def test_a_batch_expands_completes_and_reports(running_worker: Settings) -> None:
    settings = running_worker
    sessions = open_db(settings)
    storage = open_storage(settings)
    _key, org_id, secret = new_organization(sessions)
    lines = [
        {
            "request_id": f"request-{n}",
            "endpoint": "/v2/generate",
            "payload": {
                "model": "lipsync-2",
                "input": [
                    {"type": "video", "url": f"http://127.0.0.1:9/v{n}.mp4"},
                    {"type": "audio", "url": f"http://127.0.0.1:9/a{n}.wav"},
                ],
            },
        }
        for n in range(3)
    ]
    lines.append({"request_id": "bad", "endpoint": "/v2/generate", "payload": {"model": "x"}})
    with webhook_receiver() as receiver:
        with sessions() as session:
            batch = Batch(organization_id=org_id, webhook_url=receiver.url, total=len(lines))
            session.add(batch)
            session.flush()
            batch.lines_key = f"batches/{batch.id}/input.jsonl"
            storage.put_bytes(batch.lines_key, "\n".join(json.dumps(x) for x in lines).encode())
            session.commit()
            batch_id = batch.id
        dispatch.enqueue_batch(batch_id)

        def closed() -> Batch | None:
            with sessions() as session:
                row = session.get(Batch, batch_id)
                return row if row is not None and row.status == "COMPLETED" else None

        batch = wait_until(closed, 60)
        requests = receiver.wait_for(1, timeout=20)
    assert batch.output_key
    results = [json.loads(x) for x in storage.path(batch.output_key).read_text().splitlines()]
    assert [r["request_id"] for r in results] == ["request-0", "request-1", "request-2", "bad"]
    assert all(
        r["status"] == "FAILED" and r["response"]["id"] == r["generation_id"] for r in results
    )
    assert results[0]["response"]["error_code"] == "generation_input_video_inaccessible"
    assert all(r["outputUrl"] is None for r in results)
    assert results[3]["response"]["error_code"] == "generation_unsupported_model"
    assert len(requests) == 1
    payload = verify_signature(secret, requests[0])
    assert payload["id"] == batch_id and payload["status"] == "COMPLETED"
    assert payload["metrics"] == {
        "total_generations": 4,
        "success_count": 0,
        "failed_count": 4,
        "pending_count": 0,
    }
    assert payload["outputUrl"].startswith("http")
    # A duplicate expansion message creates nothing new.
    dispatch.enqueue_batch(batch_id)
    time.sleep(1.5)
    with sessions() as session:
        count = session.query(Generation).filter_by(batch_id=batch_id).count()
    assert count == 4


def test_an_asset_whose_file_is_gone_fails_as_inaccessible(local) -> None:  # type: ignore[no-untyped-def]
    settings, sessions, storage, org_id = local
    from openlipsync.store.models import Asset

    with sessions() as session:
        video = Asset(organization_id=org_id, type="VIDEO", storage_key="assets/gone/video.mp4")
        audio = Asset(organization_id=org_id, type="AUDIO", storage_key="assets/gone/audio.wav")
        session.add_all([video, audio])
        session.commit()
        inputs = [{"type": "video", "assetId": video.id}, {"type": "audio", "assetId": audio.id}]
    generation_id = add_generation(sessions, org_id, input=inputs)
    done = run_generation(generation_id, sessions, storage, settings)
    assert done is not None and done.status == "FAILED"
    generation = load(sessions, generation_id)
    assert generation.error_code == "generation_input_video_inaccessible"
    assert "expired" in generation.error


def test_heartbeat_writes_progress_and_notices_deletion(local) -> None:  # type: ignore[no-untyped-def]
    settings, sessions, _storage, org_id = local
    settings.job_heartbeat_seconds = 0.2
    from openlipsync.jobs.generation import Heartbeat

    generation_id = add_generation(sessions, org_id)
    token = worker_token()
    with sessions() as session:
        assert claim(session, generation_id, token, settings)
    with Heartbeat(sessions, generation_id, token, settings) as beat:
        beat.progress("track", 0.3)
        generation = wait_until(
            lambda: (lambda g: g if g.stage == "track" else None)(load(sessions, generation_id)), 5
        )
        assert generation.progress == 30.0 and generation.heartbeat_at is not None
        assert not beat.should_cancel()
        with sessions() as session:  # the row disappears (deleted) while the engine runs
            session.delete(session.get(Generation, generation_id))
            session.commit()
        wait_until(beat.should_cancel, 5)


def test_the_soft_deadline_cancels_the_run(local) -> None:  # type: ignore[no-untyped-def]
    settings, sessions, _storage, org_id = local
    settings.generation_timeout_seconds = 0.0
    from openlipsync.jobs.generation import Heartbeat

    generation_id = add_generation(sessions, org_id)
    with Heartbeat(sessions, generation_id, "t", settings) as beat:
        assert beat.should_cancel() and beat.timed_out()


def test_reaper_resends_lost_webhook_and_batch_messages(local) -> None:  # type: ignore[no-untyped-def]
    settings, sessions, storage, org_id = local
    old = utcnow() - timedelta(minutes=5)
    with sessions() as session:
        lost = WebhookDelivery(
            organization_id=org_id, url="http://127.0.0.1:9/", payload="{}", next_attempt_at=old
        )
        done = WebhookDelivery(
            organization_id=org_id,
            url="http://127.0.0.1:9/",
            payload="{}",
            next_attempt_at=old,
            delivered_at=old,
        )
        stuck = Batch(organization_id=org_id, created_at=old)
        session.add_all([lost, done, stuck])
        session.commit()
    report = reaper.reap(job_sessions(settings), storage, settings)
    assert report.deliveries == 1 and report.batches == 1


def test_process_handles_follow_the_settings_object_not_its_address(tmp_path: Path) -> None:
    """A Settings that is garbage-collected frees its id(); a new one at the same address must
    open its own database, not inherit the dead one's (the reaper once read a stale database)."""
    for n in range(12):
        settings = job_settings(tmp_path / str(n))
        factory = job_sessions(settings)
        with factory() as session:
            database = session.get_bind().url.database
        assert database is not None and database.startswith(str(tmp_path / str(n)))
        del settings, factory
