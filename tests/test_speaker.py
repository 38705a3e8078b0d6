"""Speaker selection on a real two-person video: two GRID speakers side by side.

Both people talk in the picture, but the soundtrack is only ONE of them: auto-detect must pick
the face whose mouth follows that sound (and the other one when the track is swapped).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from openlipsync.engine.scenes import SceneDetector
from openlipsync.engine.speaker import (
    MultiFaceTrack,
    MultiFaceTracker,
    SpeakerSelectionError,
    choose_face,
    detect_faces,
    loudness_per_frame,
    pick_in_box,
)
from openlipsync.media.audio import load_audio
from openlipsync.media.video import VideoReader
from tests.conftest import media_path

LEFT, RIGHT = "video/grid_bbaf2n.mpg", "video/grid_swiz3n.mpg"
WIDTH = 360  # each half of the side-by-side frame
FPS = 25.0


@pytest.fixture(scope="module")
def side_by_side() -> list[np.ndarray]:
    left = list(VideoReader(media_path(LEFT)))
    right = list(VideoReader(media_path(RIGHT)))
    count = min(len(left), len(right))
    return [np.hstack([left[i], right[i]]) for i in range(count)]


@pytest.fixture(scope="module")
def track(side_by_side: list[np.ndarray]) -> MultiFaceTrack:
    with MultiFaceTracker(max_faces=3) as tracker:
        for frame in side_by_side:
            tracker.push(frame)
        return tracker.finish()


def _loudness(relative: str, count: int) -> np.ndarray:
    clip = load_audio(media_path(relative), 16_000)
    return loudness_per_frame(clip.samples, clip.sample_rate, FPS, count)


def _side(boxes: np.ndarray) -> np.ndarray:
    """'L' / 'R' / '-' per frame from the chosen box centres."""
    centre = (boxes[:, 0] + boxes[:, 2]) / 2
    return np.where(np.isnan(centre), "-", np.where(centre < WIDTH, "L", "R"))


def test_both_faces_tracked_with_stable_identities(track: MultiFaceTrack) -> None:
    assert len(track.identities) == 2
    for identity in track.identities:
        seen = track.seen(identity)
        assert seen.mean() > 0.95
        assert np.array_equal(seen, np.isfinite(track.mouth_opening(identity, 0, len(seen))))
        points = [track.points(identity, index) for index in np.flatnonzero(seen)]
        centres = np.array([face[:, 0].mean() for face in points])
        # One identity never jumps to the other half of the frame.
        assert np.all(centres < WIDTH) or np.all(centres > WIDTH)


@pytest.mark.parametrize("audio, expected", [(LEFT, "L"), (RIGHT, "R")])
def test_auto_detect_picks_the_face_that_speaks_the_soundtrack(
    track: MultiFaceTrack, audio: str, expected: str
) -> None:
    loudness = _loudness(audio, track.frame_count)
    choice = choose_face({"auto_detect": True}, track, FPS, source_loudness=loudness)
    sides = _side(choice.boxes)
    assert np.mean(sides == expected) > 0.95, "".join(sides)


def test_coordinates_pick_the_clicked_face_and_follow_it(track: MultiFaceTrack) -> None:
    for x, expected in ((540, "R"), (180, "L")):
        choice = choose_face({"frame_number": 10, "coordinates": [x, 150]}, track, FPS)
        assert np.mean(_side(choice.boxes) == expected) > 0.95


def test_bounding_boxes_are_honoured_frame_by_frame(
    track: MultiFaceTrack, side_by_side: list[np.ndarray]
) -> None:
    count = track.frame_count
    boxes = [
        [0, 0, WIDTH, 288] if i < 30 else None if i < 40 else [WIDTH, 0, 720, 288]
        for i in range(count)
    ]
    choice = choose_face({"bounding_boxes": boxes}, track, FPS)
    assert choice.box_at(35) is None and choice.box_at(count + 5) is None
    faces_at = [list(track.faces_at(i).values()) for i in (5, 35, 60)]
    picked = [
        pick_in_box(choice.box_at(i), faces) for i, faces in zip((5, 35, 60), faces_at, strict=True)
    ]
    assert picked[1] is None
    assert np.nanmean(faces_at[0][picked[0]], axis=0)[0] < WIDTH
    assert np.nanmean(faces_at[2][picked[2]], axis=0)[0] > WIDTH
    # A short list: frames past its end have no face to sync.
    short = choose_face({"bounding_boxes": [[0, 0, 10, 10]]}, track, FPS)
    assert short.box_at(0) is not None and short.box_at(1) is None


def test_detect_faces_finds_both_people(side_by_side: list[np.ndarray]) -> None:
    faces = detect_faces(side_by_side[0], max_faces=5)
    assert len(faces) == 2
    assert sorted(float(f[:, 0].mean()) < WIDTH for f in faces) == [False, True]
    assert detect_faces(np.zeros((100, 100, 3), np.uint8)) == []


def test_identities_restart_after_a_scene_cut(track: MultiFaceTrack) -> None:
    faces = [list(track.faces_at(i).values()) for i in range(4)]
    with MultiFaceTracker() as tracker:
        first = tracker.push_faces(faces[0])
        same = tracker.push_faces(faces[1])
        tracker.cut()
        after = tracker.push_faces(faces[2])
        result = tracker.finish()
    assert set(first) == set(same) and not set(after) & set(first)
    assert result.cuts == [2]


def test_no_option_means_no_selection(track: MultiFaceTrack) -> None:
    assert choose_face(None, track, FPS) is None
    assert choose_face({}, track, FPS) is None


@pytest.mark.parametrize(
    "option, message",
    [
        ({"frame_number": 10, "coordinates": [360, 5]}, "no face contains"),
        ({"frame_number": 10_000, "coordinates": [540, 150]}, "outside the video"),
        ({"frame_number": "10", "coordinates": [540, 150]}, "frame_number"),
        ({"frame_number": 1, "coordinates": [540]}, "coordinates"),
        ({"frame_number": 1, "coordinates": ["a", 1]}, "coordinates"),
        ({"bounding_boxes": "everything"}, "bounding_boxes"),
        ({"bounding_boxes": [[1, 2, 3]]}, "bounding_boxes"),
        ({"bounding_boxes": [[5, 5, 1, 1]]}, "x2 <= x1"),
        ({"bounding_boxes": [[0, 0, float("nan"), 1]]}, "bounding_boxes"),
        ({"bounding_boxes": [[True, 0, 5, 5]]}, "bounding_boxes"),
        ({"frame_number": 1, "coordinates": [True, 1]}, "coordinates"),
        ("auto", "must be an object"),
    ],
)
def test_bad_options_give_clear_errors(track: MultiFaceTrack, option: dict, message: str) -> None:
    with pytest.raises(SpeakerSelectionError, match=message):
        choose_face(option, track, FPS)


def test_bad_frames_and_limits_are_rejected() -> None:
    with pytest.raises(ValueError, match="RGB uint8"):
        detect_faces(np.zeros((10, 10), np.uint8))
    with pytest.raises(ValueError, match="max_faces"):
        detect_faces(np.zeros((10, 10, 3), np.uint8), max_faces=0)


def test_auto_detect_decides_per_shot_after_a_scene_cut(side_by_side: list[np.ndarray]) -> None:
    """Shot 2 swaps the two people's places: the speaker must be found again on the other side."""
    swapped = [np.hstack([frame[:, WIDTH:], frame[:, :WIDTH]]) for frame in side_by_side]
    frames = side_by_side + swapped
    detector = SceneDetector()
    with MultiFaceTracker(max_faces=3) as tracker:
        for frame in frames:
            tracker.push(frame, new_shot=detector.push(frame))
        track = tracker.finish()
    count = len(side_by_side)
    assert track.cuts == [count]
    once = _loudness(LEFT, count)
    loudness = np.concatenate([once, once])  # the same speaker's words in both shots
    choice = choose_face({"auto_detect": True}, track, FPS, source_loudness=loudness)
    sides = _side(choice.boxes)
    assert np.mean(sides[:count] == "L") > 0.95 and np.mean(sides[count:] == "R") > 0.95


def test_a_film_of_many_shots_costs_memory_per_face_seen_not_per_identity(
    track: MultiFaceTrack,
) -> None:
    """Identities restart at every cut: 200 shots of two people are 400 identities. Stored as
    one full-length array each, their landmarks took identities x frames x 3.8 KB (4.4 GiB
    here); kept as seen, they take 2 faces x frames (22 MiB)."""
    import tracemalloc

    faces = list(track.faces_at(0).values())
    loudness = np.sin(np.arange(3000) / 3.0)
    with MultiFaceTracker() as tracker:
        for index in range(3000):
            if index and index % 15 == 0:
                tracker.cut()
            tracker.push_faces([face + (index % 7) * 0.25 for face in faces])
        tracemalloc.start()
        try:
            film = tracker.finish()
            choice = choose_face({"auto_detect": True}, film, FPS, loudness)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert film.frame_count == 3000 and len(film.identities) == 400
    assert choice is not None and (choice.identity >= 0).all()
    assert peak < 64 * 2**20, peak


def test_a_long_single_shot_keeps_its_faces_landmarks_out_of_memory(
    track: MultiFaceTrack, tmp_path: Path
) -> None:
    """A three-hour podcast is one shot of two faces: their landmarks are two gigabytes.
    Held in memory (and copied whole per candidate to choose the speaker), they broke the
    engine's 2 GiB bound; with a scratch file only the chosen face's rows are read back.
    Here 5 000 frames of two faces (38 MiB of landmarks): choosing costs a few MiB."""
    import tracemalloc

    faces = list(track.faces_at(0).values())
    frames = 5_000  # tracemalloc slows the loop: 20 000 frames took 47 s of CI
    with MultiFaceTracker(path=tmp_path / "faces.f32", expected=frames) as tracker:
        tracemalloc.start()
        try:
            for index in range(frames):
                wobble = 2.0 * np.sin(index / [3.0, 5.0][2 * index // frames])
                tracker.push_faces([faces[0] + wobble, faces[1]])
            long = tracker.finish()
            choice = choose_face({"auto_detect": True}, long, FPS, np.sin(np.arange(frames) / 3.0))
            last = long.points(0, frames - 1)  # identity 0: the first face pushed
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert long.cuts == [] and len(long.identities) == 2
    assert (tmp_path / "faces.f32").stat().st_size >= 2 * frames * 478 * 2 * 4
    assert choice is not None and (choice.identity >= 0).all()
    assert last is not None and np.allclose(last, faces[0] + 2.0 * np.sin((frames - 1) / 5.0))
    assert peak < 16 * 2**20, peak


def test_two_small_faces_of_a_wide_shot_are_found_and_the_speaker_picked(
    side_by_side: list[np.ndarray],
) -> None:
    """The two speakers shrunk to faces about 31 px wide on a 1280 x 720 wall: the whole-frame
    detector sees neither (asserted); tiles find them and their meshes follow them between
    searches, so both are tracked on every frame and auto-detect still hears who speaks."""
    import cv2

    from openlipsync.engine.detection import FaceDetector
    from openlipsync.media.picture import RgbPicture

    def wide(frame: np.ndarray) -> np.ndarray:
        canvas = np.full((720, 1280, 3), 110, np.uint8)
        small = cv2.resize(frame, None, fx=0.22, fy=0.22, interpolation=cv2.INTER_AREA)
        canvas[300 : 300 + small.shape[0], 420 : 420 + small.shape[1]] = small
        return canvas

    frames = [wide(frame) for frame in side_by_side]
    detector = FaceDetector()
    try:
        assert detector.whole(RgbPicture(frames[0])) == []
    finally:
        detector.close()
    with MultiFaceTracker(max_faces=3) as tracker:
        for frame in frames:
            tracker.push(frame)
        small = tracker.finish()
    assert len(small.identities) == 2
    for identity in small.identities:
        assert small.seen(identity).mean() > 0.95
    loudness = _loudness(RIGHT, small.frame_count)
    choice = choose_face({"auto_detect": True}, small, FPS, source_loudness=loudness)
    centre = (choice.boxes[:, 0] + choice.boxes[:, 2]) / 2
    assert np.mean(centre > 420 + 0.22 * WIDTH) > 0.95  # the right-hand speaker


def test_auto_detect_follows_the_turns_of_two_people_in_one_shot() -> None:
    """A podcast two-shot: the left person speaks while the right one listens (still), then
    they swap, in one shot. Auto-detect lip-syncs each while they speak; before, one face was
    chosen for the whole shot (the right one here) and mouthed both turns."""
    left = list(VideoReader(media_path(LEFT)))
    right = list(VideoReader(media_path("video/grid_pwij3p.mpg")))
    frames = [np.hstack([left[i], right[0]]) for i in range(75)]
    frames += [np.hstack([left[74], right[i]]) for i in range(75)]
    with MultiFaceTracker(max_faces=3) as tracker:
        for frame in frames:
            tracker.push(frame)
        track = tracker.finish()
    assert track.cuts == [] and len(track.identities) == 2
    loudness = np.concatenate([_loudness(LEFT, 75), _loudness("video/grid_pwij3p.mpg", 75)])
    choice = choose_face({"auto_detect": True}, track, FPS, source_loudness=loudness)
    sides = "".join(_side(choice.boxes))
    # Each one's words (GRID: speech from about 0.5 s to 2.5 s of each clip), and the switch
    # in the silence between them.
    assert set(sides[10:62]) == {"L"} and set(sides[88:140]) == {"R"}, sides
    assert sides.count("L") + sides.count("R") == 150 and 62 <= sides.index("R") <= 88, sides


@pytest.mark.parametrize("frames", [1, 2])
def test_auto_detect_on_a_still_or_two_frames_picks_a_face(
    track: MultiFaceTrack, frames: int
) -> None:
    """A face must be seen on 3 frames of a shot to be a candidate; a still (or a 2-frame
    clip) has fewer, and auto-detect found no face at all: `generate --speaker auto` on a
    photo failed with generation_no_face_detected. The larger face is taken."""
    short = track.head(frames)
    choice = choose_face({"auto_detect": True}, short, FPS)
    assert (choice.identity >= 0).all()
    sizes = {k: float(np.ptp(points[:, 0])) for k, points in track.faces_at(0).items()}
    assert choice.identity[0] == max(sizes, key=sizes.get)


def test_a_point_on_a_large_photo_is_taken_in_the_files_pixels(tmp_path: Path) -> None:
    """A 6000 px group photo is read at 4096 (media/probe.py PHOTO_SIDE); the caller points at
    a face in the file's own pixels, and that face is the one lip-synced (the point, taken in
    the smaller picture's pixels, fell beside every face)."""
    import wave

    from PIL import Image

    from openlipsync.engine import GenerateRequest, generate

    group = Image.open(media_path("photo/multi_face.jpg")).convert("RGB")  # 1000 x 667
    path = tmp_path / "group.jpg"
    group.resize((6000, 4002), Image.Resampling.LANCZOS).save(path, quality=90)
    faces = detect_faces(np.asarray(group))  # largest first, in the small photo's pixels
    largest, second = (np.r_[f.min(axis=0), f.max(axis=0)] for f in faces[:2])
    speech = tmp_path / "speech.wav"  # 1.6 s: a 4096 px picture is slow to encode
    samples = load_audio(media_path("speech/arctic_a0009.wav"), 16000).samples[4800:30400]
    with wave.open(str(speech), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes((samples * 32767).astype("<i2").tobytes())
    centre = (second[:2] + second[2:]) / 2 * 6
    point = {"frame_number": 0, "coordinates": [float(centre[0]), float(centre[1])]}
    out = tmp_path / "out.mp4"
    options = {"active_speaker_detection": point}
    generate(GenerateRequest(path, speech, out, model="sync-3", options=options))
    with VideoReader(path) as reader:
        source = next(iter(reader)).astype(np.int16)
    changed = np.zeros(source.shape[:2], bool)
    with VideoReader(out) as reader:
        for number, frame in enumerate(reader):
            if number % 5 == 0:
                changed |= np.abs(frame.astype(np.int16) - source).max(axis=2) > 25
    scale = 6 * 4096 / 6000  # small photo -> the picture read

    def lower_half(box: np.ndarray) -> int:
        x0, y0, x1, y1 = box * scale
        return int(changed[int((y0 + y1) / 2) : int(y1), int(x0) : int(x1)].sum())

    assert lower_half(second) > 2000
    assert lower_half(largest) == 0
