"""The media floor: how fast we can decode, and decode + re-encode, with no model in between.

No lip-sync engine can beat these numbers, so they bound the whole pipeline's speed.

    .venv/bin/python bench/media_floor.py [VIDEO] [--seconds 6] [--sizes 720,1080]

For VIDEO (default: the GRID clip) and for synthetic 720p/1080p versions made by upscaling it
(written to /tmp, looped to --seconds), each measurement runs in a fresh subprocess so its
peak RSS is its own. The machine is shared, so it also prints CPU time per frame (all threads),
which does not depend on the load:

* decode:  VideoReader -> RGB frames
* floor:   VideoReader -> VideoWriter (H.264 CRF 18 veryfast + AAC), the render pass minus model
* bounce:  FrameSource serving a bounce timeline twice the clip's length (disk cache path)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from openlipsync.media.audio import load_audio  # noqa: E402
from openlipsync.media.encode import VideoWriter  # noqa: E402
from openlipsync.media.timeline import plan_timeline  # noqa: E402
from openlipsync.media.video import FrameSource, VideoReader  # noqa: E402

GRID = REPO.parent / "shared" / "media" / "video" / "grid_bbaf2n.mpg"
SIZES = {"360": (640, 360), "720": (1280, 720), "1080": (1920, 1080)}


def upscale(src: Path, height: str, seconds: float) -> Path:
    """An H.264 copy of `src` at 720p/1080p, looped to `seconds`, cached in /tmp."""
    width, rows = SIZES[height]
    dst = Path(tempfile.gettempdir()) / f"openlipsync_floor_{src.stem}_{height}p_{seconds:g}s.mp4"
    if dst.exists():
        return dst
    with av.open(str(src)) as inp:
        frames = [f.reformat(width, rows, "yuv420p") for f in inp.decode(video=0)]
    count = int(seconds * 25)
    with av.open(str(dst), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = width, rows, "yuv420p"
        stream.options = {"preset": "veryfast", "crf": "20"}
        for i in range(count):
            frame = frames[i % len(frames)]
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return dst


def run_case(kind: str, path: Path) -> dict:
    started, cpu_started = time.perf_counter(), time.process_time()
    frames = 0
    if kind == "decode":
        with VideoReader(path) as reader:
            for _ in reader:
                frames += 1
    elif kind == "floor":
        audio = load_audio(GRID, 48000)
        out = Path(tempfile.gettempdir()) / "openlipsync_floor_out.mp4"
        with VideoReader(path) as reader:
            info = reader.info
            with VideoWriter(out, info.width, info.height, info.fps, audio) as writer:
                for frame in reader:
                    writer.write(frame)
            frames = writer.frames
        out.unlink(missing_ok=True)
    elif kind == "bounce":
        with FrameSource(path) as source:
            audio = load_audio(GRID).padded_to(2 * source.info.duration)
            timeline = plan_timeline(len(source), source.info.fps, audio, "bounce")
            for index in timeline.src_index:
                source.get(int(index))
                frames += 1
    seconds = time.perf_counter() - started
    cpu_ms = (time.process_time() - cpu_started) * 1000 / max(frames, 1)
    return {
        "kind": kind,
        "frames": frames,
        "fps": frames / seconds,
        "cpu_ms_per_frame": cpu_ms,
        "peak_rss_mb": peak_rss_mb(),
    }


def peak_rss_mb() -> float:
    """VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent across exec."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("video", nargs="?", type=Path, default=GRID)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--sizes", default="720,1080")
    parser.add_argument("--case", nargs=2, metavar=("KIND", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case[0], Path(args.case[1]))))
        return
    inputs = [args.video] + [upscale(GRID, s, args.seconds) for s in args.sizes.split(",") if s]
    load = os.getloadavg()[0]
    print(f"load average {load:.1f} on {os.cpu_count()} cores: fps shrinks with load,")
    print("CPU ms/frame (summed over threads) does not")
    print(f"{'input':<44} {'case':<7} {'frames':>6} {'fps':>8} {'CPU ms/fr':>9} {'peak RSS':>9}")
    for path in inputs:
        for kind in ("decode", "floor", "bounce"):
            result = subprocess.run(
                [sys.executable, __file__, "--case", kind, str(path)],
                capture_output=True,
                text=True,
                check=True,
            )
            r = json.loads(result.stdout.strip().splitlines()[-1])
            print(
                f"{path.name:<44} {kind:<7} {r['frames']:>6} {r['fps']:>8.1f} "
                f"{r['cpu_ms_per_frame']:>9.1f} {r['peak_rss_mb']:>7.0f}MB"
            )


if __name__ == "__main__":
    main()
