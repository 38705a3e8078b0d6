"""Rate and concurrency limits, enforced through the shared database across API processes."""

from __future__ import annotations

import concurrent.futures
import time

import httpx
import test_api_support as support
from test_api_support import url_body

database_url = support.database_url  # fixture
server_factory = support.server_factory  # fixture


def fresh_window() -> None:
    """Fixed one-minute windows: start well inside one so the counts are deterministic."""
    if time.time() % 60 > 55:
        time.sleep(60 - time.time() % 60 + 0.1)


def test_rate_limit_is_shared_by_two_api_nodes(server_factory, tmp_path) -> None:  # type: ignore[no-untyped-def]
    # Two servers over one database (and one data_dir, as nodes would share storage).
    first = server_factory(data_dir=tmp_path, rate_limit_other_per_minute=10)
    with first.app.state.sessions() as session:
        from openlipsync.store.keys import create_key

        key, _ = create_key(session, "shared")
    second = server_factory(data_dir=tmp_path, rate_limit_other_per_minute=10)
    statuses = []
    fresh_window()
    for index in range(14):
        node = first if index % 2 else second
        with node.client(key) as http:
            statuses.append(http.get("/v2/models"))
    codes = [r.status_code for r in statuses]
    assert codes.count(200) == 10 and codes.count(429) == 4, codes
    limited = statuses[-1]
    body = limited.json()
    assert body == {
        "statusCode": 429,
        "message": "Rate limit exceeded. Please try again later.",
        "error": "Too Many Requests",
        "errorCode": "rate_limit_exceeded",
    }
    assert 1 <= int(limited.headers["Retry-After"]) <= 30


def test_generate_has_its_own_stricter_limit(server_factory) -> None:  # type: ignore[no-untyped-def]
    live = server_factory(rate_limit_generate_per_minute=3)
    fresh_window()
    with live.client() as http:
        codes = [http.post("/v2/generate", json=url_body()).status_code for _ in range(5)]
        assert codes == [201, 201, 201, 429, 429]
        assert http.get("/v2/generations").status_code == 200  # other endpoints unaffected


def test_concurrency_limit_counts_pending_and_processing(server_factory) -> None:  # type: ignore[no-untyped-def]
    live = server_factory(concurrency_limit=3)
    with live.client() as http:

        def create(_: int) -> httpx.Response:
            return http.post("/v2/generate", json=url_body())

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            responses = list(pool.map(create, range(8)))
        codes = sorted(r.status_code for r in responses)
        assert codes == [201] * 3 + [429] * 5, codes
        refused = next(r for r in responses if r.status_code == 429)
        assert refused.json()["errorCode"] == "concurrency_limit_reached"
        assert refused.headers["Retry-After"].isdigit()
        # Finishing one frees a slot; the refused requests left no rows behind.
        assert len(http.get("/v2/generations").json()) == 3
        from sqlalchemy import update

        from openlipsync.store.models import Generation

        done = next(r for r in responses if r.status_code == 201).json()["id"]
        with live.app.state.sessions() as session:
            session.execute(
                update(Generation).where(Generation.id == done).values(status="COMPLETED")
            )
            session.commit()
        assert create(0).status_code == 201
        # The other organisation has its own budget.
        with live.client(live.other_key) as other:
            assert other.post("/v2/generate", json=url_body()).status_code == 201


def test_batch_concurrency_limit(server_factory) -> None:  # type: ignore[no-untyped-def]
    import json

    live = server_factory(batch_concurrency_limit=1)
    lines = "\n".join(
        json.dumps({"request_id": f"r{i}", "endpoint": "/v2/generate", "payload": url_body()})
        for i in range(20)
    ).encode()
    with live.client() as http:
        first = http.post("/v2/batch", files={"input": ("upload", lines)})
        assert first.status_code == 201
        second = http.post("/v2/batch", files={"input": ("upload", lines)})
        assert second.status_code == 429
        assert second.json()["errorCode"] == "concurrency_limit_reached"
        dry = http.post("/v2/batch", data={"dry_run": "true"}, files={"input": ("upload", lines)})
        assert dry.status_code == 201  # validation does not start a batch
