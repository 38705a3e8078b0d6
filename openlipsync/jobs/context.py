"""Per-process handles on the database and the file storage for the configured Settings.

Workers are long-lived and fork; opening the database (which runs migrations) once per process
and per Settings keeps tasks cheap while letting tests run several configurations side by side.
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import TYPE_CHECKING

from openlipsync.jobs.celery_app import current_settings
from openlipsync.settings import Settings

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from openlipsync.store.files import Storage

_lock = threading.RLock()  # re-entrant: a collected Settings may be forgotten mid-lookup
_sessions: dict[tuple[int, int], sessionmaker[Session]] = {}
_storages: dict[tuple[int, int], Storage] = {}


def _key(settings: Settings) -> tuple[int, int]:
    """Keyed by pid too: a forked child must not reuse its parent's pooled connections.

    id() is only unique while the object lives: a later Settings at a freed one's address would
    inherit its database, so an entry is forgotten when its Settings is collected.
    """
    key = (id(settings), os.getpid())
    if key not in _sessions and key not in _storages:
        weakref.finalize(settings, _forget, key)
    return key


def _forget(key: tuple[int, int]) -> None:
    with _lock:
        _sessions.pop(key, None)
        _storages.pop(key, None)


def sessions(settings: Settings | None = None) -> sessionmaker[Session]:
    settings = settings or current_settings()
    with _lock:
        factory = _sessions.get(_key(settings))
        if factory is None:
            from openlipsync.store.db import open_database

            factory = _sessions[_key(settings)] = open_database(settings)
        return factory


def storage(settings: Settings | None = None) -> Storage:
    settings = settings or current_settings()
    with _lock:
        store = _storages.get(_key(settings))
        if store is None:
            from openlipsync.store.files import open_storage

            store = _storages[_key(settings)] = open_storage(settings)
        return store
