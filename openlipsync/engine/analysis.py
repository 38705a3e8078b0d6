"""The first pass over the source: where the face is in every frame, and what it looks like.

The common case is one streaming pass (decode, face mesh of the largest face, scene cuts, mouth
visibility, mouth library). With `active_speaker_detection` the face to follow is only known
once every face of the video has been seen, so that case tracks all faces first, chooses, and
reads the pictures a second time (those it kept, when the clip fits media/kept.py's budget;
else decoded again) to fill the mouth library from the chosen face only.
"""

from __future__ import annotations

import bisect
import itertools
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from openlipsync.engine.background import MadeAhead, prefetch, spans_in_parallel
from openlipsync.engine.errors import EngineError, NoFaceFound
from openlipsync.engine.identity import PeopleWatch, eyes_centre, jumped
from openlipsync.engine.occlusion import VisibilityModel, visibility_weights
from openlipsync.engine.render import MouthRenderer
from openlipsync.engine.run_state import RunState
from openlipsync.engine.scenes import SceneDetector, shot_ranges
from openlipsync.engine.speaker import (
    FaceFinder,
    MultiFaceTracker,
    SpeakerSelectionError,
    choose_face,
    loudness_per_frame,
    pick_in_box,
)
from openlipsync.engine.tracking import (
    INTERP_RESIDUAL,
    RELEASE_ROWS,
    FaceTrack,
    LandmarkRows,
    SparseTracker,
    smooth_in_place,
)
from openlipsync.media.audio import AudioClip
from openlipsync.media.kept import KeptFrames
from openlipsync.media.mapped import in_blocks, release
from openlipsync.media.picture import Picture
from openlipsync.media.probe import VideoInfo
from openlipsync.media.video import VideoReader

# Renderer qualities that interpolate the face mesh between frames where that fits (see
# SparseTracker). Only the fast one: measured on the truth bench, interpolated frames cost
# the standard and pro presets' frame-to-frame fidelity (diff r 0.50 -> 0.43 and 0.56 ->
# 0.40), with the library fed from every frame or from measured frames only.
SPARSE_TRACKING = {"fast": INTERP_RESIDUAL}
# Parallel face tracking (see _tracked_in_spans): frames per span, from the memory a span of
# decoded pictures may take (at most three spans are in flight); below MIN_SPAN frames (4K and
# up) the re-detections at span starts are not worth it and one tracker follows the video.
SPAN_BYTES = 48 << 20
MAX_SPAN = 48
MIN_SPAN = 12


@dataclass
class Analysis:
    track: FaceTrack  # smoothed, per source frame, of the face to lip-sync
    cuts: list[int]  # first frames of new shots
    visibility: np.ndarray | None  # per source frame lip-sync weight 0..1 (occlusion), or None
    people: np.ndarray | None = None  # per source frame who the track follows (see identity.py)
    # First frames where the face followed may be another: the cuts and where the track found a
    # face again or jumped (identity.PeopleWatch.starts); nothing read over time crosses them.
    breaks: list[int] = field(default_factory=list)


def analyse(
    path: Path,
    video: VideoInfo,
    renderer: MouthRenderer,
    state: RunState,
    speaker_option: dict | None = None,
    occlusion: bool = False,
    source_audio: AudioClip | None = None,
    driving_audio: AudioClip | None = None,
    kept: KeptFrames | None = None,
    track_file: Path | None = None,
) -> Analysis:
    """The track and what the renderer learns from the source; `kept`, when given, keeps
    decoded frames for the render pass (and, choosing a speaker, for the library pass). With
    `track_file` the track is kept in that scratch file rather than in memory (see
    LandmarkRows)."""
    rows = LandmarkRows(video.frame_count, track_file)
    if speaker_option:
        faces_file = None if track_file is None else track_file.with_suffix(".faces.f32")
        sounds = (source_audio, driving_audio)
        cuts, changes = _speaker_pass(
            path, video, state, speaker_option, sounds, rows, faces_file, kept
        )
        landmarks = rows.array()
        watch = PeopleWatch(video.fps, changes)
        _library_pass(path, video, renderer, watch, landmarks, state, kept)
        visibility = None
    else:
        watch = PeopleWatch(video.fps, [])
        cuts, visibility = _largest_face_pass(
            path, video, renderer, watch, state, occlusion, rows, kept
        )
        landmarks = rows.array()
    present = in_blocks(lambda block: ~np.isnan(block[:, 0, 0]), landmarks)
    if not present.any():
        raise NoFaceFound(f"no face found in any of the {len(landmarks)} frames of {path.name}")
    with state.timed("track"):  # nor across a jump to another face (a stretch start)
        breaks = sorted(set(cuts).union(watch.starts))
        track = _smooth_per_shot(FaceTrack(landmarks=landmarks, present=present), breaks, video.fps)
    with state.timed("identity"):
        people = watch.people(len(landmarks))
    weights = None
    if occlusion and visibility is not None:
        weights = visibility_weights(visibility.scores(people), video.fps)
    return Analysis(track=track, cuts=cuts, visibility=weights, people=people, breaks=breaks)


def _largest_face_pass(
    path: Path,
    video: VideoInfo,
    renderer: MouthRenderer,
    watch: PeopleWatch,
    state: RunState,
    occlusion: bool,
    rows: LandmarkRows,
    kept: KeptFrames | None = None,
) -> tuple[list[int], VisibilityModel | None]:
    """Threads: decode and scene cuts, face mesh (two, on alternate spans), and (here) the
    mouth library.

    Decode, face mesh and the library's crops each release the GIL for most of their time, so
    the stages overlap on two cores instead of taking turns on one. The face mesh is the
    slowest stage, so the cheap cut detector runs beside the decoder rather than beside it.
    Frames travel as Pictures (the decoder's planes): each stage converts to RGB only the part
    it looks at, and the observers get a frame filled where their source boxes say they read.
    """
    scenes = SceneDetector()
    watch.cuts = scenes.cuts  # filled by the decoder's thread, ahead of the frames observed
    visibility = VisibilityModel() if occlusion else None
    busy = {"track": 0.0}
    residual = SPARSE_TRACKING.get(renderer.quality)
    span = _span_frames(video)
    trackers = MadeAhead(
        lambda: SparseTracker(residual), 2 if span >= MIN_SPAN else 1, SparseTracker.close
    )
    renderer.make_ahead()
    reader = VideoReader(path, fps=video.fps, source=video)
    pictures = _keeping(reader.pictures(), kept)
    marked = state.timed_iter("decode", prefetch(_cut_marked(pictures, scenes)))
    if span >= MIN_SPAN:
        tracked = _tracked_in_spans(marked, busy, trackers, span, scenes.cuts)
    else:
        tracked = prefetch(_tracked(marked, busy, trackers), depth=4)
    observers = _Observers(renderer, watch, visibility)
    try:
        for index, picture, landmarks in state.timed_iter("track_wait", tracked):
            with state.timed("observe"):
                observers.observe(index, picture, landmarks)
            rows.append(landmarks)
            if index % 10 == 0:
                state.report("track", index / max(video.frame_count, 1))
    finally:
        tracked.close()
        trackers.close()
        reader.close()
        state.stage_seconds["track"] = state.stage_seconds.get("track", 0.0) + busy["track"]
    return scenes.cuts, visibility


@dataclass
class _Observers:
    """What learns from the source frames (the renderer's library, the identity watch, the
    occlusion model), fed a frame converted to RGB only where they read (Picture.partial)."""

    renderer: MouthRenderer
    watch: PeopleWatch
    visibility: VisibilityModel | None = None
    buffer: np.ndarray | None = None

    def observe(self, index: int, picture: Picture, landmarks: np.ndarray | None) -> None:
        boxes = self.renderer.source_boxes(index, landmarks)
        boxes.append(self.watch.source_box(index, landmarks))
        if self.visibility is not None:
            boxes.append(self.visibility.source_box(landmarks))
        shape = (picture.height, picture.width, 3)
        if self.buffer is None or self.buffer.shape != shape:
            self.buffer = np.empty(shape, np.uint8)
        frame = picture.partial([b for b in boxes if b is not None], self.buffer)
        if self.visibility is not None:
            self.visibility.observe(frame, landmarks)
        self.watch.observe(index, frame, landmarks)
        self.renderer.observe(index, frame, landmarks)


def _keeping(pictures: Iterator[Picture], kept: KeptFrames | None) -> Iterator[Picture]:
    """The pictures, each kept as it goes by (on the decoder's thread) when `kept` is given."""
    if kept is None:
        return pictures
    return _kept_as_they_go(pictures, kept)


def _kept_as_they_go(pictures: Iterator[Picture], kept: KeptFrames) -> Iterator[Picture]:
    for index, picture in enumerate(pictures):
        kept.keep(index, picture)
        yield picture


def _cut_marked(frames: Iterator[Picture], scenes: SceneDetector) -> Iterator[tuple[Picture, bool]]:
    """(frame, first of a new shot) per frame."""
    for frame in frames:
        yield frame, scenes.push(frame)


def _tracked(
    frames: Iterator[tuple[Picture, bool]],
    busy: dict[str, float],
    trackers: MadeAhead[SparseTracker],
) -> Iterator[tuple[int, Picture, np.ndarray | None]]:
    """(index, frame, landmarks or None) per frame, in order; a new shot finds the face afresh."""
    tracker = trackers.take()
    try:
        for index, (frame, landmarks) in enumerate(_follow(tracker, frames, busy)):
            yield index, frame, landmarks
    finally:
        tracker.close()


def _follow(
    tracker: SparseTracker, frames: Iterator[tuple[Picture, bool]], busy: dict[str, float]
) -> Iterator[tuple[Picture, np.ndarray | None]]:
    """(frame, landmarks or None) as the tracker settles each frame; its time goes to `busy`."""
    for frame, new_shot in frames:
        began = time.perf_counter()
        done = tracker.push(frame, new_shot)
        busy["track"] += time.perf_counter() - began
        for frame_out, landmarks, _ in done:
            yield frame_out, landmarks
    for frame_out, landmarks, _ in tracker.flush():
        yield frame_out, landmarks


def _span_frames(video: VideoInfo) -> int:
    """Frames per span of parallel face tracking that keep SPAN_BYTES of pictures per span."""
    return min(MAX_SPAN, SPAN_BYTES // max(video.width * video.height * 3 // 2, 1))


def _tracked_in_spans(
    frames: Iterator[tuple[Picture, bool]],
    busy: dict[str, float],
    ahead: MadeAhead[SparseTracker],
    span: int,
    cuts: list[int],
) -> Iterator[tuple[int, Picture, np.ndarray | None]]:
    """_tracked on two threads, each tracking every other span of `span` frames.

    The face mesh follows the face from frame to frame, so one tracker is one sequential
    chain: the slowest stage of the pass, on one core. Spans break the chain: each starts
    with a fresh detection (as after a scene cut, but the track is smoothed across it), so
    two trackers run at once. Smoothing and everything after see one ordinary track.
    `cuts` (the scene detector's, filled ahead of the frames tracked) tells a span that
    starts another face at a cut from one that lost the thread (see _rejoined).
    """
    local = threading.local()
    trackers: list[SparseTracker] = []
    lock = threading.Lock()

    def taken() -> SparseTracker:
        tracker = ahead.take()
        with lock:
            trackers.append(tracker)
        return tracker

    def track_span(items: Iterator[tuple[Picture, bool]]) -> Iterator[tuple]:
        tracker = getattr(local, "tracker", None)
        if tracker is None:
            tracker = local.tracker = taken()
        tracker.restart()
        spent = {"track": 0.0}
        yield from _follow(tracker, items, spent)
        with lock:
            busy["track"] += spent["track"]

    settled = spans_in_parallel(frames, track_span, span, workers=2)
    spent = {"track": 0.0}  # tracking spans again, on this thread
    try:
        for index, (frame, landmarks) in enumerate(_rejoined(settled, span, cuts, taken, spent)):
            yield index, frame, landmarks
    finally:
        settled.close()
        for tracker in trackers:
            tracker.close()
        with lock:
            busy["track"] += spent["track"]


def _rejoined(
    settled: Iterator[tuple[Picture, np.ndarray | None]],
    span: int,
    cuts: list[int],
    take_tracker: Callable[[], SparseTracker],
    spent: dict[str, float],
) -> Iterator[tuple[Picture, np.ndarray | None]]:
    """The spans' frames in order, each span going on with the face the previous one ended on.

    A span starts by detecting the largest face. With two people of about one size in view
    (a two-shot, a podcast) that may be the other person than the previous span followed:
    the lip-sync would hop between them every span (measured: 48 frames on one, 48 on the
    other). A span whose first face is elsewhere (identity.jumped) than the last frame's,
    with no cut between, is tracked again on this thread from the last frame's face.
    `take_tracker` gives the tracker for that (taken once, on first need); its time goes
    to `spent`."""
    previous: np.ndarray | None = None  # landmarks of the frame before
    index = 0
    again: SparseTracker | None = None
    for frame, landmarks in settled:
        hopped = (
            index % span == 0
            and previous is not None
            and landmarks is not None
            and not _is_cut(cuts, index)
            and jumped(eyes_centre(previous), landmarks)
        )
        if not hopped:
            yield frame, landmarks
            previous, index = landmarks, index + 1
            continue
        rest = [frame, *(item[0] for item in itertools.islice(settled, span - 1))]
        again = again or take_tracker()
        again.restart(follow=previous)
        marked = ((picture, _is_cut(cuts, index + k)) for k, picture in enumerate(rest))
        for frame_out, landmarks_out in _follow(again, marked, spent):
            yield frame_out, landmarks_out
            previous = landmarks_out
        index += len(rest)


def _is_cut(cuts: list[int], index: int) -> bool:
    at = bisect.bisect_left(cuts, index)
    return at < len(cuts) and cuts[at] == index


def _speaker_pass(
    path: Path,
    video: VideoInfo,
    state: RunState,
    option: dict,
    sounds: tuple[AudioClip | None, AudioClip | None],
    rows: LandmarkRows,
    faces_file: Path | None,
    kept: KeptFrames | None,
) -> tuple[list[int], list[int]]:
    """Every face of every frame (their landmarks in `faces_file` when given), then the one
    the option asks for (into `rows`). `sounds`: the source's and the driving audio. Returns
    the scene cuts and the frames where the face followed changes (the cuts among them)."""
    with MultiFaceTracker(path=faces_file, expected=video.frame_count) as multi:
        every = _every_face(path, video, state, multi.max_faces, kept)
        for index, (new_shot, found) in enumerate(every):
            if new_shot:
                multi.cut()
            multi.push_faces(found)
            if index % 10 == 0:
                state.report("track", 0.6 * index / max(video.frame_count, 1))
        faces = multi.finish()
    count = faces.frame_count
    loudness = [
        None
        if clip is None
        else loudness_per_frame(clip.samples, clip.sample_rate, video.fps, count)
        for clip in sounds
    ]
    try:
        choice = choose_face(option, faces, video.fps, loudness[0], loudness[1], video.scale)
    except SpeakerSelectionError as exc:
        raise EngineError(str(exc), "generation_invalid_speaker_selection") from exc
    changes, followed = set(faces.cuts), -1
    for index in range(count):
        chosen = None if choice is None else int(choice.identity[index])
        if chosen is None or chosen < 0:
            found = faces.faces_at(index)
            box = None if choice is None else choice.box_at(index)
            pick = pick_in_box(box, list(found.values())) if box is not None else None
            chosen = -1 if pick is None else list(found)[pick]
        rows.append(faces.points(chosen, index) if chosen >= 0 else None)
        if index % RELEASE_ROWS == RELEASE_ROWS - 1:
            release(faces.landmarks)
        if chosen >= 0:
            if followed >= 0 and chosen != followed:
                changes.add(index)
            followed = chosen
    return faces.cuts, sorted(changes)


def _every_face(
    path: Path, video: VideoInfo, state: RunState, max_faces: int, kept: KeptFrames | None
) -> Iterator[tuple[bool, list[np.ndarray]]]:
    """(first of a new shot, every face found) per frame, in order.

    Finding every face (the full-range detector on the whole frame, a face mesh per face)
    is the speaker pass's cost, three times the single face's. Each frame is searched on its
    own, but for the faces followed from the frame before (a face the detector misses): so
    spans of frames are searched on two threads (see spans_in_parallel), each span starting
    afresh with a search of the tiles as well (FaceFinder.restart)."""
    scenes = SceneDetector()
    reader = VideoReader(path, fps=video.fps, source=video)
    pictures = _keeping(reader.pictures(), kept)
    marked = state.timed_iter("decode", prefetch(_cut_marked(pictures, scenes)))
    local = threading.local()
    finders: list[FaceFinder] = []
    lock = threading.Lock()

    def find_span(items: Iterator[tuple[Picture, bool]]) -> Iterator[tuple[bool, list]]:
        finder = getattr(local, "finder", None)
        if finder is None:
            finder = local.finder = FaceFinder(max_faces)
            with lock:
                finders.append(finder)
        finder.restart()
        found: list[np.ndarray] = []
        for picture, new_shot in items:
            began = time.perf_counter()
            found = finder.find(picture.rgb(), [] if new_shot else found)
            with lock:
                state.stage_seconds["track"] = state.stage_seconds.get("track", 0.0) + (
                    time.perf_counter() - began
                )
            yield new_shot, found

    span = _span_frames(video)
    spans = spans_in_parallel(marked, find_span, span) if span >= MIN_SPAN else find_span(marked)
    try:
        yield from spans
    finally:
        spans.close()
        reader.close()
        for finder in finders:
            finder.close()


def _library_pass(
    path: Path,
    video: VideoInfo,
    renderer: MouthRenderer,
    watch: PeopleWatch,
    rows: np.ndarray,
    state: RunState,
    kept: KeptFrames | None,
) -> None:
    """Show the renderer the chosen face only, so its mouths are the speaker's own: from the
    pictures the speaker pass kept when they hold the whole clip, else decoded again."""
    observers = _Observers(renderer, watch)
    with ExitStack() as stack:
        if kept is not None and len(kept) >= len(rows):
            pictures: Iterator[Picture] = (kept.picture(i) for i in range(len(rows)))
        else:
            reader = stack.enter_context(VideoReader(path, fps=video.fps, source=video))
            pictures = state.timed_iter("decode", prefetch(reader.pictures()))
        for index, picture in enumerate(pictures):
            if index >= len(rows):
                break
            landmarks = None if np.isnan(rows[index][0, 0]) else rows[index]
            with state.timed("observe"):
                observers.observe(index, picture, landmarks)
            if index % 10 == 0:
                state.report("track", 0.6 + 0.4 * index / max(video.frame_count, 1))


def _smooth_per_shot(track: FaceTrack, cuts: list[int], fps: float) -> FaceTrack:
    """Smoothing never reaches across a scene cut (a different shot is a different pose).
    In place: the track is the largest thing the engine keeps per frame."""
    for a, b in shot_ranges(cuts, len(track.present)):
        smooth_in_place(track.landmarks[a:b], track.present[a:b], fps)
    return track
