"""HTTP API throughput and latency: create, get and list under concurrent clients.

Starts the API in a separate uvicorn process (no worker attached, so the numbers measure the
API and the database, not the engine), drives it over loopback with bounded concurrency from
httpx, and prints requests/s with p50/p99 latency per scenario.

    .venv/bin/python bench/api.py --requests 400 --concurrency 16
    .venv/bin/python bench/api.py --database-url postgresql+psycopg://postgres@127.0.0.1/bench
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
BODY = {
    "model": "lipsync-2",
    "input": [
        {"type": "video", "url": "https://media.example/v.mp4"},
        {"type": "audio", "url": "https://media.example/a.wav"},
    ],
    "options": {"sync_mode": "cut_off"},
}


def app_factory():  # type: ignore[no-untyped-def]
    """Used by the uvicorn child: the API without a job queue (creates stay PENDING)."""
    from openlipsync.api.app import create_app
    from openlipsync.api.enqueue import NoEnqueue

    return create_app(enqueue=NoEnqueue())


@dataclass
class Result:
    name: str
    latencies: list[float]
    errors: int
    seconds: float

    def line(self) -> str:
        ordered = sorted(self.latencies) or [0.0]
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
        rate = len(self.latencies) / self.seconds if self.seconds else 0.0
        return (
            f"{self.name:<7} {rate:8.1f} req/s   p50 {statistics.median(ordered) * 1000:7.1f} ms"
            f"   p99 {p99 * 1000:7.1f} ms   n={len(self.latencies)} errors={self.errors}"
        )


async def run(
    name: str, total: int, concurrency: int, call: Callable[[int], Awaitable[httpx.Response]]
) -> Result:
    latencies: list[float] = []
    errors = 0
    counter = iter(range(total))

    async def worker() -> None:
        nonlocal errors
        for index in counter:
            started = time.perf_counter()
            response = await call(index)
            latencies.append(time.perf_counter() - started)
            if response.status_code >= 400:
                errors += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return Result(name, latencies, errors, time.perf_counter() - started)


async def bench(base_url: str, key: str, total: int, concurrency: int) -> list[Result]:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    headers = {"x-api-key": key}
    async with httpx.AsyncClient(
        base_url=base_url, headers=headers, limits=limits, timeout=60
    ) as client:
        created: list[str] = []

        async def create(_: int) -> httpx.Response:
            response = await client.post("/v2/generate", json=BODY)
            if response.status_code == 201:
                created.append(response.json()["id"])
            return response

        results = [await run("create", total, concurrency, create)]

        async def get(index: int) -> httpx.Response:
            return await client.get(f"/v2/generate/{created[index % len(created)]}")

        results.append(await run("get", total, concurrency, get))

        async def listing(_: int) -> httpx.Response:
            return await client.get("/v2/generations", params={"limit": 20, "status": "PENDING"})

        results.append(await run("list", total, concurrency, listing))
    return results


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=400, help="per scenario")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    parser.add_argument("--database-url", default="", help="default: SQLite in a temp dir")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(REPO))
    from openlipsync.settings import Settings
    from openlipsync.store.db import open_database
    from openlipsync.store.keys import create_key

    with tempfile.TemporaryDirectory(prefix="ols-bench-") as data_dir:
        port = free_port()
        env = {
            **os.environ,
            "OPENLIPSYNC_DATA_DIR": data_dir,
            "OPENLIPSYNC_DATABASE_URL": args.database_url,
            "OPENLIPSYNC_PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
            "OPENLIPSYNC_RATE_LIMIT_GENERATE_PER_MINUTE": "1000000000",
            "OPENLIPSYNC_RATE_LIMIT_OTHER_PER_MINUTE": "1000000000",
            "OPENLIPSYNC_CONCURRENCY_LIMIT": "1000000000",
            "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'bench'}",
        }
        settings = Settings(data_dir=Path(data_dir), database_url=args.database_url)
        with open_database(settings)() as session:
            key, _ = create_key(session, "bench")
        command = [
            sys.executable, "-m", "uvicorn", "api:app_factory", "--factory",
            "--host", "127.0.0.1", "--port", str(port), "--workers", str(args.workers),
            "--log-level", "warning", "--no-access-log",
        ]  # fmt: skip
        server = subprocess.Popen(command, env=env, cwd=REPO / "bench")
        try:
            base_url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"{base_url}/health", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline or server.poll() is not None:
                    print("the API did not start", file=sys.stderr)
                    return 1
                time.sleep(0.2)
            backend = "postgresql" if args.database_url else "sqlite"
            print(
                f"openlipsync API bench: {backend}, {args.workers} uvicorn worker(s), "
                f"{args.concurrency} concurrent clients, {args.requests} requests per scenario"
            )
            for result in asyncio.run(bench(base_url, key, args.requests, args.concurrency)):
                print(result.line())
        finally:
            server.terminate()
            server.wait(timeout=30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
