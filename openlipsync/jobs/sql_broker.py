"""The SQL broker (the embedded default's SQLite file): kombu's SQL transport, made to hear a
stop request within STOP_CHECK_SECONDS, and its tables made safely by concurrent processes.

Celery's loop for transports without an event loop of their own waits in
`drain_events(timeout=2.0)`, polling the table, and looks for a stop request only between
two waits; the wait itself ran past its 2 s by a polling interval. So a SIGTERM or a Ctrl-C
of `openlipsync serve` left each worker waiting 2-3.7 s before its warm shutdown began.
Shorter waits let it look twice a second (as `celery_app.WakeUp` does for the other loop).
"""

from __future__ import annotations

import fcntl
from pathlib import Path
from typing import Any

from celery import Celery
from kombu.transport import TRANSPORT_ALIASES
from kombu.transport import sqlalchemy as kombu_sql

STOP_CHECK_SECONDS = 0.5  # the longest a worker's wait for a message lasts


class Transport(kombu_sql.Transport):
    """kombu's SQL transport, its waits for a message cut to STOP_CHECK_SECONDS."""

    polling_interval = STOP_CHECK_SECONDS  # between two reads of an empty queue; see `use`

    def drain_events(self, connection: Any, timeout: float | None = None) -> Any:
        if timeout is not None:
            timeout = min(timeout, STOP_CHECK_SECONDS)
        return super().drain_events(connection, timeout=timeout)


def use(polling_seconds: float) -> None:
    """Make this process's `sqla+` broker URLs use `Transport`, polling every
    `polling_seconds` (kombu's transport hands every broker option to create_engine, so the
    interval cannot go there: kombu 5.7 crashes on it)."""
    Transport.polling_interval = min(polling_seconds, STOP_CHECK_SECONDS)
    for alias in ("sqla", "sqlalchemy"):
        TRANSPORT_ALIASES[alias] = f"{__name__}:Transport"


def declare_sqlite_queues(app: Celery, database: Path) -> None:
    """Create the embedded broker's tables and queue rows once, one process at a time.

    kombu's SQL transport creates them on first use with a check-then-insert locked only within
    a process: two workers starting together both insert the `default` row and one dies on
    `UNIQUE constraint failed: kombu_queue.name`. A file lock beside the database serialises
    the first use; afterwards every process finds the rows and inserts nothing.
    """
    database.parent.mkdir(parents=True, exist_ok=True)
    with open(database.with_name(database.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        with app.connection_for_write() as connection:
            channel = connection.default_channel
            for queue in app.conf.task_queues:
                queue(channel).declare()
