"""Long videos in parallel: plan the whole clip once, render frame ranges anywhere, join.

    write_plan (one process)   probe ─► analysis pass ─► timeline + mouth plan for the whole clip
                               ─► one plan file (arrays + JSON, no pickle)
    render_chunk (any worker)  plan file + source ─► output frames [start, stop) ─► H.264 only
    join (one process)         chunk files ─► one MP4, packets copied, audio muxed once

The mouth motion, library choices, fades and face effects are all decided in the plan, per
output frame, so a frame renders to the same pixels whichever process draws it: chunk borders
exist only in the encoder (each chunk starts on a keyframe), never in the motion.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from openlipsync.engine.background import BackgroundSink, quiet_blas
from openlipsync.engine.effects import FaceEffects
from openlipsync.engine.errors import EngineError
from openlipsync.engine.pipeline import _Look, in_order, planned
from openlipsync.engine.presets import preset_for
from openlipsync.engine.render import MouthRenderer
from openlipsync.engine.request import GenerateRequest, GenerateResult, ProgressCallback
from openlipsync.engine.run_state import RunState
from openlipsync.engine.tracking import N_LANDMARKS
from openlipsync.media.audio import AudioClip, FileAudioClip
from openlipsync.media.encode import VideoWriter
from openlipsync.media.join import join_streams
from openlipsync.media.mapped import blocks
from openlipsync.media.probe import Colour, probe
from openlipsync.media.seek import SeekingSource, backward_jumps
from openlipsync.media.video import FrameSource

PLAN_VERSION = 4  # 2: library crops as PNG, the sound in a file of its own; 3: the track too;
# 4: still occluders and the library mouths' frames
MAX_SEEKS = 8  # backward jumps in one chunk still worth a seek each (loop restarts)
SOUND_BLOCK = 1 << 20  # samples per write of the plan's sound (4 MB)
TRACK_BLOCK = 1024  # frames per write of the plan's track (4 MB)
_RENDERER_PREFIX = "renderer/"
_CROPS = "library_crops"
_TRACK = "track_landmarks"


class PlanUnusable(EngineError):
    """A plan file that is missing, truncated or from an incompatible version."""

    def __init__(self, message: str) -> None:
        super().__init__(message, "generation_pipeline_failed")


@dataclass(frozen=True)
class PlanSummary:
    frame_count: int
    fps: float
    width: int
    height: int
    duration: float
    colour: Colour = Colour()  # the source's, for the chunks' encoders
    aspect: tuple[int, int] = (1, 1)  # the source's pixel shape (numerator, denominator)
    is_still: bool = False  # a photo: one picture for every frame (pipeline.in_order)


@dataclass
class ChunkPlan:
    """A plan file loaded for rendering or joining."""

    summary: PlanSummary
    look: _Look
    audio: AudioClip | None  # only the join needs it (`load_plan(..., sound=True)`)
    crf: int
    x264: str


def chunk_bounds(frame_count: int, fps: float, chunk_seconds: float) -> list[tuple[int, int]]:
    """[start, stop) output frame ranges of about `chunk_seconds`, the last one absorbing a
    short remainder (a chunk under half the length is not worth a task)."""
    size = max(1, round(chunk_seconds * fps))
    bounds = [(start, min(start + size, frame_count)) for start in range(0, frame_count, size)]
    if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] < size / 2:
        last = bounds.pop()
        bounds[-1] = (bounds[-1][0], last[1])
    return bounds


def expected_seconds(request: GenerateRequest) -> float:
    """About how long the output will last, from a probe of the inputs (no decoding): enough
    to decide whether splitting is worth it. 0 when the inputs cannot be probed (the
    single-pass engine then reports the precise error)."""
    try:
        video, audio = probe(request.video).video, probe(request.audio).audio
    except EngineError:
        return 0.0
    if video is None or audio is None:
        return 0.0
    if video.is_still:
        return audio.duration
    if request.sync_mode == "cut_off":
        return min(audio.duration, video.duration)
    if request.sync_mode == "silence":
        return max(audio.duration, video.duration)
    return audio.duration


def write_plan(
    request: GenerateRequest,
    path: Path,
    progress: ProgressCallback | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> PlanSummary:
    """Analyse and plan the whole clip, and store everything chunk workers need in `path`."""
    if request.segment_output is not None:
        raise ValueError("a segment output is written by the single-pass engine only")
    state = RunState(progress, should_cancel)
    preset = preset_for(request.model)
    with planned(request, state) as plan:
        video, timeline, look = plan.video, plan.timeline, plan.look
        summary = PlanSummary(
            frame_count=timeline.frame_count,
            fps=video.fps,
            width=video.width,
            height=video.height,
            duration=timeline.duration,
            colour=video.colour,
            aspect=(video.aspect.numerator, video.aspect.denominator),
            is_still=video.is_still,
        )
        scalars, arrays = look.renderer.export_state()
        meta = {
            "version": PLAN_VERSION,
            "summary": vars(summary),
            "crf": preset.crf,
            "x264": preset.x264,
            "audio_rate": timeline.audio.sample_rate,
            "renderer": scalars,
            "effects": None
            if look.effects is None
            else {"model": request.model, "options": request.options, "is_still": video.is_still},
        }
        track = arrays.pop(_TRACK)  # 3.8 KB per source frame: a file of its own, mapped
        payload = {_RENDERER_PREFIX + name: value for name, value in arrays.items()}
        payload.update(_packed_crops(payload.pop(_RENDERER_PREFIX + _CROPS)))
        payload["look_src_index"] = np.asarray(look.src_index, np.int64)
        if look.visibility is not None:
            payload["visibility"] = np.asarray(look.visibility, np.float32)
        if look.effects is not None and look.loudness is not None:
            payload["loudness"] = np.asarray(look.loudness, np.float32)
        payload["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".part")
        with open(partial, "wb") as handle:  # a file object: savez adds no suffix
            np.savez(handle, **payload)
        partial.replace(path)
        _save_rows(track_path(path), track.shape, track.dtype, blocks(track, TRACK_BLOCK))
        _save_sound(timeline.audio, sound_path(path))
    state.report("plan", 1.0)
    return summary


def _save_sound(clip: AudioClip, path: Path) -> None:
    """np.save of the clip's samples, written a block at a time: the output audio is a file
    (see FileAudioClip), and reading it whole would bring hours of 48 kHz into memory."""
    count = len(clip.samples)
    windows = (
        clip.window(start, min(SOUND_BLOCK, count - start))
        for start in range(0, count, SOUND_BLOCK)
    )
    _save_rows(path, clip.samples.shape, np.dtype("<f4"), windows)


def _save_rows(
    path: Path, shape: tuple[int, ...], dtype: np.dtype, parts: Iterator[np.ndarray]
) -> None:
    """np.save of an array given as consecutive blocks of rows (little-endian)."""
    dtype = np.dtype(dtype).newbyteorder("<")
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False}
    with open(path, "wb") as handle:
        np.lib.format.write_array_header_1_0(handle, {**header, "shape": tuple(shape)})
        for part in parts:
            handle.write(np.ascontiguousarray(part, dtype).tobytes())  # ENOSPC as an errno


def sound_path(plan: Path) -> Path:
    """Where the plan's sound lives: a file of its own, since only the join reads it."""
    return plan.with_name(plan.stem + ".sound.npy")


def track_path(plan: Path) -> Path:
    """Where the plan's track lives: a file of its own, which chunks map rather than load
    (three hours of landmarks are a gigabyte; a chunk reads only its frames' rows)."""
    return plan.with_name(plan.stem + ".track.npy")


def _packed_crops(crops: np.ndarray) -> dict[str, np.ndarray]:
    """The library crops as lossless PNGs (about a third of the raw bytes): every chunk
    downloads the plan, and the crops were three quarters of it."""
    blobs = [cv2.imencode(".png", crop, [cv2.IMWRITE_PNG_COMPRESSION, 3])[1] for crop in crops]
    ends = np.cumsum([len(blob) for blob in blobs], dtype=np.int64)
    joined = np.concatenate(blobs).ravel() if blobs else np.zeros(0, np.uint8)
    return {"crops_png": joined, "crops_png_ends": ends}


def _unpacked_crops(arrays: dict[str, np.ndarray], width: int, height: int) -> np.ndarray:
    joined, ends = arrays.pop("crops_png"), arrays.pop("crops_png_ends")
    crops = np.zeros((len(ends), height, width, 3), np.uint8)
    bounds = np.r_[0, ends]
    for slot, (start, stop) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
        crop = cv2.imdecode(joined[start:stop], cv2.IMREAD_COLOR)
        if crop is None or crop.shape != crops.shape[1:]:
            raise PlanUnusable(f"library crop {slot} of the render plan is damaged")
        crops[slot] = crop
    return crops


def load_plan(path: Path, sound: bool = False) -> ChunkPlan:
    """The plan at `path` and the track file beside it, for a chunk; with `sound`, the sound
    file beside it instead, for the join (which renders nothing: its look has no track)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
        meta = json.loads(arrays.pop("meta").tobytes().decode())
    except (OSError, ValueError, KeyError) as exc:
        raise PlanUnusable(f"the render plan cannot be read: {exc}") from exc
    if meta.get("version") != PLAN_VERSION:
        raise PlanUnusable(f"render plan version {meta.get('version')} is not {PLAN_VERSION}")
    try:
        # Read by the join a window at a time: hours of 48 kHz need not be in memory.
        audio = FileAudioClip.open_npy(sound_path(path), int(meta["audio_rate"])) if sound else None
        track = _empty_track() if sound else _mapped_track(path, arrays)
    except (OSError, ValueError, KeyError) as exc:
        raise PlanUnusable(f"the render plan cannot be read: {exc}") from exc
    fields = dict(meta["summary"])
    fields["colour"] = Colour(*fields.get("colour", Colour()))  # lists, once through JSON
    fields["aspect"] = tuple(fields.get("aspect", (1, 1)))
    summary = PlanSummary(**fields)
    state = {
        name[len(_RENDERER_PREFIX) :]: value
        for name, value in arrays.items()
        if name.startswith(_RENDERER_PREFIX)
    }
    state[_TRACK] = track
    width, height = meta["renderer"]["library_size"]
    state[_CROPS] = _unpacked_crops(arrays, width, height)
    renderer = MouthRenderer.from_state(meta["renderer"], state)
    effects = None
    if meta["effects"] is not None:
        recipe = meta["effects"]
        effects = FaceEffects.for_request(
            recipe["model"],
            recipe["options"],
            recipe["is_still"],
            summary.frame_count,
            summary.fps,
            arrays["loudness"],
        )
    look = _Look(
        renderer,
        renderer.track,
        arrays["look_src_index"],
        effects,
        arrays.get("visibility"),
        arrays.get("loudness"),
    )
    return ChunkPlan(summary, look, audio, int(meta["crf"]), str(meta["x264"]))


def _mapped_track(plan: Path, arrays: dict[str, np.ndarray]) -> np.ndarray:
    """The plan's track file, mapped read-only (ValueError when it cannot be the track)."""
    track = np.load(track_path(plan), mmap_mode="r", allow_pickle=False)
    if track.ndim != 3 or track.shape[1:] != (N_LANDMARKS, 2) or track.dtype != np.dtype("<f4"):
        raise ValueError(f"the track file holds {track.dtype} {track.shape}")
    used = arrays[_RENDERER_PREFIX + "src_index"]
    if len(used) and int(used.max()) >= len(track):
        raise ValueError(f"the track has {len(track)} frames; the plan uses {int(used.max()) + 1}")
    return track


def _empty_track() -> np.ndarray:
    return np.zeros((0, N_LANDMARKS, 2), np.float32)


def render_chunk(
    plan: ChunkPlan,
    video: Path,
    start: int,
    stop: int,
    output: Path,
    progress: ProgressCallback | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> int:
    """Output frames [start, stop) as a video-only H.264 MP4 with the plan's encoder settings;
    the file appears at `output` only when complete. Returns the frames written."""
    summary = plan.summary
    if not 0 <= start < stop <= summary.frame_count:
        raise ValueError(f"chunk [{start}, {stop}) outside 0..{summary.frame_count}")
    with quiet_blas():
        written = _render_range(plan, video, start, stop, output, RunState(progress, should_cancel))
    return written


def _render_range(
    plan: ChunkPlan, video: Path, start: int, stop: int, output: Path, state: RunState
) -> int:
    summary = plan.summary
    partial = output.with_name(output.name + ".part.mp4")
    indices = plan.look.src_index[start:stop]
    source = _frame_source(video, summary.fps, indices)
    pictures = in_order(source, indices, summary.is_still)
    try:
        writer = VideoWriter(
            partial,
            summary.width,
            summary.height,
            summary.fps,
            None,
            plan.crf,
            plan.x264,
            colour=summary.colour,
            aspect=Fraction(*summary.aspect),
        )
        with writer:
            sink = BackgroundSink(writer.write_picture)
            try:
                for offset, picture in enumerate(pictures):
                    drawn, patch = plan.look.draw(start + offset, picture)
                    sink.submit(writer.encodable(drawn, patch))
                    if offset % 10 == 0:
                        state.report("render", offset / (stop - start))
            finally:
                sink.close()
    finally:
        pictures.close()
        source.close()
    if writer.frames != stop - start:
        partial.unlink(missing_ok=True)
        raise EngineError(
            f"chunk [{start}, {stop}) wrote {writer.frames} frames", "generation_pipeline_failed"
        )
    output.parent.mkdir(parents=True, exist_ok=True)
    partial.replace(output)
    return writer.frames


def _frame_source(video: Path, fps: float, indices: np.ndarray) -> FrameSource | SeekingSource:
    """Seek to the chunk's first frame, unless the chunk keeps going back (bounce): then the
    random-access cache of the single pass serves it better."""
    if backward_jumps(indices) <= MAX_SEEKS:
        return SeekingSource(video, fps=fps)
    return FrameSource(video, fps=fps)


def join(plan: ChunkPlan, chunks: list[Path], output: Path) -> GenerateResult:
    """The chunk files, in order, remuxed into `output` with the plan's audio (no re-encode)."""
    summary = plan.summary
    if plan.audio is None:
        raise ValueError("join needs the plan loaded with its sound")
    with tempfile.TemporaryDirectory(prefix="openlipsync-join-") as scratch:
        partial = Path(scratch) / "output.mp4"
        frames = join_streams(chunks, plan.audio, summary.fps, partial)
        if frames != summary.frame_count:
            raise EngineError(
                f"the chunks hold {frames} frames, the plan {summary.frame_count}",
                "generation_pipeline_failed",
            )
        output.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(partial, output)
    return GenerateResult(
        output=output,
        duration=summary.duration,
        frame_count=frames,
        fps=summary.fps,
        width=summary.width,
        height=summary.height,
    )
