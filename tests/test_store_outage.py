"""Which database errors are an outage (retry later: 503, requeue) and which are bugs (fail)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from openlipsync.store.db import is_unavailable
from tests.test_jobs_helpers import free_port


def _error(url: str, statement: str = "SELECT 1") -> OperationalError:
    engine = create_engine(url)
    try:
        with pytest.raises(OperationalError) as caught, engine.connect() as connection:
            connection.execute(text(statement))
        return caught.value
    finally:
        engine.dispose()


def test_a_refused_postgresql_connection_is_an_outage() -> None:
    port = free_port()  # nothing listens there
    assert is_unavailable(_error(f"postgresql+psycopg://postgres@127.0.0.1:{port}/x"))


def test_an_sqlite_file_that_cannot_be_opened_is_an_outage(tmp_path: Path) -> None:
    assert is_unavailable(_error(f"sqlite:///{tmp_path}/missing-dir/x.db"))


def test_a_missing_table_is_a_bug_not_an_outage() -> None:
    """SQLite reports it as OperationalError too; retrying it forever would hide the bug."""
    assert not is_unavailable(_error("sqlite://", "SELECT * FROM no_such_table"))
