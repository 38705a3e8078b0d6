"""Scale-out on real services: one API process and several worker processes that share only
PostgreSQL, the broker (Redis or RabbitMQ) and the file storage, as separate machines would.

Covers: throughput across two workers on Redis and on RabbitMQ; a worker killed outright
(`kill -9` of all its processes) in the middle of a generation; a generation that kills its
worker process every time (the poison message) ending FAILED while others complete.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import av
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from openlipsync.store.models import Generation
from tests.test_jobs_helpers import open_db, verify_signature, wait_until, webhook_receiver
from tests.test_scale_helpers import (
    MEDIA,
    PG,
    REDIS,
    Deployment,
    Worker,
    deployment,
    media_server,
    port_open,
    postgres_database,
    rabbitmq_broker,
    rabbitmq_vhost_error,
    redis_broker,
    submit,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.services,
    pytest.mark.skipif(not port_open(PG), reason="no PostgreSQL at 127.0.0.1:5432"),
    pytest.mark.skipif(not (MEDIA / "video").is_dir(), reason=f"shared media not found: {MEDIA}"),
]
needs_redis = pytest.mark.skipif(not port_open(REDIS), reason="no Redis at 127.0.0.1:6379")
_RABBIT_PROBLEM = rabbitmq_vhost_error()
needs_rabbit = pytest.mark.skipif(_RABBIT_PROBLEM is not None, reason=_RABBIT_PROBLEM or "")

ENGINE_TIMEOUT = 240.0


@pytest.fixture(scope="module")
def media() -> Iterator[str]:
    with media_server() as url:
        yield url


@pytest.fixture(scope="module")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """API + 2 workers on PostgreSQL + Redis; at most 3 attempts per generation."""
    if not port_open(REDIS):
        pytest.skip("no Redis at 127.0.0.1:6379")
    root = tmp_path_factory.mktemp("redis-cluster")
    with postgres_database() as database_url, redis_broker() as (broker_url, prefix):
        settings = {"database_url": database_url, "broker_url": broker_url}
        with deployment(root, 2, broker_key_prefix=prefix, job_max_attempts=3, **settings) as c:
            yield c


def _assert_downloadable_mp4(url: str, path: Path) -> None:
    response = httpx.get(url, timeout=60)  # a signed link: no API key needed
    assert response.status_code == 200, response.text[:300]
    path.write_bytes(response.content)
    with av.open(str(path)) as container:
        assert container.streams.video[0].codec_context.name == "h264"
        assert container.streams.audio, "the output carries the new voice"
        assert container.duration / 1e6 == pytest.approx(3.0, abs=0.35)


def _pool_pid(generation: Generation) -> int:
    assert generation.worker_id, generation.id
    return int(generation.worker_id.split(":")[1])


def _load(cluster: Deployment, generation_id: str) -> Generation:
    with open_db(cluster.settings)() as session:
        generation = session.get(Generation, generation_id)
        assert generation is not None
        return generation


def _nothing_processing(cluster: Deployment) -> None:
    with open_db(cluster.settings)() as session:
        stuck = session.query(Generation).filter(Generation.status == "PROCESSING").count()
    assert stuck == 0


def _run_six(cluster: Deployment, media: str, tmp_path: Path) -> None:
    ids = [submit(cluster, media, index) for index in range(6)]
    done = cluster.wait_terminal(ids, ENGINE_TIMEOUT)
    assert {body["status"] for body in done.values()} == {"COMPLETED"}, done
    for generation_id, body in done.items():
        _assert_downloadable_mp4(body["outputUrl"], tmp_path / f"{generation_id}.mp4")
    # The work was shared: each worker ran at least one generation.
    owners = {id(cluster.worker_of(_pool_pid(_load(cluster, gid)))) for gid in ids}
    assert len(owners) == 2, "both workers took generations"
    _nothing_processing(cluster)
    _assert_metrics_after_a_drained_queue(cluster, completed=6)


def _assert_metrics_after_a_drained_queue(cluster: Deployment, completed: int) -> None:
    """What an operator's Prometheus sees from the live API once the work is done."""
    with cluster.client() as client:
        text = client.get("/metrics").text
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    assert samples[("openlipsync_generations", (("status", "COMPLETED"),))] >= completed
    assert samples[("openlipsync_queue_depth", (("source", "database"),))] == 0
    assert samples[("openlipsync_queue_depth", (("source", "broker"),))] == 0
    assert samples[("openlipsync_broker_up", ())] == 1
    assert samples[("openlipsync_generations_stale", ())] == 0
    fps = samples[("openlipsync_engine_frames_per_second", (("model", "lipsync-1.9.0-beta"),))]
    assert fps > 1.0


@needs_redis
def test_six_generations_complete_across_two_workers_on_redis(
    redis_cluster: Deployment, media: str, tmp_path: Path
) -> None:
    _run_six(redis_cluster, media, tmp_path)


def _stored_outputs(cluster: Deployment, generation_id: str) -> list[Path]:
    root = Path(cluster.settings.storage_url) / "generations" / generation_id
    return sorted(root.rglob("*.mp4")) if root.exists() else []


@needs_redis
def test_a_worker_killed_mid_generation_is_finished_by_the_other(
    redis_cluster: Deployment, media: str, tmp_path: Path
) -> None:
    cluster = redis_cluster
    try:
        _finish_after_a_worker_dies(cluster, media, tmp_path)
    finally:
        _back_to_workers(cluster, 2)  # the next test needs both, whatever happened here


def _back_to_workers(cluster: Deployment, count: int) -> None:
    while sum(worker.proc.poll() is None for worker in cluster.workers) < count:
        cluster.start_worker()
    cluster.wait_ready()


def _finish_after_a_worker_dies(cluster: Deployment, media: str, tmp_path: Path) -> None:
    with webhook_receiver() as receiver:
        generation_id = submit(cluster, media, 0, webhook_url=receiver.url)

        def rendering() -> Generation | None:
            generation = _load(cluster, generation_id)
            started = generation.status == "PROCESSING" and generation.worker_id
            busy = generation.stage not in (None, "queued", "starting", "fetching")
            return generation if started and busy else None

        running = wait_until(rendering, 120, interval=0.1)
        victim = cluster.worker_of(_pool_pid(running))
        victim.kill_all()  # API, database and broker never hear a goodbye
        survivor = next(w for w in cluster.workers if w is not victim and w.proc.poll() is None)

        body = cluster.wait_terminal([generation_id], ENGINE_TIMEOUT)[generation_id]
        assert body["status"] == "COMPLETED", body
        finished = _load(cluster, generation_id)
        assert cluster.worker_of(_pool_pid(finished)) is survivor
        assert finished.attempts == 2
        assert len(_stored_outputs(cluster, generation_id)) == 1, "exactly one output"
        _assert_downloadable_mp4(body["outputUrl"], tmp_path / "out.mp4")

        receiver.wait_for(1, 60)
        time.sleep(2)  # room for a (wrong) second notification to arrive
        completed = {
            request.headers["Sync-Delivery-Id"]
            for request in receiver.requests
            if verify_signature(cluster.webhook_secret, request)["status"] == "COMPLETED"
        }
        assert len(completed) == 1, "one COMPLETED notification (deduplicated by delivery id)"
        payload = json.loads(receiver.requests[0].body)
        assert payload["id"] == generation_id
    _nothing_processing(cluster)


@needs_redis
def test_a_generation_that_kills_its_worker_every_time_fails_while_others_complete(
    redis_cluster: Deployment, media: str
) -> None:
    """The engine process running it dies each attempt (as on a crashing input): after
    `job_max_attempts` it ends FAILED; generations submitted beside it still complete."""
    cluster = redis_cluster
    poison = submit(cluster, media, 1, audio="speech/jfk_inaugural.flac", sync_mode="loop")
    others = [submit(cluster, media, index) for index in (2, 3, 4)]
    max_attempts = cluster.settings.job_max_attempts
    for attempt in range(1, max_attempts + 1):

        def running(attempt: int = attempt) -> Generation | None:
            generation = _load(cluster, poison)
            claimed = generation.status == "PROCESSING" and generation.worker_id
            return generation if claimed and generation.attempts == attempt else None

        generation = wait_until(running, 120, interval=0.1)
        os.kill(_pool_pid(generation), signal.SIGKILL)  # only the engine process dies

    done = cluster.wait_terminal([poison, *others], ENGINE_TIMEOUT)
    assert done[poison]["status"] == "FAILED"
    assert done[poison]["error_code"] == "generation_pipeline_failed"
    assert _load(cluster, poison).attempts == max_attempts
    assert _stored_outputs(cluster, poison) == []
    assert [done[gid]["status"] for gid in others] == ["COMPLETED"] * 3
    alive = [worker for worker in cluster.workers if worker.proc.poll() is None]
    assert len(alive) == 2, "a dying engine process never takes its worker down"
    _nothing_processing(cluster)


@needs_rabbit
def test_six_generations_complete_across_two_workers_on_rabbitmq(
    media: str, tmp_path: Path
) -> None:
    with (
        postgres_database() as database_url,
        rabbitmq_broker() as broker_url,
        deployment(
            tmp_path / "cluster", 2, database_url=database_url, broker_url=broker_url
        ) as cluster,
    ):
        _run_six(cluster, media, tmp_path)
        _assert_a_prompt_warm_stop(cluster.workers[0])


def _assert_a_prompt_warm_stop(worker: Worker) -> None:
    """An idle worker on RabbitMQ used to sleep in its event loop up to 10 s before noticing a
    SIGTERM: as long as `docker stop` waits before it kills (celery_app.WakeUp)."""
    began = time.monotonic()
    worker.proc.terminate()
    assert worker.proc.wait(timeout=60) == 0
    assert time.monotonic() - began < 6.0, "a warm stop well within docker stop's 10 s"
