"""The engine pipeline: two streaming passes over the source video, plain data between stages.

    probe ─► track pass (decode ─► face mesh ─► mouth library) ─► smooth track
          ─► timeline (sync_mode, or segments) ─► person fit + mouth plan (audio ─► shapes)
          ─► render pass (decode ─► render mouth ─► encode H.264/AAC)

Frames are never held for the whole video, and of what grows with the length only the plan's
small per-frame arrays (targets, choices, audio features: under 0.5 KB per frame) stay in
memory (and, with `active_speaker_detection`, every face's track). The track pass writes the
landmarks (3.8 KB per frame) to a scratch file, smoothed in place by blocks, and keeps a capped
mouth library (also a file); every sound (the 48 kHz output audio, the 16 kHz analysis audio,
segment mixes) is decoded into a scratch file, read by windows or chunks. The files are mapped
(media/mapped.py), and whoever walks one lets go of its pages a block at a time, so peak memory
does not depend on the input's length (bench/memory.py).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from openlipsync.engine.alignment import AlignmentError, align_transcript
from openlipsync.engine.analysis import Analysis, analyse
from openlipsync.engine.background import BackgroundSink, prefetch, quiet_blas
from openlipsync.engine.effects import FaceEffects
from openlipsync.engine.errors import (
    EngineError,
    InputTooLong,
    UnsupportedSize,
    VideoMissing,
)
from openlipsync.engine.motion import (
    PersonModel,
    each_person,
    expressed,
    fit_person,
    held_expression,
    plan_mouth,
)
from openlipsync.engine.mouth import mouth_shape
from openlipsync.engine.phonemes import closure_frames, viseme_targets
from openlipsync.engine.presets import Preset, preset_for
from openlipsync.engine.render import MouthRenderer
from openlipsync.engine.request import (
    GenerateRequest,
    GenerateResult,
    ProgressCallback,
    SegmentAudio,
)
from openlipsync.engine.run_state import RunState
from openlipsync.engine.scenes import frame_runs
from openlipsync.engine.segments import (
    compose_audio,
    output_frames,
    segment_only_audio,
    segment_timeline,
)
from openlipsync.engine.speaker import loudness_per_frame
from openlipsync.engine.tracking import FaceTrack
from openlipsync.media.audio import AudioClip, load_audio_to_file
from openlipsync.media.encode import VideoWriter
from openlipsync.media.kept import KeptFrames, KeptSource, Source
from openlipsync.media.mapped import in_blocks
from openlipsync.media.picture import Box, Patch, Picture, YuvPicture
from openlipsync.media.probe import VideoInfo, probe
from openlipsync.media.seek import SeekingSource
from openlipsync.media.timeline import Timeline, plan_timeline
from openlipsync.media.video import FrameSource, needs_disk_cache, revisits
from openlipsync.tts.base import PhonemeTiming

ANALYSIS_RATE = 16_000
OUTPUT_AUDIO_RATE = 48_000
MIN_SIDE, MAX_SIDE = 64, 4096
PHONE_WEIGHT = 0.5  # share of the phone-driven shapes when phone timings are known


def run(
    request: GenerateRequest,
    progress: ProgressCallback | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> GenerateResult:
    state = RunState(progress, should_cancel)
    with tempfile.TemporaryDirectory(prefix="openlipsync-") as scratch:
        with planned(request, state, keep_frames=True) as plan:
            frames, segment_frames = _render_pass(request, plan, Path(scratch), state)
        state.report("render", 1.0)
    video, timeline = plan.video, plan.timeline
    return GenerateResult(
        output=request.output,
        duration=timeline.duration,
        frame_count=frames,
        fps=video.fps,
        width=video.width,
        height=video.height,
        stage_seconds=state.stage_seconds,
        segment_output=request.segment_output if segment_frames else None,
        segment_duration=segment_frames / video.fps if segment_frames else None,
    )


@dataclass
class Planned:
    """The whole clip planned at once: what every output frame shows and how it is drawn."""

    video: VideoInfo
    timeline: Timeline
    look: _Look
    kept: KeptFrames | None  # the analysis's decoded frames, for the render pass to reuse


@contextmanager
def planned(
    request: GenerateRequest, state: RunState, keep_frames: bool = False
) -> Iterator[Planned]:
    """Probe, analyse the source and plan the mouth for the whole clip (no chunk borders in the
    motion); the renderer's resources are released when the block ends. BLAS stays on one
    thread until then (see quiet_blas), the render pass included. The track and the sounds are
    kept in a scratch folder (timeline.audio reads one) that is deleted when the block ends,
    however it ends. With
    `keep_frames` the analysis keeps what it decoded, within media/kept.py's budget, for a
    render pass in this process (chunks render elsewhere: their planner keeps nothing)."""
    with quiet_blas(), tempfile.TemporaryDirectory(prefix="openlipsync-plan-") as scratch:
        yield from _planned(request, state, Path(scratch), keep_frames)


def _planned(
    request: GenerateRequest, state: RunState, scratch: Path, keep_frames: bool
) -> Iterator[Planned]:
    preset = preset_for(request.model)
    state.report("probe", 0.0)
    with state.timed("audio"):
        video, has_sound = _probe_video(request.video)
    _check_length(request, 0.0 if video.is_still else video.duration)  # before any decoding
    kept = (
        KeptFrames.for_clip(video.frame_count, video.width, video.height) if keep_frames else None
    )
    renderer = MouthRenderer(video.width, video.height, video.fps, quality=preset.quality)
    try:
        analysis, sound = _analyse_while_loading(
            request, video, has_sound, renderer, state, scratch, kept
        )
        track = analysis.track
        state.report("plan", 0.0)
        with state.timed("plan"):
            audio_an = sound.analysis
            if request.segments:
                timeline, audio_an = _segment_plan(
                    request, video, len(track.present), sound.drivers, sound.source, scratch
                )
            else:
                timeline = plan_timeline(
                    len(track.present), video.fps, sound.output, request.sync_mode, video.is_still
                )
            measured = in_blocks(mouth_shape, track.landmarks)
            each = each_person(measured, analysis.people)
            if each is not None:  # every person's shapes on one common mouth
                measured = each.to_common(measured)
            person = fit_person(sound.source, measured, video.fps)
            sound.source = None  # done with (64 KB per second): not held through the rest
            targets = _plan_targets(request, audio_an, timeline, person)
            teeth = renderer.teeth(len(measured))
            held = held_expression(measured, person, video.fps, teeth, analysis.breaks)
            held = held[timeline.src_index] * timeline.lipsync[:, None]
            targets = expressed(targets, held, person.neutral)
            if each is not None:  # each frame back on its own person's mouth
                targets = each.to_own(targets, timeline.src_index).astype(np.float32)
            look = _prepare_look(request, video, timeline, renderer, analysis, targets, audio_an)
        del analysis, sound, audio_an, targets, person, each  # the render pass needs the look
        yield Planned(video, timeline, look, kept)
    finally:
        renderer.close()
        if kept is not None:
            kept.clear()


@dataclass
class _Sound:
    output: AudioClip  # the driving audio at the output rate (the longest driver for segments)
    analysis: AudioClip  # the same at the analysis rate
    source: AudioClip | None  # the source video's own sound, when it has any
    drivers: dict[Path, tuple[AudioClip, AudioClip]]  # per segment audio file (segments only)


def _analyse_while_loading(
    request: GenerateRequest,
    video: VideoInfo,
    has_sound: bool,
    renderer: MouthRenderer,
    state: RunState,
    scratch: Path,
    kept: KeptFrames | None,
) -> tuple[Analysis, _Sound]:
    """The analysis pass, with the sound decoded beside it (the largest-face pass needs none;
    choosing a speaker does, so it waits). A sound error still wins over an analysis error,
    as when the sound was loaded first."""
    speaker = _speaker_option(request)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="openlipsync-sound") as pool:
        pending = pool.submit(_load_sound, request, video, has_sound, state, scratch)
        early = pending.result() if speaker else None
        try:
            analysis = analyse(
                request.video,
                video,
                renderer,
                state,
                speaker_option=speaker,
                occlusion=_wants_occlusion(request),
                source_audio=early.source if early else None,
                driving_audio=early.analysis if early else None,
                kept=kept,
                track_file=scratch / "track.f32",
            )
        except BaseException:
            pending.result()  # raises the sound's error, if any, in the analysis's place
            raise
        return analysis, pending.result()


def _load_sound(
    request: GenerateRequest, video: VideoInfo, has_sound: bool, state: RunState, scratch: Path
) -> _Sound:
    """The sounds the plan needs, each in a file in `scratch` (an hour is 0.7 GB at 48 kHz and
    0.2 GB at 16 kHz: FileAudioClip); the video's own from its first frame (media/audio.py)."""
    with state.timed("audio"):
        drivers: dict[Path, tuple[AudioClip, AudioClip]] = {}
        if request.segments:
            drivers = _load_drivers(request.segments, scratch)
            audio_out = max((clips[0] for clips in drivers.values()), key=lambda c: c.duration)
            audio_an = max((clips[1] for clips in drivers.values()), key=lambda c: c.duration)
        else:
            audio_out = load_audio_to_file(
                request.audio,
                scratch / "output.f32",
                OUTPUT_AUDIO_RATE,
                request.max_seconds,
                stereo=True,
            )
            audio_an = load_audio_to_file(
                request.audio, scratch / "analysis.f32", ANALYSIS_RATE, request.max_seconds
            )
        _check_length(request, audio_out.duration)
        source = (
            load_audio_to_file(
                request.video, scratch / "source.f32", ANALYSIS_RATE, start_at=video.start
            )
            if has_sound
            else None
        )
    return _Sound(audio_out, audio_an, source, drivers)


def _probe_video(path: Path) -> tuple[VideoInfo, bool]:
    """The picture's facts, and whether the source has sound of its own (probed once: probing
    reads every packet)."""
    info = probe(path)
    if info.video is None:
        raise VideoMissing(f"{path.name} has no video stream or image")
    video = info.video
    if not (
        min(video.width, video.height) >= MIN_SIDE and max(video.width, video.height) <= MAX_SIDE
    ):
        raise UnsupportedSize(
            f"{video.width}x{video.height} is outside the supported {MIN_SIDE}..{MAX_SIDE} px range"
        )
    return video, info.audio is not None and not video.is_still


def _check_length(request: GenerateRequest, seconds: float) -> None:
    if seconds > request.max_seconds:
        raise InputTooLong(
            f"the input lasts {seconds:.0f} s; the limit is {request.max_seconds:.0f} s"
        )


def _load_drivers(
    segments: list[SegmentAudio], scratch: Path
) -> dict[Path, tuple[AudioClip, AudioClip]]:
    """Each distinct segment audio file once, at the output and the analysis rates (files in
    `scratch`: a film dubbed line by line has as much sound in its segments as in itself)."""
    drivers: dict[Path, tuple[AudioClip, AudioClip]] = {}
    for segment in segments:
        if segment.audio not in drivers:
            number = len(drivers)
            drivers[segment.audio] = (
                load_audio_to_file(
                    segment.audio,
                    scratch / f"driver{number}.out.f32",
                    OUTPUT_AUDIO_RATE,
                    stereo=True,
                ),
                load_audio_to_file(
                    segment.audio, scratch / f"driver{number}.analysis.f32", ANALYSIS_RATE
                ),
            )
    return drivers


def _segment_plan(
    request: GenerateRequest,
    video: VideoInfo,
    video_frames: int,
    drivers: dict[Path, tuple[AudioClip, AudioClip]],
    source_audio: AudioClip | None,
    scratch: Path,
) -> tuple[Timeline, AudioClip]:
    """The segments' timeline (output rate) and the same composite audio for mouth analysis,
    mixed into files in `scratch`."""
    segments = request.segments or []
    count = output_frames(segments, video.fps, video_frames, video.is_still)
    if count / video.fps > request.max_seconds:  # a photo lasts until the last segment ends
        raise InputTooLong(
            f"the segments last {count / video.fps:.0f} s; the limit is {request.max_seconds:.0f} s"
        )
    # The source's own sound stays outside the segments; silence when it has none.
    own = {
        ANALYSIS_RATE: source_audio or AudioClip.silence(0.0, ANALYSIS_RATE),
        OUTPUT_AUDIO_RATE: load_audio_to_file(
            request.video,
            scratch / "source.out.f32",
            OUTPUT_AUDIO_RATE,
            stereo=True,
            start_at=video.start,
        )
        if source_audio is not None
        else AudioClip.silence(0.0, OUTPUT_AUDIO_RATE),
    }
    composites = []
    for slot, (rate, name) in enumerate(((OUTPUT_AUDIO_RATE, "out"), (ANALYSIS_RATE, "analysis"))):
        parts = [(segment, drivers[segment.audio][slot]) for segment in segments]
        mix = scratch / f"mix.{name}.f32"
        composites.append(compose_audio(own[rate], parts, video.fps, count, into=mix))
    timeline = segment_timeline(segments, video.fps, count, composites[0], video.is_still)
    return timeline, composites[1]


def _speaker_option(request: GenerateRequest) -> dict | None:
    """`active_speaker_detection` when it asks for a choice (react-1 has no speaker selection)."""
    option = request.options.get("active_speaker_detection")
    if request.model == "react-1" or not isinstance(option, dict):
        return None
    wanted = option.get("auto_detect") or option.get("coordinates") is not None
    return option if wanted or option.get("bounding_boxes") is not None else None


def _wants_occlusion(request: GenerateRequest) -> bool:
    """Obstruction-aware compositing: asked for on lipsync-2/-pro, built into sync-3."""
    return bool(request.options.get("occlusion_detection_enabled")) or request.model == "sync-3"


@dataclass
class _Look:
    """Everything the render pass does to one output frame."""

    renderer: MouthRenderer
    source_track: FaceTrack
    src_index: np.ndarray
    effects: FaceEffects | None
    visibility: np.ndarray | None  # per source frame, 1 = mouth visible
    loudness: np.ndarray | None = None  # per output frame: what the face effects were built from

    def frame(self, index: int, frame: np.ndarray) -> np.ndarray:
        """The new mouth first, on the face as filmed; then whole-face effects move it all.
        The whole-frame form of `draw`, which the render pass uses (tests hold them equal)."""
        source = int(self.src_index[index])
        rendered = self.renderer.render(index, frame)
        weight = self._weight(index)
        if weight < 1.0:
            rendered = _mixed(rendered, frame, weight)
        if self.effects is not None:
            rendered = self.effects.frame(index, rendered, self.source_track.landmarks[source])
        return rendered

    def draw(self, index: int, picture: Picture) -> tuple[Picture, Patch | None]:
        """Output frame `index` as its source picture and what changes on it: the mouth's box,
        or with whole-face effects the head's (`FaceEffects.reach`)."""
        patch = self.renderer.render_patch(index, picture)
        weight = self._weight(index)
        if patch is not None and weight < 1.0:
            patch = Patch(patch.box, _mixed(patch.rgb, picture.region(patch.box), weight))
        if self.effects is None:
            return picture, patch
        landmarks = self.source_track.landmarks[int(self.src_index[index])]
        reach = self.effects.reach(landmarks, picture.width, picture.height)
        if reach is None:
            return picture, patch
        if patch is not None:
            reach = _union(reach, patch.box)
        crop = np.array(picture.region(reach))
        if patch is not None:
            x0, y0, x1, y1 = patch.box
            crop[y0 - reach[1] : y1 - reach[1], x0 - reach[0] : x1 - reach[0]] = patch.rgb
        origin = np.array(reach[:2], np.float32)
        return picture, Patch(reach, self.effects.frame(index, crop, landmarks - origin))

    def _weight(self, index: int) -> float:
        """How much of the new mouth shows (occlusion fades it out where the mouth is hidden)."""
        if self.visibility is None:
            return 1.0
        return float(self.visibility[int(self.src_index[index])])


def _union(a: Box, b: Box) -> Box:
    return min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])


def _mixed(rendered: np.ndarray, filmed: np.ndarray, weight: float) -> np.ndarray:
    mixed = weight * rendered.astype(np.float32) + (1.0 - weight) * filmed
    return np.clip(mixed + 0.5, 0, 255).astype(np.uint8)


def _prepare_look(
    request: GenerateRequest,
    video: VideoInfo,
    timeline: Timeline,
    renderer: MouthRenderer,
    analysis: Analysis,
    targets: np.ndarray,
    driving: AudioClip,
) -> _Look:
    """Plan the whole render at once: the renderer picks mouths, face effects move the face."""
    # float32, as the render plan stores it (engine/chunks.py): a chunk's face effects are
    # then built from the very numbers the single pass used, pixel for pixel
    loudness = loudness_per_frame(
        driving.samples, driving.sample_rate, timeline.fps, timeline.frame_count
    ).astype(np.float32)
    effects = FaceEffects.for_request(
        request.model,
        request.options,
        video.is_still,
        timeline.frame_count,
        timeline.fps,
        loudness,
    )
    renderer.prepare(
        analysis.track,
        targets,
        timeline.src_index,
        timeline.lipsync,
        people=analysis.people,
        breaks=analysis.breaks,
    )
    return _Look(
        renderer, analysis.track, timeline.src_index, effects, analysis.visibility, loudness
    )


def _plan_targets(
    request: GenerateRequest, audio: AudioClip, timeline: Timeline, person: PersonModel
) -> np.ndarray:
    """Mouth shapes per output frame, from the audio; known phones sharpen them.

    Phones alone give the right shapes but not the emphasis (a stressed vowel opens wider), and
    the audio alone misses closures inside words: so with phone timings the two are averaged and
    every bilabial and pause frame is then closed exactly.
    """
    driving = audio.padded_to(timeline.duration, copy=False)  # read only
    shapes = plan_mouth(
        driving,
        timeline.fps,
        timeline.frame_count,
        person,
        request.temperature,
        active=timeline.lipsync,
    )
    phones = _phone_timings(request)
    if phones is None:
        return shapes
    visemes = viseme_targets(
        phones,
        timeline.fps,
        timeline.frame_count,
        person.neutral,
        person.span,
        request.temperature,
    )
    shapes = (1.0 - PHONE_WEIGHT) * shapes + PHONE_WEIGHT * visemes
    closed = closure_frames(phones, timeline.fps, timeline.frame_count)
    shapes[closed, 0] = person.neutral[0]
    shapes[~timeline.lipsync] = person.neutral
    return shapes


def _phone_timings(request: GenerateRequest) -> list[PhonemeTiming] | None:
    if request.segments:  # phone timings are of one whole driver, not of the composite
        return None
    if request.phonemes:
        return request.phonemes
    if not request.transcript:
        return None
    try:
        return align_transcript(request.audio, request.transcript)
    except AlignmentError as exc:
        raise EngineError(f"the transcript could not be aligned: {exc.message}", exc.code) from exc


def _render_pass(
    request: GenerateRequest, plan: Planned, scratch: Path, state: RunState
) -> tuple[int, int]:
    """Encode into scratch files and move them into place, so a failure never leaves half an MP4.

    Returns the frames written to the output and to the segment output (0 when none)."""
    preset: Preset = preset_for(request.model)
    video, timeline, look = plan.video, plan.timeline, plan.look
    partial = scratch / "output.mp4"
    source = _frame_source(request.video, video, timeline.src_index, plan.kept, scratch)
    pictures = in_order(source, timeline.src_index, video.is_still)
    try:
        with ExitStack() as writers:
            writer = writers.enter_context(
                VideoWriter(
                    partial,
                    video.width,
                    video.height,
                    video.fps,
                    timeline.audio,
                    crf=preset.crf,
                    preset=preset.x264,
                    colour=video.colour,
                    aspect=video.aspect,
                )
            )
            segment_writer = _segment_writer(request, video, timeline, scratch, preset)
            if segment_writer is not None:
                writers.enter_context(segment_writer)
            sink = BackgroundSink(_tee(writer, segment_writer, timeline.lipsync))
            try:
                for out_index, picture in enumerate(state.timed_iter("decode", pictures)):
                    with state.timed("render"):
                        drawn, patch = look.draw(out_index, picture)
                    with state.timed("encode"):
                        sink.submit(writer.encodable(drawn, patch))
                    if out_index % 10 == 0:
                        state.report("render", out_index / max(timeline.frame_count, 1))
            finally:
                with state.timed("encode"):
                    sink.close()
            with state.timed("encode"):
                written = writer.close()
                segment_written = segment_writer.close() if segment_writer else 0
    finally:
        pictures.close()
        source.close()
    request.output.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(partial, request.output)
    if segment_writer is not None and request.segment_output is not None:
        request.segment_output.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(segment_writer.path, request.segment_output)
    return written, segment_written


def in_order(source: Source, src_index: np.ndarray, is_still: bool) -> Iterator[Picture]:
    """The source's pictures in the timeline's order, decoded ahead on a thread; a photo's
    one picture for every frame, as 4:2:0 planes where its sides are even: the writer then
    copies its planes and converts only what changes (a 12 MP photo's whole-frame
    conversion and copies took 45 ms of every frame)."""
    if not is_still:
        return prefetch(source.picture(int(i)) for i in src_index)
    return _held(source.picture(0), len(src_index))


def _held(picture: Picture, count: int) -> Iterator[Picture]:
    if picture.planes() is None and picture.width % 2 == 0 and picture.height % 2 == 0:
        picture = YuvPicture.from_rgb(picture.rgb())
    for _ in range(count):
        yield picture


def _frame_source(
    path: Path, video: VideoInfo, src_index: np.ndarray, kept: KeptFrames | None, scratch: Path
) -> Source:
    """The source frames in the timeline's order: kept ones as they are, the rest decoded.

    Beyond the kept frames, a forward reading (with restarts, as loop's) seeks past them; a
    bounce goes back and forth and keeps its disk cache. Without kept frames, one sequential
    decoder serves all, as ever. `video` is the file's probe (no second reading of it)."""
    cache = scratch if needs_disk_cache(src_index) else None  # bounce, not cut_off
    fps = video.fps

    def sequential() -> FrameSource:
        keep = revisits(src_index)
        return FrameSource(path, fps=fps, cache_dir=cache, keep_recent=keep, source=video)

    if kept is None or not len(kept):
        return sequential()
    return KeptSource(kept, sequential if cache else lambda: SeekingSource(path, fps, video))


def _segment_writer(
    request: GenerateRequest, video: VideoInfo, timeline: Timeline, scratch: Path, preset: Preset
) -> VideoWriter | None:
    """A second encoder for the frames inside segments, when a segment output is wanted."""
    if not (request.segments and request.segment_output and timeline.lipsync.any()):
        return None
    runs = frame_runs(timeline.lipsync)
    audio = segment_only_audio(timeline.audio, runs, timeline.fps)
    return VideoWriter(
        scratch / "segments.mp4",
        video.width,
        video.height,
        video.fps,
        audio,
        crf=preset.crf,
        preset=preset.x264,
        colour=video.colour,
        aspect=video.aspect,
    )


def _tee(
    writer: VideoWriter, segment_writer: VideoWriter | None, covered: np.ndarray
) -> Callable[[av.VideoFrame], None]:
    """Write every frame to the output, and the covered ones to the segment output too (both
    writers have the same size, so one converted picture serves both)."""
    if segment_writer is None:
        return writer.write_picture
    index = iter(range(len(covered)))

    def write(frame: av.VideoFrame) -> None:
        writer.write_picture(frame)
        if covered[next(index)]:
            segment_writer.write_picture(frame)

    return write
