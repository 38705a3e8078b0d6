"""HDR input (media/hdr.py): what the tone-mapping costs at 720p and 1080p.

For each size, an SDR clip (bench/engine.py's `make_input`: the Pexels face, looped) and its
HLG twin (10-bit HEVC as phones record, made by tests/media_helpers.hdr_variant). In this one
process, alternating `--repeat` times, median of each:

* decode: the HLG twin's pictures from `VideoReader` (decode + tone-mapping to 8-bit SDR)
  against a plain PyAV decode of the same file with swscale's 10 -> 8-bit conversion (all that
  a reader without tone-mapping would do): milliseconds per frame, wall and CPU, and the ratio.
* engine (`--engine`): a lipsync-2 generation of the SDR clip and of its HLG twin: real-time
  factor and the ratio (HEVC 10-bit decodes slower than H.264 too: both are in it).

    python -m bench.hdr [--seconds 6] [--sizes 720,1080] [--repeat 3] [--engine]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import av

from bench.engine import _cpu_seconds, _load_engine, engine_run, make_input
from tests.media_helpers import hdr_variant


def plain_decode(clip: Path) -> tuple[float, float, int]:
    """(wall s, CPU s, frames) of decoding `clip` to 8-bit 4:2:0 with swscale."""
    wall, cpu, frames = time.perf_counter(), _cpu_seconds(), 0
    with av.open(str(clip)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            frame.reformat(format="yuv420p")
            frames += 1
    return time.perf_counter() - wall, _cpu_seconds() - cpu, frames


def tone_mapped_decode(clip: Path) -> tuple[float, float, int]:
    from openlipsync.media.video import VideoReader

    wall, cpu, frames = time.perf_counter(), _cpu_seconds(), 0
    with VideoReader(clip) as reader:
        for _picture in reader.pictures():
            frames += 1
    return time.perf_counter() - wall, _cpu_seconds() - cpu, frames


def _per_frame(runs: list[tuple[float, float, int]]) -> tuple[float, float]:
    wall = statistics.median(r[0] / r[2] for r in runs) * 1000
    cpu = statistics.median(r[1] / r[2] for r in runs) * 1000
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--sizes", default="720,1080")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--engine", action="store_true", help="also time whole generations")
    args = parser.parse_args()
    if args.engine:
        _load_engine()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for size in (int(s) for s in args.sizes.split(",")):
            sdr = make_input(size, args.seconds, folder / f"sdr{size}.mp4")
            count = round(args.seconds * 25)
            hlg = hdr_variant(sdr, folder / f"hlg{size}.mp4", "hlg", count)
            plain, mapped = [], []
            for _ in range(args.repeat):
                plain.append(plain_decode(hlg))
                mapped.append(tone_mapped_decode(hlg))
            (pw, pc), (mw, mc) = _per_frame(plain), _per_frame(mapped)
            print(
                f"{size}p decode ms/frame (wall, CPU): plain 10->8 bit {pw:.1f}, {pc:.1f}; "
                f"tone-mapped {mw:.1f}, {mc:.1f}; ratio {mw / pw:.2f}x wall, {mc / pc:.2f}x CPU"
            )
            if args.engine:
                rtf = {"sdr": [], "hlg": []}
                for _ in range(args.repeat):
                    for name, clip in (("sdr", sdr), ("hlg", hlg)):
                        run = engine_run(clip, folder / f"out_{name}.mp4", "lipsync-2")
                        rtf[name].append(run["seconds"] / (run["frames"] / run["fps_video"]))
                s, h = statistics.median(rtf["sdr"]), statistics.median(rtf["hlg"])
                print(f"{size}p engine RTF: SDR {s:.2f}, HLG {h:.2f}; ratio {h / s:.2f}x")


if __name__ == "__main__":
    main()
