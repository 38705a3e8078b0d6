"""The Celery application, built from Settings so the API, workers and CLI share one config.

One process works for one set of Settings: `configure(settings)` builds the app (and registers the
tasks on it); anything that needs the app before that gets one built from the environment.
Celery's own `celery -A openlipsync.jobs.celery_app worker` also works through the lazy `app`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from celery import Celery, bootsteps
from kombu import Queue

from openlipsync.settings import Settings, get_settings

ENGINE_QUEUE = "engine"
DEFAULT_QUEUE = "default"
# Thumbnails and URL assets' downloads (jobs/thumbnails.py), for the service worker too, but
# in a queue of their own: it takes from its queues in turn, so a backlog of downloads (a
# library of URLs registered at once) cannot hold webhooks and batches up behind it.
ASSETS_QUEUE = "assets"

# How soon a worker's event loop notices a stop request (see WakeUp).
WAKE_UP_SECONDS = 0.5

_app: Celery | None = None
_settings: Settings | None = None


def _broker_options(broker_url: str, settings: Settings) -> dict[str, Any]:
    """Short connect timeouts: a dead broker must fail a publish fast, not hang a request."""
    if broker_url.startswith("sqla+"):
        from openlipsync.jobs import sql_broker

        sql_broker.use(settings.broker_polling_seconds)
        return {"connect_args": {"timeout": 30}} if "sqlite" in broker_url else {}
    if broker_url.startswith(("redis://", "rediss://")):
        return {
            "socket_connect_timeout": 2,
            "socket_timeout": 10,
            "visibility_timeout": max(3600, int(settings.generation_timeout_seconds) * 2),
            "global_keyprefix": settings.broker_key_prefix,
        }
    return {}


def _build(settings: Settings) -> Celery:
    broker_url = settings.resolved_broker_url()
    if broker_url.startswith("sqla+sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    app = Celery("openlipsync", broker=broker_url, set_as_current=False)
    app.conf.update(
        broker_transport_options=_broker_options(broker_url, settings),
        broker_connection_timeout=2,
        broker_connection_retry_on_startup=True,
        task_ignore_result=True,
        result_backend=None,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_publish_retry=False,
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        task_default_queue=DEFAULT_QUEUE,
        task_queues=(Queue(ENGINE_QUEUE), Queue(DEFAULT_QUEUE), Queue(ASSETS_QUEUE)),
        task_routes={
            "openlipsync.generate": {"queue": ENGINE_QUEUE},
            "openlipsync.render_chunk": {"queue": ENGINE_QUEUE},
            "openlipsync.join_chunks": {"queue": ENGINE_QUEUE},
            "openlipsync.make_thumbnail": {"queue": ASSETS_QUEUE},
            "openlipsync.*": {"queue": DEFAULT_QUEUE},
        },
        beat_schedule={
            "reap": {
                "task": "openlipsync.reap",
                "schedule": settings.reaper_interval_seconds,
                "options": {"queue": DEFAULT_QUEUE, "expires": settings.reaper_interval_seconds},
            }
        },
        timezone="UTC",
        enable_utc=True,
    )
    app.steps["worker"].add(WakeUp)
    from openlipsync.jobs.tasks import register_tasks

    register_tasks(app)
    if broker_url.startswith("sqla+sqlite:///"):
        from openlipsync.jobs.sql_broker import declare_sqlite_queues

        declare_sqlite_queues(app, Path(broker_url.removeprefix("sqla+sqlite:///")))
    return app


class WakeUp(bootsteps.StartStopStep):
    """A no-op timer every WAKE_UP_SECONDS on the worker's event loop.

    The loop checks for a requested shutdown only between polls, and a signal does not cut a
    poll short (PEP 475): with nothing due for a while (an idle worker on RabbitMQ, whose
    heartbeats are off) it sleeps up to 10 s, so a SIGTERM took 4-10 s to begin the warm
    shutdown, as long as `docker stop` waits before it kills."""

    requires = {"celery.worker.components:Hub"}

    def start(self, worker: Any) -> None:
        if getattr(worker, "hub", None) is not None:
            worker.hub.call_repeatedly(WAKE_UP_SECONDS, _nothing)


def _nothing() -> None:
    return None


def configure(settings: Settings) -> Celery:
    """Make `settings` this process's job configuration and return the matching Celery app."""
    global _app, _settings
    if _app is not None and _settings is settings:
        return _app
    _settings = settings
    _app = _build(settings)
    return _app


def current_app() -> Celery:
    if _app is None:
        return configure(current_settings())
    return _app


def current_settings() -> Settings:
    global _settings
    if _settings is None:
        _settings = get_settings()
    return _settings


def __getattr__(name: str) -> Any:
    # Lets `celery -A openlipsync.jobs.celery_app worker` find an app built from the environment.
    if name in ("app", "celery"):
        return current_app()
    raise AttributeError(name)
