"""Open the database every process shares, migrated to the current schema.

API nodes and workers call `open_database` on start; whichever comes first runs the Alembic
migrations while holding a lock, so several processes starting together never race on DDL.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from openlipsync.settings import Settings

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 30_000
_SQLITE_TRANSIENT = ("locked", "busy", "unable to open", "disk i/o")
_MIGRATION_LOCK_ID = 0x6F6C7073  # "olps": PostgreSQL advisory lock key for migrations

# Keyed by process too: a forked worker must never reuse its parent's pooled connections.
_engines: dict[tuple[str, int], Engine] = {}
_factories: dict[tuple[str, int], sessionmaker[Session]] = {}
_guard = threading.Lock()


def open_database(settings: Settings) -> sessionmaker[Session]:
    """A session factory for the configured database, created and migrated on first use."""
    url = settings.resolved_database_url()
    cache_key = (url, os.getpid())
    with _guard:
        factory = _factories.get(cache_key)
        if factory is not None:
            return factory
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        engine = _create_engine(url)
        migrate(engine)
        factory = sessionmaker(engine, expire_on_commit=False)
        _engines[cache_key] = engine
        _factories[cache_key] = factory
        return factory


def dispose_all() -> None:
    """Close every cached engine (tests and graceful shutdown)."""
    with _guard:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()
        _factories.clear()


def is_unavailable(exc: BaseException) -> bool:
    """True when `exc` means the database cannot be reached right now (down, restarting, locked),
    as opposed to a bug in a query: the caller should answer "retry later", not fail the work."""
    if isinstance(exc, InterfaceError):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    if not isinstance(exc, OperationalError):
        return False
    if type(exc.orig).__module__.startswith("sqlite3"):
        # SQLite reports schema bugs ("no such table") as OperationalError too; only these pass.
        message = str(exc.orig).lower()
        return any(sign in message for sign in _SQLITE_TRANSIENT)
    return True  # PostgreSQL: refused, closed, shutting down, starting up


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def _create_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False}
    )
    event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers proceed while one writer commits; busy_timeout makes writers queue
    # instead of failing with "database is locked" when API and worker write at once.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def alembic_config() -> Config:
    config = Config(str(MIGRATIONS_DIR / "alembic.ini"))
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("version_locations", str(MIGRATIONS_DIR / "versions"))
    return config


def migrate(engine: Engine) -> None:
    """Upgrade to head under a cross-process lock (idempotent when already current)."""
    with engine.connect() as connection, _migration_lock(engine, connection):
        config = alembic_config()
        config.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False))
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
        connection.commit()


@contextmanager
def _migration_lock(engine: Engine, connection: Connection) -> Iterator[None]:
    if engine.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _MIGRATION_LOCK_ID})
        connection.commit()
        try:
            yield
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _MIGRATION_LOCK_ID})
            connection.commit()
        return
    database = engine.url.database
    if not is_sqlite(engine) or not database or database == ":memory:":
        yield
        return
    lock_path = Path(database).expanduser().with_suffix(".migrate.lock")
    with lock_path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
