"""Prometheus metrics computed from the database at scrape time.

Every API node and worker shares one database, so reading the numbers from it (instead of
counting in process memory) gives the same cluster-wide answer from any API node, survives
restarts and needs no multi-process collector. Each scrape runs a handful of aggregate queries
on indexed columns; the broker queue length is one passive declare with a 2 s timeout.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import ColumnElement, Float, case, cast, extract, func, or_, select
from sqlalchemy.orm import Session

from openlipsync import __version__
from openlipsync.api import readiness
from openlipsync.settings import Settings
from openlipsync.store.models import (
    SPLIT_STAGES,
    Generation,
    GenerationChunk,
    WebhookDelivery,
    utcnow,
)

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
STATUSES = ("PENDING", "PROCESSING", "COMPLETED", "FAILED", "REJECTED")
DURATION_BUCKETS = (0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
FPS_WINDOW_SECONDS = 3600.0
# Outputs keep the source frame rate, which the row does not store; 25 fps is the default the
# cost estimate uses too, so the gauge is "nominal frames" rendered per wall-clock second.
NOMINAL_FPS = 25.0


@dataclass
class Metric:
    """One metric family in the text exposition format."""

    name: str
    kind: str  # counter | gauge | histogram
    help: str
    samples: list[tuple[str, dict[str, str], float]] = field(default_factory=list)

    def add(self, value: float, suffix: str = "", **labels: str) -> None:
        self.samples.append((self.name + suffix, labels, value))

    def render(self) -> str:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]
        for name, labels, value in self.samples:
            lines.append(f"{name}{_labels(labels)} {_number(value)}")
        return "\n".join(lines)


def render(session: Session, settings: Settings) -> str:
    """The full exposition text for one scrape."""
    families = [
        _info(),
        _generations_by_status(session),
        _stale_processing(session, settings),
        *_queue_depth(session, settings),
        _duration_histogram(session),
        _engine_fps(session),
        _webhooks(session),
    ]
    return "\n".join(family.render() for family in families) + "\n"


def _info() -> Metric:
    metric = Metric("openlipsync_info", "gauge", "Version of the node answering the scrape.")
    metric.add(1, version=__version__)
    return metric


def _generations_by_status(session: Session) -> Metric:
    counts = dict.fromkeys(STATUSES, 0)
    rows = session.execute(select(Generation.status, func.count()).group_by(Generation.status))
    counts.update({status: count for status, count in rows})
    metric = Metric("openlipsync_generations", "gauge", "Generations in the database by status.")
    for status, count in sorted(counts.items()):
        metric.add(count, status=status)
    return metric


def _stale_processing(session: Session, settings: Settings) -> Metric:
    stale = utcnow() - timedelta(seconds=settings.job_stale_seconds)
    plain = session.scalar(
        select(func.count()).where(
            Generation.status == "PROCESSING",
            Generation.heartbeat_at < stale,
            or_(Generation.stage.is_(None), Generation.stage.not_in(SPLIT_STAGES)),
        )
    )
    # A generation split into chunks may wait for free workers: only a dead chunk makes it stale.
    split = session.scalar(
        select(func.count(func.distinct(GenerationChunk.generation_id))).where(
            GenerationChunk.status == "PROCESSING", GenerationChunk.heartbeat_at < stale
        )
    )
    metric = Metric(
        "openlipsync_generations_stale",
        "gauge",
        "PROCESSING generations whose worker stopped heartbeating (the reaper resumes them).",
    )
    metric.add((plain or 0) + (split or 0))
    return metric


def _queue_depth(session: Session, settings: Settings) -> list[Metric]:
    depth = Metric(
        "openlipsync_queue_depth",
        "gauge",
        "Generations waiting for a worker: PENDING rows (database) and engine queue messages "
        "(broker).",
    )
    pending = session.scalar(select(func.count()).where(Generation.status == "PENDING"))
    depth.add(pending or 0, source="database")
    broker_up = Metric("openlipsync_broker_up", "gauge", "1 when the broker answered this scrape.")
    try:
        depth.add(readiness.broker_queue_length(settings), source="broker")
        broker_up.add(1)
    except Exception as exc:  # a scrape must still answer when the broker is down
        log.warning("metrics: broker queue length unavailable: %s", exc)
        broker_up.add(0)
    return [depth, broker_up]


def _seconds_between(session: Session, start: ColumnElement, end: ColumnElement) -> ColumnElement:
    """`end - start` in seconds, in the dialect's own date arithmetic."""
    if session.get_bind().dialect.name == "postgresql":
        return extract("epoch", end - start)
    return (func.julianday(end) - func.julianday(start)) * 86400.0


def _duration_histogram(session: Session) -> Metric:
    seconds = _seconds_between(session, Generation.started_at, Generation.finished_at)
    columns = [func.sum(case((seconds <= bound, 1), else_=0)) for bound in DURATION_BUCKETS]
    rows = session.execute(
        select(Generation.status, func.count(), func.sum(cast(seconds, Float)), *columns)
        .where(
            Generation.status.in_(("COMPLETED", "FAILED")),
            Generation.started_at.is_not(None),
            Generation.finished_at.is_not(None),
        )
        .group_by(Generation.status)
    ).all()
    metric = Metric(
        "openlipsync_generation_duration_seconds",
        "histogram",
        "Wall time of the last processing attempt of finished generations.",
    )
    by_status = {row[0]: row for row in rows}
    for status in ("COMPLETED", "FAILED"):
        row = by_status.get(status)
        count, total, buckets = (row[1], row[2] or 0.0, row[3:]) if row else (0, 0.0, ())
        _histogram_samples(metric, status, count, total, [int(b or 0) for b in buckets])
    return metric


def _histogram_samples(
    metric: Metric, status: str, count: int, total: float, buckets: Sequence[int]
) -> None:
    cumulative_counts = list(buckets) or [0] * len(DURATION_BUCKETS)
    for bound, cumulative in zip(DURATION_BUCKETS, cumulative_counts, strict=True):
        metric.add(cumulative, "_bucket", status=status, le=repr(float(bound)))
    metric.add(count, "_bucket", status=status, le="+Inf")
    metric.add(total, "_sum", status=status)
    metric.add(count, "_count", status=status)


def _engine_fps(session: Session) -> Metric:
    since = utcnow() - timedelta(seconds=FPS_WINDOW_SECONDS)
    seconds = _seconds_between(session, Generation.started_at, Generation.finished_at)
    rows = session.execute(
        select(Generation.model, func.sum(Generation.output_duration), func.sum(seconds))
        .where(
            Generation.status == "COMPLETED",
            Generation.finished_at >= since,
            Generation.started_at.is_not(None),
            Generation.output_duration.is_not(None),
        )
        .group_by(Generation.model)
    ).all()
    metric = Metric(
        "openlipsync_engine_frames_per_second",
        "gauge",
        f"Output frames (at a nominal {NOMINAL_FPS:g} fps) per wall-clock second of one worker, "
        f"over generations completed in the last {FPS_WINDOW_SECONDS:g} s.",
    )
    for model, output_seconds, wall_seconds in rows:
        if wall_seconds and wall_seconds > 0:
            fps = float(output_seconds or 0.0) * NOMINAL_FPS / float(wall_seconds)
            metric.add(round(fps, 3), model=model)
    return metric


def _webhooks(session: Session) -> Metric:
    state = case(
        (WebhookDelivery.delivered_at.is_not(None), "delivered"),
        (WebhookDelivery.failed_at.is_not(None), "failed"),
        (WebhookDelivery.attempts > 0, "retrying"),
        else_="pending",
    )
    counts = dict.fromkeys(("delivered", "failed", "retrying", "pending"), 0)
    rows = session.execute(select(state, func.count()).group_by(state))
    counts.update({name: count for name, count in rows})
    metric = Metric(
        "openlipsync_webhook_deliveries",
        "gauge",
        "Webhook outbox rows: delivered, failed for good, retrying after an error, pending.",
    )
    for name, count in sorted(counts.items()):
        metric.add(count, state=name)
    return metric


def _labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{key}="{_escape(value)}"' for key, value in labels.items()) + "}"


def _escape(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value))
    return repr(float(value))


def family_names(text: str) -> Iterable[str]:
    """The metric family names of an exposition (for tests and debugging)."""
    return [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")]
