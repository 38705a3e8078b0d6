"""Load run on loopback: N concurrent clients each create one small generation and poll it.

A real API process (`openlipsync serve --no-worker`) and real worker processes
(`openlipsync worker`) on the embedded SQLite default, then on PostgreSQL + Redis (the services
of this machine, in a private database and key prefix). Inputs are a one-second, 180-pixel cut
of a real GRID clip and one second of real speech fetched over loopback HTTP, so the engine does
its full work on few pixels. Each client is an asyncio task on one shared httpx pool.

Rate limits are per API key; the run spreads its clients over `--keys` keys (each its own
organisation) and raises the per-key limits so the figures measure the service, not the limiter
(the settings used are printed). A 429 is still honoured (Retry-After) and counted.

Every generation must be accounted for: exactly one row per client, all COMPLETED or FAILED with
a code, nothing left PENDING/PROCESSING, one stored output per COMPLETED one, and no 5xx.

    .venv/bin/python bench/load.py                       # 200 clients, sqlite then pg
    .venv/bin/python bench/load.py --clients 100 --backends sqlite
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.test_jobs_helpers import new_organization, open_db  # noqa: E402
from tests.test_scale_helpers import (  # noqa: E402
    PG,
    REDIS,
    Deployment,
    deployment,
    port_open,
    postgres_database,
    redis_broker,
)
from tests.tiny_media import AUDIO_NAME, VIDEO_NAME, file_server, make_tiny_inputs  # noqa: E402

TERMINAL = ("COMPLETED", "FAILED", "REJECTED")
TRANSPORT_RETRIES = 3
LIMITS = {  # per key / per organisation; see the module docstring
    "rate_limit_generate_per_minute": 1000,
    "rate_limit_other_per_minute": 10_000,
    "concurrency_limit": 1000,
}


@dataclass
class Load:
    """What the clients saw."""

    clients: int
    ids: list[str | None] = field(default_factory=list)
    final: dict[str, dict[str, Any]] = field(default_factory=dict)
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    retried: Counter[str] = field(default_factory=Counter)
    create_ms: list[float] = field(default_factory=list)
    get_ms: list[float] = field(default_factory=list)
    wall: float = 0.0
    load_average: tuple[float, float, float] = (0.0, 0.0, 0.0)

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())

    def count_5xx(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500)

    def summary(self, label: str) -> str:
        outcome = Counter(body["status"] for body in self.final.values())
        return (
            f"{label}: {self.clients} clients, {self.requests} requests in {self.wall:.1f} s "
            f"= {self.requests / self.wall:.0f} req/s; create p50 {_pct(self.create_ms, 50):.0f} "
            f"ms p99 {_pct(self.create_ms, 99):.0f} ms; poll p50 {_pct(self.get_ms, 50):.0f} ms "
            f"p99 {_pct(self.get_ms, 99):.0f} ms; 429: {self.statuses[429]}; "
            f"5xx: {self.count_5xx()}; transport errors: {sum(self.errors.values())} "
            f"(retried {dict(self.retried)}); "
            f"outcome {dict(outcome)}; load average {self.load_average[0]:.2f}"
        )


def _pct(values: list[float], percent: int) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[percent - 1]


async def _request(
    client: httpx.AsyncClient, load: Load, timings: list[float], method: str, url: str, **kw: Any
) -> httpx.Response | None:
    """One request; waits out a 429 (Retry-After) and repeats it, counting every answer.

    A transport error is retried too (GETs are idempotent, creates carry an Idempotency-Key):
    a pooled keep-alive connection the server closed just as it was reused fails this way.
    """
    failures = 0
    while True:
        started = time.perf_counter()
        try:
            response = await client.request(method, url, **kw)
        except httpx.TransportError as exc:
            load.retried[type(exc).__name__] += 1
            failures += 1
            if failures > TRANSPORT_RETRIES:
                load.errors[type(exc).__name__] += 1
                return None
            await asyncio.sleep(0.2)
            continue
        timings.append((time.perf_counter() - started) * 1000)
        load.statuses[response.status_code] += 1
        if response.status_code != 429:
            return response
        await asyncio.sleep(float(response.headers.get("Retry-After", "1")))


async def _one_client(
    index: int,
    client: httpx.AsyncClient,
    key: str,
    media: str,
    load: Load,
    poll_seconds: float,
    deadline: float,
) -> None:
    body = {
        "model": "lipsync-1.9.0-beta",
        "input": [
            {"type": "video", "url": f"{media}/{VIDEO_NAME}"},
            {"type": "audio", "url": f"{media}/{AUDIO_NAME}"},
        ],
        "options": {"sync_mode": "cut_off"},
    }
    headers = {"x-api-key": key, "Idempotency-Key": f"load-{index}"}
    created = await _request(
        client, load, load.create_ms, "POST", "/v2/generate", json=body, headers=headers
    )
    if created is None or created.status_code not in (200, 201):
        return
    generation_id = created.json()["id"]
    load.ids[index] = generation_id
    while time.monotonic() < deadline:
        await asyncio.sleep(poll_seconds)
        response = await _request(
            client, load, load.get_ms, "GET", f"/v2/generate/{generation_id}",
            headers={"x-api-key": key},
        )  # fmt: skip
        finished = response is not None and response.status_code == 200
        if finished and response.json()["status"] in TERMINAL:
            load.final[generation_id] = response.json()
            return


async def drive(
    base_url: str, keys: list[str], media: str, clients: int, poll_seconds: float, timeout: float
) -> Load:
    """`clients` concurrent clients, round-robin over `keys`; returns what they saw."""
    load = Load(clients, ids=[None] * clients)
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    started = time.monotonic()
    async with httpx.AsyncClient(base_url=base_url, timeout=60, limits=limits) as client:
        await asyncio.gather(
            *(
                _one_client(
                    i, client, keys[i % len(keys)], media, load, poll_seconds, started + timeout
                )
                for i in range(clients)
            )
        )
    load.wall = time.monotonic() - started
    load.load_average = os.getloadavg()
    return load


def extra_keys(cluster: Deployment, count: int) -> list[str]:
    """`count` API keys, each of its own organisation (the deployment's key first)."""
    sessions = open_db(cluster.settings)
    return [cluster.api_key] + [new_organization(sessions)[0] for _ in range(count - 1)]


def problems(cluster: Deployment, load: Load) -> list[str]:
    """Everything that makes the run unaccounted for; empty when every generation is."""
    from sqlalchemy import func, select

    from openlipsync.store.models import Generation

    found: list[str] = []
    created = [gid for gid in load.ids if gid]
    if len(created) != load.clients:
        found.append(f"{load.clients - len(created)} clients could not create a generation")
    if len(set(created)) != len(created):
        found.append("two clients got the same generation id")
    missing = set(created) - set(load.final)
    if missing:
        found.append(f"{len(missing)} generations never reached a terminal status")
    if load.count_5xx() or load.errors:
        found.append(f"5xx {load.count_5xx()}, transport errors {dict(load.errors)}")
    for body in load.final.values():
        if body["status"] != "COMPLETED" and not body.get("error_code"):
            found.append(f"{body['id']} {body['status']} without an error_code")
    with open_db(cluster.settings)() as session:
        rows = session.execute(
            select(Generation.status, func.count()).group_by(Generation.status)
        ).all()
    by_status = dict(rows)
    if sum(by_status.values()) != load.clients:
        found.append(f"{sum(by_status.values())} rows in the database for {load.clients} clients")
    if by_status.get("PENDING") or by_status.get("PROCESSING"):
        found.append(f"left unfinished in the database: {by_status}")
    storage = Path(cluster.settings.storage_url)
    for generation_id, body in load.final.items():
        folder = storage / "generations" / generation_id
        outputs = len(list(folder.rglob("*.mp4"))) if folder.exists() else 0
        if outputs != (1 if body["status"] == "COMPLETED" else 0):
            found.append(f"{generation_id} {body['status']} has {outputs} stored outputs")
    return found


@contextmanager
def backend(name: str, root: Path, workers: int) -> Iterator[Deployment]:
    """A deployment on the embedded SQLite default or on PostgreSQL + Redis."""
    with ExitStack() as stack:
        overrides: dict[str, Any] = dict(LIMITS)
        if name == "pg":
            overrides["database_url"] = stack.enter_context(postgres_database())
            broker_url, prefix = stack.enter_context(redis_broker())
            overrides.update(broker_url=broker_url, broker_key_prefix=prefix)
        yield stack.enter_context(deployment(root / name, workers, **overrides))


def run(
    name: str, clients: int, keys: int, workers: int, scratch: Path, poll: float, timeout: float
) -> tuple[Load, list[str]]:
    make_tiny_inputs(scratch / "media")
    with file_server(scratch / "media") as media, backend(name, scratch, workers) as cluster:
        load = asyncio.run(
            drive(cluster.base_url, extra_keys(cluster, keys), media, clients, poll, timeout)
        )
        return load, problems(cluster, load)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--keys", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2, help="openlipsync worker processes")
    parser.add_argument("--poll", type=float, default=1.0, help="seconds between polls")
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--backends", nargs="+", default=["sqlite", "pg"], choices=["sqlite", "pg"])
    args = parser.parse_args(argv)
    print(f"limits raised per key/organisation: {LIMITS}; {args.keys} keys", flush=True)
    failed = False
    for name in args.backends:
        if name == "pg" and not (port_open(PG) and port_open(REDIS)):
            print("pg: skipped (needs PostgreSQL at 127.0.0.1:5432 and Redis at :6379)")
            continue
        with tempfile.TemporaryDirectory(prefix=f"olps-load-{name}-") as scratch:
            load, found = run(
                name, args.clients, args.keys, args.workers, Path(scratch), args.poll, args.timeout
            )
        print(load.summary(name), flush=True)
        for problem in found[:20]:
            print(f"  PROBLEM: {problem}")
        failed = failed or bool(found)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
