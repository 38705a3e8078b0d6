"""Process logging: plain text for people, one JSON object per line for log pipelines.

`OPENLIPSYNC_LOG_FORMAT=json` switches every process (API, worker, CLI) to JSON lines so a
collector (Loki, CloudWatch, ...) can index them without parsing. Records emitted while a
generation is being worked on carry its id: the worker binds it once with `bind_generation`,
and every log call below it, in any module, picks it up from a context variable; code that
holds a generation id outside such a block can use `generation_logger` instead.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

LOG_FORMAT_ENV = "OPENLIPSYNC_LOG_FORMAT"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Loggers that servers configure with their own handlers (propagate=False).
SERVER_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "celery")

generation_id_var: ContextVar[str | None] = ContextVar("openlipsync_generation_id", default=None)

# Attributes every LogRecord has; anything else was passed through `extra=` and is kept.
_STANDARD_ATTRS = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", (), None)).keys()
    | {"message", "asctime", "color_message"}  # uvicorn's ANSI-coloured copy of the message
)


@contextmanager
def bind_generation(generation_id: str) -> Iterator[None]:
    """Tag every record logged in this context (thread or task) with `generation_id`."""
    token = generation_id_var.set(generation_id)
    try:
        yield
    finally:
        generation_id_var.reset(token)


def generation_logger(logger: logging.Logger, generation_id: str) -> logging.LoggerAdapter:
    """A logger whose records carry `generation_id` even outside `bind_generation`."""
    return logging.LoggerAdapter(logger, {"generation_id": generation_id})


class GenerationFilter(logging.Filter):
    """Copies the bound generation id onto records that do not name one themselves."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "generation_id", None) is None:
            record.generation_id = generation_id_var.get()
        return True


class JsonFormatter(logging.Formatter):
    """One compact JSON object per record; `extra=` fields are kept as top-level keys."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
        }
        generation_id = getattr(record, "generation_id", None) or generation_id_var.get()
        if generation_id:
            entry["generation_id"] = generation_id
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and key not in entry and key != "generation_id":
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def log_format() -> str:
    """`json` or `text` from the environment; anything unknown falls back to text."""
    value = os.environ.get(LOG_FORMAT_ENV, "text").strip().lower()
    return "json" if value == "json" else "text"


def make_formatter(fmt: str | None = None) -> logging.Formatter:
    return JsonFormatter() if (fmt or log_format()) == "json" else logging.Formatter(TEXT_FORMAT)


def configure_logging(fmt: str | None = None, level: int = logging.INFO) -> None:
    """Make the root logger write in the chosen format (idempotent).

    Without handlers, one stderr handler is added. Existing handlers (basicConfig, a test
    runner's) are re-formatted only for JSON, so the text default never disturbs them; either
    way they learn the generation id, and calling this twice never duplicates lines.
    """
    fmt = fmt or log_format()
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(make_formatter(fmt))
        root.addHandler(handler)
        root.setLevel(level)
    for handler in root.handlers:
        _adopt(handler, fmt if fmt == "json" else None)
    if fmt == "json":
        adopt_server_loggers(fmt)


def adopt_server_loggers(fmt: str | None = None) -> None:
    """Re-format the handlers uvicorn and Celery install on their own loggers.

    They configure logging when the server starts, after the app factory ran, so the API calls
    this again from a startup hook.
    """
    fmt = fmt or log_format()
    if fmt != "json":
        return
    for name in SERVER_LOGGERS:
        for handler in logging.getLogger(name).handlers:
            _adopt(handler, fmt)


def _adopt(handler: logging.Handler, fmt: str | None) -> None:
    """Add the generation filter; with `fmt`, also replace the handler's formatter."""
    if fmt is not None:
        handler.setFormatter(make_formatter(fmt))
    if not any(isinstance(existing, GenerationFilter) for existing in handler.filters):
        handler.addFilter(GenerationFilter())
