"""Query-string parsing shared by the list endpoints (spec §1.5), with 400s for junk input."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from fastapi import Request

from openlipsync.api.errors import bad_request
from openlipsync.api.validation import as_bool

MAX_MULTI_VALUES = 500


def multi(request: Request, key: str) -> list[str]:
    """Values of a list parameter sent as repeated keys, `a,b`, or a JSON array string."""
    values: list[str] = []
    for raw in request.query_params.getlist(key):
        raw = raw.strip()
        if raw.startswith("["):
            try:
                parsed = json.loads(raw)
            except ValueError:
                raise bad_request(
                    f"{key} must be a JSON array of strings, a list or a value"
                ) from None
            if not isinstance(parsed, list) or not all(isinstance(v, str) for v in parsed):
                raise bad_request(f"{key} must be a JSON array of strings")
            parts = parsed
        else:
            parts = raw.split(",")
        values.extend(part.strip() for part in parts if part.strip())
    if len(values) > MAX_MULTI_VALUES:
        raise bad_request(f"{key} accepts at most {MAX_MULTI_VALUES} values")
    return values


def enum_values(request: Request, key: str, allowed: tuple[str, ...]) -> list[str]:
    values = multi(request, key)
    wrong = [value for value in values if value not in allowed]
    if wrong:
        raise bad_request(f"{key} must be one of the following values: {', '.join(allowed)}")
    return values


def single(request: Request, key: str) -> str | None:
    value = request.query_params.get(key)
    if value is None or value.strip() == "":
        return None
    if len(value) > 1024:
        raise bad_request(f"{key} is too long")
    return value.strip()


def integer(request: Request, key: str, default: int | None, low: int, high: int) -> int | None:
    raw = single(request, key)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise bad_request(f"{key} must be an integer between {low} and {high}") from None
    if not low <= value <= high:
        raise bad_request(f"{key} must be an integer between {low} and {high}")
    return value


def boolean(request: Request, key: str) -> bool:
    raw = single(request, key)
    if raw is None:
        return False
    value = as_bool(raw) if raw not in ("1", "0") else raw == "1"
    if value is None:
        raise bad_request(f"{key} must be true or false")
    return value


def timestamp(request: Request, key: str) -> datetime | None:
    """ISO-8601 with `Z` or an offset (naive values are taken as UTC)."""
    raw = single(request, key)
    if raw is None:
        return None
    try:
        value = datetime.fromisoformat(raw.replace(" ", "+").replace("Z", "+00:00"))
    except ValueError:
        raise bad_request(
            f"{key} must be an ISO-8601 datetime, e.g. 2024-01-01T00:00:00Z"
        ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)
