"""Probes of the three things a node needs to do useful work: database, broker, file storage.

A load balancer or orchestrator asks `/health/ready` before sending traffic; each probe is
short-timed so a dead dependency answers 503 within seconds instead of hanging the probe.
The broker helpers are also what `/metrics` uses to read the queue length cheaply.
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from openlipsync.settings import Settings
from openlipsync.store.files import Storage

BROKER_TIMEOUT_SECONDS = 2.0
ENGINE_QUEUE = "engine"  # the queue generation messages wait in (openlipsync.jobs.celery_app)
PROBE_PREFIX = "health/probe-"


@dataclass(frozen=True)
class Check:
    component: str
    ok: bool
    detail: str = "ok"


def check_database(sessions: sessionmaker[Session]) -> Check:
    return _run("database", lambda: _select_one(sessions))


def check_broker(settings: Settings) -> Check:
    return _run("broker", lambda: _connect_broker(settings))


def check_storage(storage: Storage) -> Check:
    return _run("storage", lambda: _probe_storage(storage))


def _run(component: str, probe: Callable[[], None]) -> Check:
    try:
        probe()
    except Exception as exc:  # any failure of a dependency means "not ready", with the reason
        return Check(component, False, f"{type(exc).__name__}: {exc}"[:300])
    return Check(component, True)


def _select_one(sessions: sessionmaker[Session]) -> None:
    with sessions() as session:
        session.execute(text("SELECT 1"))


def broker_connection(settings: Settings) -> Any:
    """A kombu connection to the job broker with short timeouts (the caller closes it)."""
    from kombu import Connection

    url = settings.resolved_broker_url()
    options: dict[str, Any] = {}
    if url.startswith(("redis://", "rediss://")):
        # Same key prefix as the workers, or the queue we measure is not theirs.
        options = {
            "global_keyprefix": settings.broker_key_prefix,
            "socket_connect_timeout": BROKER_TIMEOUT_SECONDS,
            "socket_timeout": BROKER_TIMEOUT_SECONDS,
        }
    return Connection(url, connect_timeout=BROKER_TIMEOUT_SECONDS, transport_options=options)


def _connect_broker(settings: Settings) -> None:
    with broker_connection(settings) as connection:
        connection.ensure_connection(max_retries=0, timeout=BROKER_TIMEOUT_SECONDS)
        connection.default_channel  # noqa: B018 - opening a channel proves the broker answers


def broker_queue_length(settings: Settings, queue: str = ENGINE_QUEUE) -> int:
    """Messages waiting in `queue`; a queue never declared counts as 0."""
    with broker_connection(settings) as connection:
        connection.ensure_connection(max_retries=0, timeout=BROKER_TIMEOUT_SECONDS)
        channel = connection.default_channel
        # kombu's virtual transports (Redis, SQL) count directly, priority sub-queues included;
        # their passive declare ignores `global_keyprefix` and reports a full queue as absent.
        size = getattr(channel, "_size", None)
        if size is not None:
            return int(size(queue))
        try:
            return int(channel.queue_declare(queue=queue, passive=True).message_count)
        except Exception as exc:  # AMQP answers 404 for a queue no worker declared yet
            if "NOT_FOUND" in str(exc):
                return 0
            raise


def _probe_storage(storage: Storage) -> None:
    """Write, read back and delete a small object: proves credentials, bucket and disk."""
    key = f"{PROBE_PREFIX}{uuid.uuid4().hex}"
    payload = uuid.uuid4().bytes
    storage.put_bytes(key, payload)
    try:
        with tempfile.TemporaryDirectory(prefix="olps-probe-") as scratch:
            copy = storage.download(key, Path(scratch) / "probe")
            if copy.read_bytes() != payload:
                raise RuntimeError("storage returned different bytes than were written")
    finally:
        storage.delete(key)
