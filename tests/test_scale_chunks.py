"""A long generation split into chunks across real worker processes (PostgreSQL + Redis, and
PostgreSQL + RabbitMQ), and one worker machine killed (`kill -9` of all its processes) while it
renders a chunk: the chunk is redone on the other worker, the generation completes once, with one
output and one COMPLETED webhook, and nothing is left PROCESSING."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import av
import httpx
import pytest

from openlipsync.store.models import Generation, GenerationChunk
from tests.test_jobs_helpers import open_db, verify_signature, wait_until, webhook_receiver
from tests.test_scale_helpers import (
    MEDIA,
    PG,
    REDIS,
    Deployment,
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

# 11 s of speech over a looped 3 s GRID clip: 275 frames in chunks of 4 s (100, 100, 75).
CHUNK_SECONDS = 4.0
ENGINE_TIMEOUT = 300.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    if not port_open(REDIS):
        pytest.skip("no Redis at 127.0.0.1:6379")
    root = tmp_path_factory.mktemp("chunk-cluster")
    with postgres_database() as database_url, redis_broker() as (broker_url, prefix):
        settings = {"database_url": database_url, "broker_url": broker_url}
        with deployment(
            root,
            2,
            broker_key_prefix=prefix,
            job_max_attempts=3,
            chunk_seconds=CHUNK_SECONDS,
            chunk_min_seconds=8.0,
            **settings,
        ) as running:
            yield running


def _chunks(cluster: Deployment, generation_id: str) -> list[GenerationChunk]:
    with open_db(cluster.settings)() as session:
        rows = session.query(GenerationChunk).filter_by(generation_id=generation_id).all()
        return sorted(rows, key=lambda chunk: chunk.index)


def _pid(worker_id: str) -> int:
    return int(worker_id.split(":")[1])


@needs_redis
def test_a_worker_killed_mid_chunk_is_replaced_and_the_generation_completes_once(
    cluster: Deployment, tmp_path: Path
) -> None:
    with media_server() as media, webhook_receiver() as receiver:
        generation_id = submit(
            cluster,
            media,
            0,
            audio="speech/jfk_inaugural.flac",
            sync_mode="loop",
            webhook_url=receiver.url,
        )

        def rendering() -> GenerationChunk | None:
            busy = [c for c in _chunks(cluster, generation_id) if c.status == "PROCESSING"]
            return busy[0] if busy and busy[0].worker_id else None

        victim_chunk = wait_until(rendering, 180, interval=0.05)
        victim = cluster.worker_of(_pid(victim_chunk.worker_id))
        victim.kill_all()  # the machine is gone mid-chunk
        survivor = next(w for w in cluster.workers if w is not victim and w.proc.poll() is None)

        body = cluster.wait_terminal([generation_id], ENGINE_TIMEOUT)[generation_id]
        assert body["status"] == "COMPLETED", body
        chunks = _chunks(cluster, generation_id)
        assert [(c.start_frame, c.stop_frame) for c in chunks] == [(0, 100), (100, 200), (200, 275)]
        assert {c.status for c in chunks} == {"DONE"}
        redone = next(c for c in chunks if c.id == victim_chunk.id)
        assert redone.attempts == 2
        assert cluster.worker_of(_pid(redone.worker_id)) is survivor

        root = Path(cluster.settings.storage_url) / "generations" / generation_id
        outputs = sorted(root.rglob("*.mp4"))
        assert len(outputs) == 1, outputs  # one output; chunk files and plan cleaned up
        response_path = tmp_path / "out.mp4"
        response_path.write_bytes(httpx.get(body["outputUrl"], timeout=60).content)
        with av.open(str(response_path)) as container:
            video = container.streams.video[0]
            assert video.codec_context.name == "h264" and video.frames == 275
            assert container.streams.audio
            assert container.duration / 1e6 == pytest.approx(11.0, abs=0.05)

        receiver.wait_for(1, 60)
        time.sleep(2)  # room for a (wrong) second notification to arrive
        completed = {
            request.headers["Sync-Delivery-Id"]
            for request in receiver.requests
            if verify_signature(cluster.webhook_secret, request)["status"] == "COMPLETED"
        }
        assert len(completed) == 1
    with open_db(cluster.settings)() as session:
        assert session.query(Generation).filter(Generation.status == "PROCESSING").count() == 0
        generation = session.get(Generation, generation_id)
        assert generation is not None and generation.attempts == 1, "planned once"


@needs_rabbit
def test_a_chunked_generation_completes_on_rabbitmq(tmp_path: Path) -> None:
    """The chunk and join messages travel through RabbitMQ as they do through Redis."""
    with (
        postgres_database() as database_url,
        rabbitmq_broker() as broker_url,
        deployment(
            tmp_path / "cluster",
            2,
            database_url=database_url,
            broker_url=broker_url,
            chunk_seconds=CHUNK_SECONDS,
            chunk_min_seconds=8.0,
        ) as cluster,
        media_server() as media,
    ):
        generation_id = submit(
            cluster, media, 0, audio="speech/jfk_inaugural.flac", sync_mode="loop"
        )
        body = cluster.wait_terminal([generation_id], ENGINE_TIMEOUT)[generation_id]
        assert body["status"] == "COMPLETED", body
        chunks = _chunks(cluster, generation_id)
        assert [(c.start_frame, c.stop_frame) for c in chunks] == [(0, 100), (100, 200), (200, 275)]
        assert {c.status for c in chunks} == {"DONE"} and {c.attempts for c in chunks} == {1}
        root = Path(cluster.settings.storage_url) / "generations" / generation_id
        outputs = sorted(root.rglob("*.mp4"))
        assert len(outputs) == 1, outputs
        with av.open(str(outputs[0])) as container:
            assert container.streams.video[0].frames == 275 and container.streams.audio
