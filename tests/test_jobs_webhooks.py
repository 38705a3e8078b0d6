"""Webhook outbox, signing and delivery against real local receivers."""

from __future__ import annotations

from pathlib import Path

import pytest
from sync.core.pydantic_utilities import parse_obj_as
from sync.webhooks import GenerationNotification

from openlipsync.jobs import webhooks
from openlipsync.jobs.generation import finish, worker_token
from openlipsync.store.files import open_storage
from openlipsync.store.models import WebhookDelivery
from tests.test_jobs_helpers import (
    add_generation,
    job_settings,
    new_organization,
    open_db,
    verify_signature,
    webhook_receiver,
)


def test_compact_json_has_no_integral_floats_and_is_ascii() -> None:
    body = webhooks.compact_json({"a": 9.0, "b": [1.5, 2.0, {"c": 0.0}], "d": "é", "e": True})
    assert body == '{"a":9,"b":[1.5,2,{"c":0}],"d":"\\u00e9","e":true}'


def test_signature_matches_the_spec_reference() -> None:
    assert webhooks.signature("whsec_x", b'{"a":1}', 1700000000) == (
        "t=1700000000,v1="
        + __import__("hmac").new(b"whsec_x", b'1700000000.{"a":1}', "sha256").hexdigest()
    )


@pytest.fixture
def deployment(tmp_path: Path):  # type: ignore[no-untyped-def]
    settings = job_settings(tmp_path)
    sessions = open_db(settings)
    _key, org_id, secret = new_organization(sessions)
    return settings, sessions, open_storage(settings), org_id, secret


def _completed_with_webhook(deployment, url: str) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    settings, sessions, storage, org_id, _secret = deployment
    token = worker_token()
    storage.put_bytes("generations/x/output.mp4", b"\x00" * 10)
    generation_id = add_generation(
        sessions,
        org_id,
        status="PROCESSING",
        worker_id=token,
        webhook_url=url,
        input=[{"type": "video", "url": "https://example.com/v.mp4"}],
    )
    with sessions() as session:
        done = finish(
            session,
            generation_id,
            "COMPLETED",
            storage,
            settings,
            token=token,
            output_key="generations/x/output.mp4",
            output_duration=3.0,
        )
    assert done is not None and done.delivery_id is not None
    return generation_id, done.delivery_id


def test_signed_delivery_retried_after_a_500_with_one_delivery_id(deployment) -> None:  # type: ignore[no-untyped-def]
    settings, sessions, _storage, _org, secret = deployment
    with webhook_receiver([500]) as receiver:
        generation_id, delivery_id = _completed_with_webhook(deployment, receiver.url)
        with sessions() as session:
            first = webhooks.deliver(session, delivery_id, settings)
            assert first.state == "retry" and first.retry_in == pytest.approx(0.2)
            # Not due yet: a duplicate message must not cause an early second POST.
            assert webhooks.deliver(session, delivery_id, settings).state == "skipped"
        __import__("time").sleep(0.25)
        with sessions() as session:
            assert webhooks.deliver(session, delivery_id, settings).state == "delivered"
            assert webhooks.deliver(session, delivery_id, settings).state == "skipped"
            row = session.get(WebhookDelivery, delivery_id)
            assert row is not None and row.attempts == 2 and row.delivered_at is not None
    assert len(receiver.requests) == 2
    ids = {r.headers["Sync-Delivery-Id"] for r in receiver.requests}
    assert ids == {delivery_id}
    assert receiver.requests[0].body == receiver.requests[1].body
    payload = verify_signature(secret, receiver.requests[1])
    assert payload["id"] == generation_id
    assert payload["status"] == "COMPLETED"
    assert payload["outputDuration"] == 3 and b'"outputDuration":3,' in receiver.requests[1].body
    assert payload["outputUrl"].startswith("http")
    assert "segments" not in payload
    notification = parse_obj_as(GenerationNotification, payload)  # as the official SDK parses
    assert notification.status == "COMPLETED"


def test_a_4xx_answer_is_not_retried(deployment) -> None:  # type: ignore[no-untyped-def]
    settings, sessions, *_ = deployment
    with webhook_receiver([410]) as receiver:
        _gid, delivery_id = _completed_with_webhook(deployment, receiver.url)
        with sessions() as session:
            outcome = webhooks.deliver(session, delivery_id, settings)
    assert outcome.state == "failed" and "410" in outcome.detail


def test_an_unreachable_receiver_gives_up_after_max_attempts(deployment) -> None:  # type: ignore[no-untyped-def]
    settings, sessions, *_ = deployment
    settings.webhook_max_attempts = 3
    settings.webhook_backoff_seconds = 0.0
    with webhook_receiver() as receiver:
        dead_url = receiver.url
    _gid, delivery_id = _completed_with_webhook(deployment, dead_url)
    states = []
    with sessions() as session:
        for _ in range(4):
            states.append(webhooks.deliver(session, delivery_id, settings).state)
    assert states == ["retry", "retry", "failed", "skipped"]


def test_webhooks_to_private_addresses_are_refused(deployment) -> None:  # type: ignore[no-untyped-def]
    settings, sessions, *_ = deployment
    with webhook_receiver() as receiver:
        _gid, delivery_id = _completed_with_webhook(deployment, receiver.url)
        settings.allow_private_urls = False
        with sessions() as session:
            outcome = webhooks.deliver(session, delivery_id, settings)
    assert outcome.state == "failed" and "non-public" in outcome.detail
    assert receiver.requests == []


def test_no_outbox_row_without_a_webhook_url(deployment) -> None:  # type: ignore[no-untyped-def]
    settings, sessions, storage, org_id, _ = deployment
    token = worker_token()
    generation_id = add_generation(sessions, org_id, status="PROCESSING", worker_id=token)
    with sessions() as session:
        done = finish(
            session,
            generation_id,
            "FAILED",
            storage,
            settings,
            token=token,
            error="x",
            error_code="generation_no_face_detected",
        )
        assert done is not None and done.delivery_id is None
        # A second finish (duplicate run) changes nothing.
        again = finish(session, generation_id, "COMPLETED", storage, settings, token=token)
        assert again is None
