"""Scale-out: wall time of N small generations with 1 worker process, then with 2 (one run);
with --long, one long 720p job split into chunks on 1, 2 and 4 workers (bench/scale_long.py).

Each configuration is a fresh deployment (API + workers as separate processes on PostgreSQL and
Redis, inputs fetched over HTTP), warmed up with one generation per worker so model loading is
not counted; then N generations (3 s GRID clips, `cut_off`) are submitted at once through the
official SDK and timed from the first submission to the last COMPLETED. The speed-up is bounded
by the machine's cores: on 2 cores shared with other work expect well under 2x.

    .venv/bin/python bench/scale.py --generations 8
    .venv/bin/python bench/scale.py --generations 12 --workers 1 2 4
    .venv/bin/python bench/scale.py --long 120 --workers 1 2 4 --chunk-seconds 15
"""

from __future__ import annotations

import argparse
import os
import signal
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


def _interrupted(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generations", type=int, default=8)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--long", type=float, default=0.0, help="seconds of the long job")
    parser.add_argument("--chunk-seconds", type=float, default=15.0)
    parser.add_argument("--out", type=Path, default=REPO / "out" / "scale")
    parser.add_argument(
        "--one-core-each",
        action="store_true",
        help="pin each worker to one core (taskset): N one-core machines instead of N processes "
        "sharing every core",
    )
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, _interrupted)  # tear the deployments down on `kill`
    for name, address in (("PostgreSQL", PG), ("Redis", REDIS)):
        if not port_open(address):
            print(f"needs {name} at {address[0]}:{address[1]}", file=sys.stderr)
            return 2
    if args.long > 0:
        return long_job(args.long, args.workers, args.chunk_seconds, args.out, args.one_core_each)
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


def long_job(
    seconds: float, workers: list[int], chunk_seconds: float, out: Path, one_core_each: bool
) -> int:
    """The single-pass reference first (1 worker, chunking off), then chunked runs."""
    from bench.scale_long import (
        borders,
        build_source,
        compare,
        measurable,
        mouth_continuity,
        run_long,
        source_cuts,
    )

    out.mkdir(parents=True, exist_ok=True)
    video, speech = build_source(out, seconds)
    print(f"source: {video.name} ({video.stat().st_size >> 20} MB), {speech.name}", flush=True)
    if one_core_each:
        print("each worker pinned to one core of its own (one-core machines)", flush=True)
    runs = []
    configs = [(1, 0.0)] + [(n, chunk_seconds) for n in workers]
    with media_server(out) as files, media_server() as media:
        for count, chunk in configs:
            with tempfile.TemporaryDirectory(prefix="olps-long-") as tmp:
                names = (video.name, speech.name)
                run = run_long(count, chunk, files, media, names, Path(tmp), one_core_each)
                kept = out / f"output_w{count}_c{chunk:g}.mp4"
                run.output.replace(kept)
                run.output = kept
            runs.append(run)
            label = "single pass" if chunk == 0 else f"chunks of {chunk:g} s"
            print(
                f"{count} worker(s), {label}: {run.seconds:.1f} s, worker CPU "
                f"{run.cpu_seconds:.0f} s (load average after: {run.load_after:.1f}); "
                f"{run.phases}",
                flush=True,
            )
    reference, base = runs[0], runs[1]
    print(f"cpu cores: {os.cpu_count()}  load average now: {os.getloadavg()[0]:.1f}")
    for run in runs[1:]:
        print(
            f"{run.workers} worker(s) chunked: {base.seconds / run.seconds:.2f}x vs 1 worker "
            f"chunked, {reference.seconds / run.seconds:.2f}x vs the single pass"
        )
    frame_count = round(seconds * 25)
    cuts = borders(frame_count, chunk_seconds)
    last = runs[-1]
    psnr = compare(reference.output, last.output, cuts)
    print(
        f"{last.workers}-worker output vs single pass, {psnr['frames']} frames, borders {cuts}: "
        f"PSNR at borders (+-2 frames) mean {psnr['border_mean']:.2f} dB, "
        f"min {psnr['border_min']:.2f}; elsewhere mean {psnr['other_mean']:.2f} dB, "
        f"min {psnr['other_min']:.2f}"
    )
    clean = measurable(cuts, source_cuts(seconds))
    mouth = mouth_continuity(reference.output, last.output, clean, out / "border_sheet.png")
    print(
        f"dlib inner-lip opening (eye distances) at the {len(clean)} borders {clean} away from "
        "the source's own scene cuts: step across a border "
        f"mean {mouth['border_step_mean']:.4f}, max {mouth['border_step_max']:.4f}; "
        f"all steps near borders median {mouth['step_median']:.4f}, "
        f"p90 {mouth['step_p90']:.4f}; largest difference from the single pass "
        f"{mouth['max_gap_vs_single']:.4f}"
    )
    print(f"contact sheet: {out / 'border_sheet.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
