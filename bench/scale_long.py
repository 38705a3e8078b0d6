"""One long job split into chunks: wall time with 1, 2 and 4 worker processes, and borders.

The source is real media made long: the GRID talking-head clips of ../shared/media, looped to
the wanted length and scaled to 1280x720 (900x720 picture, pillarboxed), with their own speech
as the source's sound; the driving audio is real read speech (JFK, LibriVox, ARCTIC) looped to
the same length. Each configuration is a fresh deployment (API + N `openlipsync worker`
processes on PostgreSQL + Redis, inputs fetched over HTTP), warmed up with one small generation
per worker; the long generation is timed from submission to COMPLETED.

Borders: the chunked outputs are compared frame by frame with the single-pass output of the
same job (chunking off): PSNR at each chunk border (+-2 frames) against all other frames, and
the mouth opening measured by dlib (independent of the engine's MediaPipe) around each border.
A contact sheet across the first border is written next to the outputs.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import httpx
import numpy as np

from bench.memory import write_speech
from tests.test_scale_helpers import (
    GRID_CLIPS,
    MEDIA,
    deployment,
    postgres_database,
    redis_broker,
    submit,
)

WIDTH, HEIGHT, FPS = 1280, 720, 25
SPEECH = ("jfk_inaugural.flac", "librivox_austen_0870.wav", "librivox_austen_0890.wav")
SPEECH += ("librivox_austen_0920.wav", "arctic_a0009.wav")
BORDER_WINDOW = 2  # frames either side of a border counted as "at the border"
MOUTH_WINDOW = 12  # frames either side of a border measured with dlib


def build_source(folder: Path, seconds: float) -> tuple[Path, Path]:
    """(video, speech) of `seconds` from real recordings; cached in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    video, speech = folder / f"talk_{seconds:g}s_720p.mp4", folder / f"speech_{seconds:g}s.wav"
    if not video.exists():
        _write_video(video, seconds)
    if not speech.exists():
        write_speech(speech, seconds, SPEECH)
    return video, speech


def _clip_frames(name: str) -> tuple[list[np.ndarray], np.ndarray]:
    from openlipsync.media.audio import load_audio

    path = MEDIA / "video" / f"{name}.mpg"
    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    return frames, load_audio(path, 48_000).samples


def _write_video(path: Path, seconds: float) -> None:
    clips = [_clip_frames(name) for name in GRID_CLIPS]
    total = round(seconds * FPS)
    partial = path.with_suffix(".part.mp4")
    with av.open(str(partial), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.options = {"crf": "18", "preset": "veryfast"}
        sound = container.add_stream("aac", rate=48_000, layout="mono")
        written, sent, clip = 0, 0, 0
        while written < total:
            frames, samples = clips[clip % len(clips)]
            clip += 1
            for rgb in frames[: total - written]:
                frame = av.VideoFrame.from_ndarray(_pillarbox(rgb), format="rgb24")
                frame.pts = written
                container.mux(stream.encode(frame))
                written += 1
            upto = round(written / FPS * 48_000)
            part = samples[: upto - sent]
            part = np.pad(part, (0, upto - sent - len(part)))[None, :].astype(np.float32)
            audio = av.AudioFrame.from_ndarray(part, format="fltp", layout="mono")
            audio.sample_rate, audio.pts = 48_000, sent
            container.mux(sound.encode(audio))
            sent = upto
        container.mux(stream.encode(None))
        container.mux(sound.encode(None))
    partial.replace(path)


def _pillarbox(rgb: np.ndarray) -> np.ndarray:
    height, width = rgb.shape[:2]
    scaled_width = round(width * HEIGHT / height / 2) * 2
    scaled = cv2.resize(rgb, (scaled_width, HEIGHT), interpolation=cv2.INTER_CUBIC)
    out = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    left = (WIDTH - scaled_width) // 2
    out[:, left : left + scaled_width] = scaled
    return out


@dataclass
class Run:
    workers: int
    chunk_seconds: float
    seconds: float
    output: Path
    load_after: float
    cpu_seconds: float  # user + system time the worker processes spent on the long job
    phases: str  # where the wall time went: plan, chunks (and how parallel), join


def run_long(
    workers: int,
    chunk_seconds: float,
    files_url: str,
    media_url: str,
    names: tuple[str, str],
    scratch: Path,
    pin_cores: bool = False,
) -> Run:
    """Wall time of the long generation on a fresh deployment with `workers` processes."""
    overrides = {"chunk_seconds": chunk_seconds, "chunk_min_seconds": 10.0}
    overrides |= {"job_stale_seconds": 30.0, "fetch_timeout_seconds": 120.0}
    with postgres_database() as database_url, redis_broker() as (broker_url, prefix):
        overrides |= {"database_url": database_url, "broker_url": broker_url}
        with deployment(
            scratch, workers, pin_cores, broker_key_prefix=prefix, **overrides
        ) as cluster:
            warm = [submit(cluster, media_url, index) for index in range(workers)]
            cluster.wait_terminal(warm, 600)
            body = {
                "model": "lipsync-2",
                "input": [
                    {"type": "video", "url": f"{files_url}/{names[0]}"},
                    {"type": "audio", "url": f"{files_url}/{names[1]}"},
                ],
                "options": {"sync_mode": "cut_off"},
            }
            cpu_before = _cpu_seconds(cluster)
            started = time.monotonic()
            with cluster.client() as client:
                created = client.post("/v2/generate", json=body)
                created.raise_for_status()
            generation_id = created.json()["id"]
            done = cluster.wait_terminal([generation_id], 3600)[generation_id]
            elapsed = time.monotonic() - started
            load = os.getloadavg()[0]
            cpu = _cpu_seconds(cluster) - cpu_before
            if done["status"] != "COMPLETED":
                raise SystemExit(f"{workers} workers: the long job ended {done}")
            phases = _phases(cluster, generation_id)
            output = scratch / "output.mp4"
            output.write_bytes(httpx.get(done["outputUrl"], timeout=120).content)
    return Run(workers, chunk_seconds, elapsed, output, load, cpu, phases)


def _phases(cluster: object, generation_id: str) -> str:
    """Plan, chunk and join time from the database rows, and the chunks' real concurrency
    (sum of chunk render times / wall time of the chunk phase)."""
    from openlipsync.store.db import open_database
    from openlipsync.store.models import Generation, GenerationChunk

    with open_database(cluster.settings)() as session:  # type: ignore[attr-defined]
        generation = session.get(Generation, generation_id)
        chunks = session.query(GenerationChunk).filter_by(generation_id=generation_id).all()
        if generation is None or not chunks:
            return "single pass"
        starts = [c.started_at for c in chunks]
        ends = [c.updated_at for c in chunks]
        plan = (min(starts) - generation.started_at).total_seconds()
        wall = (max(ends) - min(starts)).total_seconds()
        busy = sum((e - s).total_seconds() for s, e in zip(starts, ends, strict=True))
        join = (generation.finished_at - max(ends)).total_seconds()
        pids = {c.worker_id.split(":")[1] for c in chunks if c.worker_id}
    return (
        f"plan {plan:.1f} s, {len(chunks)} chunks {wall:.1f} s on {len(pids)} processes "
        f"(concurrency {busy / max(wall, 1e-9):.2f}), join {join:.1f} s"
    )


def _cpu_seconds(cluster: object) -> float:
    """CPU time of every live process of every worker (Celery's pool processes persist)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for worker in cluster.workers:  # type: ignore[attr-defined]
        for pid in worker.pids():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def borders(frame_count: int, chunk_seconds: float) -> list[int]:
    from openlipsync.engine.chunks import chunk_bounds

    return [start for start, _ in chunk_bounds(frame_count, FPS, chunk_seconds)[1:]]


def compare(single: Path, chunked: Path, cuts: list[int]) -> dict[str, float]:
    """Per-frame PSNR (chunked vs single pass), at borders and elsewhere; frame counts."""
    near = {c + d for c in cuts for d in range(-BORDER_WINDOW, BORDER_WINDOW + 1)}
    at, away = [], []
    with av.open(str(single)) as a, av.open(str(chunked)) as b:
        pairs = zip(a.decode(video=0), b.decode(video=0), strict=True)
        for index, (x, y) in enumerate(pairs):
            score = _psnr(x.to_ndarray(format="rgb24"), y.to_ndarray(format="rgb24"))
            (at if index in near else away).append(score)
    return {
        "frames": len(at) + len(away),
        "border_mean": float(np.mean(at)),
        "border_min": float(np.min(at)),
        "other_mean": float(np.mean(away)),
        "other_min": float(np.min(away)),
    }


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a.astype(np.float32) - b) ** 2).mean())
    return 99.0 if mse == 0 else float(10 * np.log10(255**2 / mse))


def _window_frames(path: Path, start: int, stop: int) -> list[np.ndarray]:
    out = []
    with av.open(str(path)) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index >= stop:
                break
            if index >= start:
                out.append(frame.to_ndarray(format="rgb24"))
    return out


def source_cuts(seconds: float) -> list[int]:
    """Frames where the looped source switches to the next GRID clip (a real scene cut)."""
    from openlipsync.media.probe import probe

    lengths = [probe(MEDIA / "video" / f"{name}.mpg").video.frame_count for name in GRID_CLIPS]
    cuts, position, clip = [], 0, 0
    while position < seconds * FPS:
        position += lengths[clip % len(lengths)]
        clip += 1
        cuts.append(position)
    return cuts


def measurable(borders: list[int], scene_cuts: list[int]) -> list[int]:
    """Chunk borders with no scene cut of the source near them (a cut would hide or fake a
    discontinuity)."""
    return [b for b in borders if all(abs(b - c) > MOUTH_WINDOW for c in scene_cuts)]


def mouth_continuity(single: Path, chunked: Path, cuts: list[int], sheet: Path) -> dict:
    """dlib mouth opening around each border: the step across the border against the typical
    frame-to-frame step, and the largest difference from the single pass."""
    from bench.contact_sheet import save_contact_sheet
    from bench.dlib_landmarks import inner_lip_opening, measure_frames

    steps_at, steps_all, gaps = [], [], []
    for number, cut in enumerate(cuts):
        start, stop = cut - MOUTH_WINDOW, cut + MOUTH_WINDOW
        frames = {"single": _window_frames(single, start, stop)}
        frames["chunked"] = _window_frames(chunked, start, stop)
        points = {name: measure_frames(f) for name, f in frames.items()}
        opening = {name: inner_lip_opening(p) for name, p in points.items()}
        steps = np.abs(np.diff(opening["chunked"]))
        steps_all.extend(steps[np.isfinite(steps)].tolist())
        steps_at.append(float(steps[MOUTH_WINDOW - 1]))  # frame cut-1 -> cut
        gaps.append(float(np.nanmax(np.abs(opening["chunked"] - opening["single"]))))
        if number == 0:
            save_contact_sheet(
                sheet,
                frames["chunked"],
                points["chunked"],
                {
                    f"chunked (border at {MOUTH_WINDOW / FPS:.2f} s here)": opening["chunked"],
                    "single pass": opening["single"],
                },
                FPS,
                title=f"chunked output across the border at frame {cut}",
                crops=12,
            )
    return {
        "border_step_mean": float(np.nanmean(steps_at)),
        "border_step_max": float(np.nanmax(steps_at)),
        "step_median": float(np.median(steps_all)),
        "step_p90": float(np.percentile(steps_all, 90)),
        "max_gap_vs_single": float(np.nanmax(gaps)),
    }
