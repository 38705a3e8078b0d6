"""Scale-out: wall time of N small generations with 1 worker process, then with 2 (one run).

Each configuration is a fresh deployment (API + workers as separate processes on PostgreSQL and
Redis, inputs fetched over HTTP), warmed up with one generation per worker so model loading is
not counted; then N generations (3 s GRID clips, `cut_off`) are submitted at once through the
official SDK and timed from the first submission to the last COMPLETED. The speed-up is bounded
by the machine's cores: on 2 cores shared with other work expect well under 2x.

    .venv/bin/python bench/scale.py --generations 8
    .venv/bin/python bench/scale.py --generations 12 --workers 1 2 4
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.test_scale_helpers import (  # noqa: E402
    PG,
    REDIS,
    deployment,
    media_server,
    port_open,
    postgres_database,
    redis_broker,
    submit,
)


def run(workers: int, generations: int, media: str, scratch: Path) -> float:
    """Seconds from the first submission to the last completion with `workers` processes."""
    with postgres_database() as database_url, redis_broker() as (broker_url, prefix):
        overrides = {"database_url": database_url, "broker_url": broker_url}
        with deployment(scratch, workers, broker_key_prefix=prefix, **overrides) as cluster:
            warm = [submit(cluster, media, index) for index in range(workers)]
            cluster.wait_terminal(warm, 600)
            started = time.monotonic()
            ids = [submit(cluster, media, index) for index in range(generations)]
            done = cluster.wait_terminal(ids, 1800)
            elapsed = time.monotonic() - started
    failed = [gid for gid, body in done.items() if body["status"] != "COMPLETED"]
    if failed:
        raise SystemExit(f"{len(failed)} generations did not complete: {failed}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generations", type=int, default=8)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    for name, address in (("PostgreSQL", PG), ("Redis", REDIS)):
        if not port_open(address):
            print(f"needs {name} at {address[0]}:{address[1]}", file=sys.stderr)
            return 2
    results: dict[int, float] = {}
    with media_server() as media, tempfile.TemporaryDirectory(prefix="olps-scale-") as tmp:
        for workers in args.workers:
            seconds = run(workers, args.generations, media, Path(tmp) / f"w{workers}")
            results[workers] = seconds
            print(
                f"{workers} worker(s): {args.generations} generations in {seconds:.1f} s "
                f"({args.generations / seconds * 60:.1f}/min)",
                flush=True,
            )
    base = results[args.workers[0]]
    print(f"cpu cores: {os.cpu_count()}  load average: {os.getloadavg()[0]:.1f}")
    for workers, seconds in results.items():
        print(f"speed-up with {workers} worker(s): {base / seconds:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
