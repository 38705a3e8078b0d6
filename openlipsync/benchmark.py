"""How fast the engine runs on this machine, on the user's own clip: `openlipsync bench`.

Every figure is set against the floor measured in the same process on the same input: the
decoded pictures handed straight to the encoder with the engine's settings, nothing in
between. No lip-sync can be faster than that here, so the ratio says how much the lip-sync
itself costs, whatever the machine's speed. CPU time (all threads) is given beside wall time:
on a machine busy with other work, wall time moves with the load and CPU time much less.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import av

from openlipsync.engine import GenerateRequest, generate
from openlipsync.engine.presets import preset_for
from openlipsync.media.encode import VideoWriter
from openlipsync.media.probe import open_container, picture_stream, probe
from openlipsync.media.video import VideoReader


@dataclass
class Run:
    """One timed pass over a clip."""

    frames: int
    fps: float  # the clip's frame rate
    seconds: float = 0.0  # wall
    cpu_seconds: float = 0.0  # this process, all threads
    stage_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def rtf(self) -> float:
        """Real-time factor: processing seconds per second of output (under 1: faster)."""
        return self.seconds * self.fps / self.frames if self.frames else float("inf")

    @property
    def cpu_ms_per_frame(self) -> float:
        return self.cpu_seconds / self.frames * 1000 if self.frames else float("inf")


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_mib() -> float:
    """This process's peak resident memory so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@contextmanager
def timed(run: Run) -> Iterator[Run]:
    began, cpu = time.perf_counter(), cpu_seconds()
    yield run
    run.seconds, run.cpu_seconds = time.perf_counter() - began, cpu_seconds() - cpu


def floor_run(video: Path, output: Path, model: str) -> Run:
    """A video's floor: its decoded pictures encoded again, with `model`'s encoder settings."""
    preset = preset_for(model)
    with open_container(video) as container:
        stream = picture_stream(container)
        if stream is None:
            raise ValueError(f"{video.name}: no video stream")
        stream.thread_type = "AUTO"
        run = Run(frames=0, fps=float(stream.average_rate or stream.guessed_rate or 25))
        with timed(run):
            writer = VideoWriter(
                output, stream.width, stream.height, run.fps, None, preset.crf, preset.x264
            )
            with writer:
                for frame in container.decode(stream):
                    frame.pict_type = av.video.frame.PictureType.NONE  # x264 decides, as for ours
                    writer.write_picture(frame)
                run.frames = writer.close()
    return run


def photo_floor_run(photo: Path, output: Path, model: str, frames: int) -> Run:
    """A photo's floor: its one picture encoded `frames` times (the engine's output length)
    with `model`'s settings. The engine moves the head and blinks, so its frames cost the
    encoder more than these identical ones."""
    preset = preset_for(model)
    with VideoReader(photo) as reader:
        info = reader.info
        run = Run(frames=0, fps=info.fps)
        with timed(run):
            picture = next(iter(reader))
            writer = VideoWriter(
                output, info.width, info.height, info.fps, None, preset.crf, preset.x264
            )
            with writer:
                for _ in range(frames):
                    writer.write(picture)
                run.frames = writer.close()
    return run


def engine_run(request: GenerateRequest) -> Run:
    """One generation, as `openlipsync generate` or a worker runs it."""
    with timed(Run(frames=0, fps=0.0)) as run:
        result = generate(request)
    run.frames, run.fps, run.stage_seconds = result.frame_count, result.fps, result.stage_seconds
    return run


def floor_for(video: Path, output: Path, model: str, frames: int) -> Run:
    """The floor that fits `video`: a photo's, for an output of `frames` frames, or a video's."""
    info = probe(video).video
    if info is not None and info.is_still:
        return photo_floor_run(video, output, model, frames)
    return floor_run(video, output, model)


def rows(request: GenerateRequest, repeat: int, floor_output: Path) -> Iterator[dict]:
    """`repeat` generations of `request`, each beside a floor run, as report rows. The first
    generation of a process also builds the engine's graphs, as a worker's first job does."""
    for number in range(1, repeat + 1):
        engine = engine_run(request)
        floor = floor_for(request.video, floor_output, request.model, engine.frames)
        yield {
            "run": number,
            "frames": engine.frames,
            "fps": round(engine.frames / engine.seconds, 2),
            "rtf": round(engine.rtf, 3),
            "cpu_ms_per_frame": round(engine.cpu_ms_per_frame, 2),
            "floor_rtf": round(floor.rtf, 3),
            "floor_cpu_ms_per_frame": round(floor.cpu_ms_per_frame, 2),
            "engine_over_floor": round(engine.rtf / floor.rtf, 2),
            "stage_ms_per_frame": {
                stage: round(seconds / engine.frames * 1000, 2)
                for stage, seconds in sorted(engine.stage_seconds.items())
            },
        }


def describe(row: dict) -> str:
    """A report row for people."""
    first = " (first in this process: builds the graphs)" if row["run"] == 1 else ""
    stages = " ".join(f"{name} {ms}" for name, ms in row["stage_ms_per_frame"].items())
    return (
        f"run {row['run']}{first}: {row['frames']} frames, {row['fps']:.1f} fps, "
        f"RTF {row['rtf']:.2f} ({row['engine_over_floor']:.2f}x the floor's "
        f"{row['floor_rtf']:.2f}); CPU {row['cpu_ms_per_frame']:.1f} ms/frame "
        f"(floor {row['floor_cpu_ms_per_frame']:.1f})\n"
        f"  per stage, ms/frame (they overlap on threads): {stages}"
    )
