"""How the API hands work to the workers, swappable so tests can run without a broker.

The default looks up `openlipsync.jobs.dispatch` lazily: the API process should not pay for
importing Celery (or fail to start) just because the worker side is not installed yet.
"""

from __future__ import annotations

import logging
from typing import Protocol

from openlipsync.settings import Settings

log = logging.getLogger("openlipsync.api")


class Enqueue(Protocol):
    def generation(self, generation_id: str) -> None: ...
    def batch(self, batch_id: str) -> None: ...
    def thumbnail(self, asset_id: str) -> None: ...


class DispatchEnqueue:
    """Sends to the job queue through `openlipsync.jobs.dispatch`, on the app's own broker."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings

    def _configure(self) -> None:
        if self.settings is not None:
            from openlipsync.jobs.celery_app import configure

            configure(self.settings)

    def generation(self, generation_id: str) -> None:
        from openlipsync.jobs.dispatch import enqueue_generation

        self._configure()
        enqueue_generation(generation_id)

    def batch(self, batch_id: str) -> None:
        from openlipsync.jobs.dispatch import enqueue_batch

        self._configure()
        enqueue_batch(batch_id)

    def thumbnail(self, asset_id: str) -> None:
        from openlipsync.jobs.dispatch import send_thumbnail

        self._configure()
        send_thumbnail(asset_id)


class NoEnqueue:
    """Leaves new work PENDING in the database (no worker attached): API-only deployments/tests."""

    def __init__(self) -> None:
        self.generations: list[str] = []
        self.batches: list[str] = []
        self.thumbnails: list[str] = []

    def generation(self, generation_id: str) -> None:
        self.generations.append(generation_id)

    def batch(self, batch_id: str) -> None:
        self.batches.append(batch_id)

    def thumbnail(self, asset_id: str) -> None:
        self.thumbnails.append(asset_id)


def safely(enqueue: Enqueue, kind: str, item_id: str) -> None:
    """Enqueue after commit; a broker hiccup must not turn an accepted request into a 500
    (the client would retry and duplicate it). The row stays PENDING for the worker's sweep."""
    try:
        getattr(enqueue, kind)(item_id)
    except Exception:
        log.exception(
            "could not enqueue %s %s; it stays PENDING until re-dispatched", kind, item_id
        )
