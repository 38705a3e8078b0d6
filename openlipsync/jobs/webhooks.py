"""Signed webhook notifications through a database outbox.

The outbox row is written in the same transaction as the status change it announces, so a
notification can be late but never lost or invented. Delivery is at least once: the body and the
`Sync-Delivery-Id` stay the same across retries (receivers deduplicate on the id) while the
signature is recomputed with a fresh timestamp each time (spec §15).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from openlipsync.jobs.fetch import FetchError, checked_address, pinned_request, policy_for
from openlipsync.settings import Settings
from openlipsync.store.models import Organization, WebhookDelivery, new_id, utcnow

log = logging.getLogger(__name__)

USER_AGENT = "openlipsync-webhooks/1"


def plain_numbers(value: Any) -> Any:
    """Integral floats as ints: Python prints 9.0 where JavaScript prints 9, and receivers that
    re-serialise the parsed body before checking the signature must reproduce our exact bytes."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: plain_numbers(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain_numbers(item) for item in value]
    return value


def compact_json(payload: Any) -> str:
    """The exact body we sign and send: compact, ASCII only, no integral floats."""
    return json.dumps(
        plain_numbers(payload), separators=(",", ":"), ensure_ascii=True, allow_nan=False
    )


def signature(secret: str, body: bytes, timestamp: int) -> str:
    """`t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>` (spec §15.2)."""
    digest = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def record(
    session: Session,
    *,
    organization_id: str,
    url: str,
    payload: dict[str, Any],
    generation_id: str | None = None,
    batch_id: str | None = None,
) -> WebhookDelivery:
    """Add an outbox row to the caller's transaction (it commits with the status change)."""
    delivery = WebhookDelivery(
        id=new_id(),  # known before the flush: the caller sends it after the commit
        organization_id=organization_id,
        generation_id=generation_id,
        batch_id=batch_id,
        url=url,
        payload=compact_json(payload),
        next_attempt_at=utcnow(),
    )
    session.add(delivery)
    return delivery


@dataclass
class Outcome:
    """What one delivery attempt achieved; `retry_in` is set when another attempt is due."""

    state: str  # delivered | retry | failed | skipped
    retry_in: float | None = None
    detail: str = ""


def deliver(session: Session, delivery_id: str, settings: Settings) -> Outcome:
    """Make one attempt at an outbox row, unless another worker holds it or it is finished."""
    lease = settings.webhook_timeout_seconds * 2 + 5
    now = utcnow()
    claimed = session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.id == delivery_id,
            WebhookDelivery.delivered_at.is_(None),
            WebhookDelivery.failed_at.is_(None),
            WebhookDelivery.next_attempt_at <= now,
        )
        .values(
            attempts=WebhookDelivery.attempts + 1,
            next_attempt_at=now + timedelta(seconds=lease),
        )
    )
    session.commit()
    if claimed.rowcount != 1:
        return Outcome("skipped")
    delivery = session.get(WebhookDelivery, delivery_id)
    assert delivery is not None
    session.refresh(delivery)
    secret = session.scalar(
        select(Organization.webhook_secret).where(Organization.id == delivery.organization_id)
    )
    error, retryable = _post(delivery, secret or "", settings)
    if error is None:
        delivery.delivered_at = utcnow()
        delivery.last_error = None
        session.commit()
        return Outcome("delivered")
    delivery.last_error = error[:2000]
    if not retryable or delivery.attempts >= settings.webhook_max_attempts:
        delivery.failed_at = utcnow()
        session.commit()
        log.warning("webhook %s to %s given up: %s", delivery.id, delivery.url, error)
        return Outcome("failed", detail=error)
    delay = settings.webhook_backoff_seconds * 2 ** (delivery.attempts - 1)
    delivery.next_attempt_at = utcnow() + timedelta(seconds=delay)
    session.commit()
    return Outcome("retry", retry_in=delay, detail=error)


def _post(delivery: WebhookDelivery, secret: str, settings: Settings) -> tuple[str | None, bool]:
    """(error or None, whether a later attempt could succeed)."""
    body = delivery.payload.encode("ascii")
    sig = signature(secret, body, int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "Sync-Signature": sig,
        "X-Signature-Primary": sig,
        "Sync-Delivery-Id": delivery.id,
        "User-Agent": USER_AGENT,
    }
    timeout = settings.webhook_timeout_seconds
    try:
        url = httpx.URL(delivery.url)
        address = checked_address(url, policy_for(settings.allow_private_urls), timeout)
        with httpx.Client(timeout=timeout, trust_env=False) as client:
            request = pinned_request(client, "POST", url, address, headers=headers, content=body)
            response = client.send(request, follow_redirects=False)
    except FetchError as exc:
        return exc.message, exc.reason not in ("blocked", "invalid_url")
    except httpx.InvalidURL as exc:
        return f"invalid webhook URL: {exc}", False
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}: {exc}", True
    if 200 <= response.status_code < 300:
        return None, False
    retryable = response.status_code >= 500 or response.status_code in (408, 425, 429)
    return f"receiver answered HTTP {response.status_code}", retryable


def due_deliveries(session: Session, grace_seconds: float) -> list[str]:
    """Outbox rows whose task message was lost (broker down, worker killed mid-retry)."""
    cutoff = utcnow() - timedelta(seconds=grace_seconds)
    return list(
        session.scalars(
            select(WebhookDelivery.id).where(
                WebhookDelivery.delivered_at.is_(None),
                WebhookDelivery.failed_at.is_(None),
                WebhookDelivery.next_attempt_at <= cutoff,
            )
        )
    )
