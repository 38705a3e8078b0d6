"""Engine speed: frames per second, real-time factor and peak memory at 360p, 720p and 1080p.

Each figure is measured in a child process (so peak RSS is that run's own) and compared, in the
same run, with the floor: a plain decode + encode of the same input, the decoded pictures handed
straight to the same encoder with the same settings. The floor through RGB that earlier notes
used (every frame converted to RGB and back, 15-30 % slower here) is printed beside it. The engine's
child is a worker that has run a job: its modules (MediaPipe included) imported and a short
job run before the clock starts (once per size, a new process's first job is timed too).
Besides wall time, CPU time per frame (all threads) is printed: on a shared machine wall time
shrinks with the others' load, CPU time much less so. `--repeat N` alternates floor and engine
N times and adds the median.

    python bench/engine.py [--seconds 8] [--sizes 360,720,1080] [--model lipsync-2] [--repeat 1]
                           [--source ../shared/media/video/grid_bbaf2n.mpg] [--decoding-baseline]
    python bench/engine.py --photo ../shared/media/photo/obama.jpg [--repeat N]
    python bench/engine.py --variants    # each model and per-frame option against lipsync-2
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

REPO = Path(__file__).resolve().parents[1]
MEDIA = REPO.parent / "shared" / "media"
SOURCE = MEDIA / "video" / "pexels_woman_expressions.mp4"
SPEECH = MEDIA / "speech" / "jfk_inaugural.flac"


def make_input(height: int, seconds: float, out: Path, source: Path = SOURCE) -> Path:
    """Scale a real clip to `height` (25 fps H.264, looped to `seconds`) so every size shows the
    same face."""
    width = round(16 / 9 * height / 2) * 2
    count = round(seconds * 25)
    with av.open(str(out), "w") as dst:
        stream = dst.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "18", "preset": "veryfast"}
        index = 0
        while index < count:
            with av.open(str(source)) as src:
                for frame in src.decode(video=0):
                    if index >= count:
                        break
                    scaled = frame.reformat(width=width, height=height, format="yuv420p")
                    scaled.pts, scaled.time_base = index, Fraction(1, 25)
                    for packet in stream.encode(scaled):
                        dst.mux(packet)
                    index += 1
        for packet in stream.encode():
            dst.mux(packet)
    return out


def floor_run(video: Path, out: Path, model: str) -> dict:
    """The floor: the decoded pictures handed to the same encoder with the engine's settings
    for `model`, nothing in between (no conversion: the engine converts only the mouth)."""
    from openlipsync.benchmark import floor_run as floor

    run = floor(video, out, model)
    return {"seconds": run.seconds, "frames": run.frames, "fps_video": run.fps}


def photo_floor_run(photo: Path, out: Path, model: str) -> dict:
    """A photo's floor: its one picture encoded as many times as the engine's output has
    frames (SPEECH's length), with the same settings."""
    from openlipsync.benchmark import photo_floor_run as floor
    from openlipsync.media.probe import probe

    frames = round(probe(SPEECH).audio.duration * probe(photo).video.fps)
    run = floor(photo, out, model, frames)
    return {"seconds": run.seconds, "frames": run.frames, "fps_video": run.fps}


def rgb_floor_run(video: Path, out: Path, model: str) -> dict:
    """The floor of earlier sessions: every frame through RGB and back, as the render pass did
    until it painted the mouth on the decoder's planes (kept to compare with their notes)."""
    from openlipsync.engine.presets import preset_for
    from openlipsync.media.encode import VideoWriter
    from openlipsync.media.video import VideoReader

    preset = preset_for(model)
    began = time.perf_counter()
    with VideoReader(video) as reader:
        info = reader.info
        writer = VideoWriter(
            out, info.width, info.height, info.fps, None, crf=preset.crf, preset=preset.x264
        )
        with writer:
            for frame in reader:
                writer.write(frame)
        frames = writer.close()
    return {"seconds": time.perf_counter() - began, "frames": frames, "fps_video": info.fps}


def _load_engine(warm: bool = True, model: str = "lipsync-2") -> None:
    """Import what a running worker has loaded already, before the clocks start (wall and CPU:
    MediaPipe's import alone costs about 2 s of CPU, 10 ms per frame of an 8 s clip). `warm`:
    and run a job first, a GRID clip, as a worker has (its graphs are kept: engine/graphs.py)."""
    import mediapipe  # noqa: F401 - the tracker imports it on first use; a worker has it loaded

    import openlipsync.engine.pipeline  # noqa: F401

    if warm:
        from openlipsync.engine import GenerateRequest, generate

        with tempfile.TemporaryDirectory() as tmp:
            grid = MEDIA / "video" / "grid_bbaf2n.mpg"
            generate(GenerateRequest(grid, SPEECH, Path(tmp) / "warm.mp4", model=model))


def engine_run(video: Path, out: Path, model: str) -> dict:
    """One generation in a process whose modules are loaded, as in a running worker."""
    from openlipsync.engine import GenerateRequest, generate

    starts: dict[str, float] = {}

    def progress(stage: str, _fraction: float) -> None:
        starts.setdefault(stage, time.perf_counter())

    began = time.perf_counter()
    request = GenerateRequest(video, SPEECH, out, sync_mode="cut_off", model=model)
    result = generate(request, progress=progress)
    ended = time.perf_counter()
    return {
        "seconds": ended - began,
        "frames": result.frame_count,
        "fps_video": result.fps,
        "stages": result.stage_seconds,
        "phases": _phases(began, starts, ended),
    }


# Models and options whose own stages run per frame (effects, speaker search, occlusion, ...).
VARIANTS: list[tuple[str, dict]] = [
    ("lipsync-2", {}),
    ("lipsync-2", {"occlusion_detection_enabled": True}),
    ("lipsync-2", {"active_speaker_detection": {"auto_detect": True}}),
    ("sync-3", {}),
    ("lipsync-2-pro", {}),
    ("lipsync-1.9.0-beta", {}),
    ("react-1", {"prompt": "happy"}),
    ("react-1", {"model_mode": "head"}),
    ("react-1", {"model_mode": "head", "prompt": "angry"}),
]


def variant_runs(video: Path, out: Path) -> list[dict]:
    """Every VARIANTS entry on `video`, one after another in this warm process."""
    from openlipsync.engine import GenerateRequest, generate

    runs = []
    for model, options in VARIANTS:
        began = time.perf_counter()
        request = GenerateRequest(video, SPEECH, out, "cut_off", model=model, options=options)
        result = generate(request)
        seconds = time.perf_counter() - began
        runs.append(
            {
                "model": model,
                "options": options,
                "seconds": seconds,
                "rtf": seconds * result.fps / result.frame_count,
            }
        )
    return runs


def _phases(began: float, starts: dict[str, float], ended: float) -> dict[str, float]:
    """Wall seconds of each pass, from the first progress report of each stage: "start" runs
    until the first frame is tracked, "analysis" until planning begins, "render" to the end."""
    marks = [("start", began)] + [
        (name, starts[stage])
        for name, stage in (("analysis", "track"), ("plan", "plan"), ("render", "render"))
        if stage in starts
    ]
    ends = [at for _, at in marks[1:]] + [ended]
    return {name: end - at for (name, at), end in zip(marks, ends, strict=True)}


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def child(kind: str, video: str, out: str, model: str) -> None:
    if kind.startswith("floor"):
        import openlipsync.media.encode  # noqa: F401 - outside the clocks, as for the engine
        import openlipsync.media.video  # noqa: F401
    else:
        _load_engine(warm=kind != "engine-cold", model=model)
        if kind == "engine-decoding":  # the render pass decodes everything again, as it used to
            import openlipsync.media.kept

            openlipsync.media.kept.KEPT_BYTES = 0
    if kind == "variants":
        print(json.dumps(variant_runs(Path(video), Path(out))))
        return
    cpu = _cpu_seconds()
    runs = {"floor": floor_run, "floor-rgb": rgb_floor_run, "floor-photo": photo_floor_run}
    run = runs.get(kind, engine_run)(Path(video), Path(out), model)
    run["cpu"] = _cpu_seconds() - cpu
    run["peak_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(run))


def measure(kind: str, video: Path, out: Path, model: str) -> dict:
    cmd = [sys.executable, __file__, "--child", kind, str(video), str(out), model]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=REPO)
    return json.loads(done.stdout.strip().splitlines()[-1])


def report(label: str, floor: dict, engine: dict, rgb_floor: dict | None = None) -> float:
    """Print one run's figures; returns engine/floor (wall)."""
    duration = engine["frames"] / engine["fps_video"]
    rtf, floor_rtf = engine["seconds"] / duration, floor["seconds"] / duration
    stages = " ".join(
        f"{name}={seconds / engine['frames'] * 1000:.1f}ms"
        for name, seconds in sorted(engine.get("stages", {}).items())
    )
    fps = engine["frames"] / engine["seconds"]
    cpu, floor_cpu = (run["cpu"] / run["frames"] * 1000 for run in (engine, floor))
    print(
        f"{label:>6}  frames={engine['frames']:4d}  engine {fps:6.1f} fps"
        f"  RTF {rtf:5.2f}  floor RTF {floor_rtf:5.2f}  engine/floor {rtf / floor_rtf:4.2f}x"
        f"  peak {engine['peak_mib']:.0f} MiB (floor {floor['peak_mib']:.0f})\n"
        f"        CPU {cpu:.1f} ms/frame (floor {floor_cpu:.1f}, ratio {cpu / floor_cpu:.2f}x)"
        f"  load {os.getloadavg()[0]:.1f}\n"
        f"        per frame (wall, stages overlap on threads): {stages}"
    )
    if engine.get("phases"):
        phases = "  ".join(f"{name} {seconds:.2f}" for name, seconds in engine["phases"].items())
        print(f"        passes (wall s): {phases}  (floor {floor['seconds']:.2f})")
    if rgb_floor is not None:
        print(
            f"        floor through RGB (earlier sessions' floor) {rgb_floor['seconds']:.2f} s:"
            f" engine/that {engine['seconds'] / rgb_floor['seconds']:.2f}x"
        )
    return rtf / floor_rtf


def photo_runs(photo: Path, model: str, repeat: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(repeat):
            floor = measure("floor-photo", photo, Path(tmp) / "floor.mp4", model)
            engine = measure("engine", photo, Path(tmp) / "out.mp4", model)
            report("photo", floor, engine)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--sizes", default="360,720,1080")
    parser.add_argument("--model", default="lipsync-2")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument(
        "--source",
        type=Path,
        default=SOURCE,
        help="clip to scale (default: the Pexels face, whose mouth a hand covers for most of the "
        "first 8 s, so most frames pass through; a GRID clip has a mouth to render throughout)",
    )
    parser.add_argument(
        "--decoding-baseline",
        action="store_true",
        help="also run the engine with no frames kept from the analysis (media/kept.py), so the "
        "render pass decodes again: the gain of keeping them, measured in the same run",
    )
    parser.add_argument(
        "--photo",
        type=Path,
        help="instead of the sizes: this photo driven by the 11 s speech (blinks and head "
        "motion on every frame), against its picture encoded as often",
    )
    parser.add_argument(
        "--variants",
        action="store_true",
        help="instead of the sizes: each model and per-frame option at 720p, one warm process, "
        "against plain lipsync-2 (the first row)",
    )
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    np.set_printoptions(precision=2)
    if args.photo:
        photo_runs(args.photo, args.model, args.repeat)
        return
    if args.variants:
        with tempfile.TemporaryDirectory() as tmp:
            video = make_input(720, args.seconds, Path(tmp) / "in.mp4", args.source)
            runs = measure("variants", video, Path(tmp) / "out.mp4", args.model)
        for run in runs:
            ratio = run["seconds"] / runs[0]["seconds"]
            options = json.dumps(run["options"]) if run["options"] else ""
            print(f"{run['model']:20} {options:58} RTF {run['rtf']:5.2f}  {ratio:4.2f}x lipsync-2")
        return
    with tempfile.TemporaryDirectory() as tmp:
        for height in (int(s) for s in args.sizes.split(",")):
            video = make_input(height, args.seconds, Path(tmp) / f"in_{height}.mp4", args.source)
            ratios, rtfs = [], []
            for _ in range(args.repeat):
                floor = measure("floor", video, Path(tmp) / f"floor_{height}.mp4", args.model)
                rgb = measure("floor-rgb", video, Path(tmp) / f"rgb_{height}.mp4", args.model)
                engine = measure("engine", video, Path(tmp) / f"out_{height}.mp4", args.model)
                ratios.append(report(f"{height}p", floor, engine, rgb))
                if not ratios[:-1]:  # once: the first job of a new process
                    cold = measure("engine-cold", video, Path(tmp) / "cold.mp4", args.model)
                    print(
                        f"        first job of a new process (graphs made, first calls):"
                        f" {cold['seconds']:.2f} s, start {cold['phases'].get('start', 0):.2f} s"
                        f" ({cold['seconds'] / floor['seconds']:.2f}x the floor)"
                    )
                if args.decoding_baseline:
                    again = measure("engine-decoding", video, Path(tmp) / "again.mp4", args.model)
                    print("        decoding again (no kept frames):", end="")
                    report(f"{height}p", floor, again)
                rtfs.append(engine["seconds"] * engine["fps_video"] / engine["frames"])
            if args.repeat > 1:
                print(
                    f"{height:>5}p  median of {args.repeat}: RTF {statistics.median(rtfs):.2f}"
                    f"  engine/floor {statistics.median(ratios):.2f}x"
                )


if __name__ == "__main__":
    main()
