"""Face tracking on real media: detection, face selection, zero-lag smoothing."""

from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from conftest import media_path

from openlipsync.engine.graphs import WarmGraphs
from openlipsync.engine.mouth import (
    EYE_OUTER_LEFT,
    EYE_OUTER_RIGHT,
    NOSE_TIP,
    face_scale,
    mouth_shape,
)
from openlipsync.engine.scenes import SceneDetector
from openlipsync.engine.tracking import (
    FACE_GRAPHS,
    HAND_GRAPHS,
    LOWER_FACE,
    MAX_HAND_LOOKS,
    FaceTrack,
    FaceTracker,
    HandWatch,
    SparseTracker,
    landmark_array,
    smooth_track,
    track_video,
)


def read_video(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def read_photo(relative: str) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(media_path(relative))), cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="module")
def grid_track() -> FaceTrack:
    return track_video(read_video(media_path("video/grid_bbaf2n.mpg")))


def test_face_found_on_every_grid_frame(grid_track: FaceTrack) -> None:
    assert len(grid_track.present) == 75
    assert grid_track.present.all()
    assert grid_track.landmarks.shape == (75, 478, 2)
    assert grid_track.landmarks.dtype == np.float32
    # Landmarks are pixels inside the 360x288 frame, and the mouth is below the nose.
    assert np.all((grid_track.landmarks >= 0) & (grid_track.landmarks[..., 0] <= 360)[..., None])
    assert np.all(grid_track.landmarks[:, 14, 1] > grid_track.landmarks[:, NOSE_TIP, 1])


def _jitter(landmarks: np.ndarray, points: list[int]) -> float:
    """Mean size of the frame-to-frame acceleration of rigid points, in eye-distance units."""
    scale = np.linalg.norm(landmarks[:, EYE_OUTER_LEFT] - landmarks[:, EYE_OUTER_RIGHT], axis=1)
    accel = np.linalg.norm(np.diff(landmarks[:, points], n=2, axis=0), axis=2)
    return float((accel / scale[1:-1, None]).mean())


def test_smoothing_removes_jitter_but_keeps_lip_motion(grid_track: FaceTrack) -> None:
    smoothed = smooth_track(grid_track, fps=25.0)
    rigid = [EYE_OUTER_LEFT, EYE_OUTER_RIGHT, NOSE_TIP, 168, 6, 133, 362]
    before, after = _jitter(grid_track.landmarks, rigid), _jitter(smoothed.landmarks, rigid)
    assert after < 0.6 * before, (before, after)
    raw_open = mouth_shape(grid_track.landmarks)[:, 0]
    new_open = mouth_shape(smoothed.landmarks)[:, 0]
    raw_range = np.percentile(raw_open, 95) - np.percentile(raw_open, 5)
    new_range = np.percentile(new_open, 95) - np.percentile(new_open, 5)
    assert new_range > 0.85 * raw_range, (raw_range, new_range)
    # Zero lag: the smoothed opening peaks where the raw opening does.
    lag = np.argmax(np.correlate(new_open - new_open.mean(), raw_open - raw_open.mean(), "full"))
    assert lag - (len(raw_open) - 1) == 0
    assert np.corrcoef(raw_open, new_open)[0, 1] > 0.95


def test_smoothing_keeps_gaps_and_short_runs() -> None:
    rng = np.random.default_rng(0)
    landmarks = rng.normal(100, 1, (12, 478, 2)).astype(np.float32)
    landmarks[:, 263, 0] += 60  # a sane eye distance
    present = np.ones(12, bool)
    present[[3, 4, 9]] = False
    landmarks[~present] = np.nan
    smoothed = smooth_track(FaceTrack(landmarks, present), fps=float("nan"))
    assert np.array_equal(smoothed.present, present)
    assert np.isnan(smoothed.landmarks[~present]).all()
    assert np.isfinite(smoothed.landmarks[present]).all()
    empty = smooth_track(FaceTrack(np.empty((0, 478, 2), np.float32), np.zeros(0, bool)), 25)
    assert empty.landmarks.shape == (0, 478, 2)


def test_largest_face_selected_in_group_photo() -> None:
    import mediapipe as mp

    image = read_photo("photo/multi_face.jpg")
    height, width = image.shape[:2]
    with mp.solutions.face_detection.FaceDetection(model_selection=1) as detector:
        detections = detector.process(image).detections
    boxes = [d.location_data.relative_bounding_box for d in detections or []]
    assert len(boxes) >= 3, "the group photo should show several faces"
    boxes = sorted(boxes, key=lambda b: b.width * b.height, reverse=True)
    largest = boxes[0]
    with FaceTracker() as tracker:
        chosen = tracker.process(image)
    assert chosen is not None and chosen.shape == (478, 2)
    nose_x, nose_y = chosen[NOSE_TIP]
    assert largest.xmin * width < nose_x < (largest.xmin + largest.width) * width
    assert largest.ymin * height < nose_y < (largest.ymin + largest.height) * height
    # The mesh covers one whole face of about the detector's size, not a neighbour's fragment.
    eye_gap = np.linalg.norm(chosen[EYE_OUTER_LEFT] - chosen[EYE_OUTER_RIGHT])
    assert 0.3 * largest.width * width < eye_gap < 1.0 * largest.width * width


def test_no_face_gives_none() -> None:
    face = read_video(media_path("video/grid_bbaf2n.mpg"))[0]
    blank = np.zeros_like(face)
    noise = np.random.default_rng(1).integers(0, 255, face.shape, dtype=np.uint8)
    with FaceTracker() as tracker:
        assert tracker.process(face) is not None
        assert tracker.process(blank) is None
        assert tracker.process(noise) is None
    track = track_video([blank, face, blank])
    assert track.present.tolist() == [False, True, False]
    assert np.isnan(track.landmarks[0]).all()


def test_bad_frames_raise_clear_errors() -> None:
    with FaceTracker() as tracker:
        with pytest.raises(ValueError, match="RGB uint8"):
            tracker.process(np.zeros((10, 10), np.uint8))
        with pytest.raises(ValueError, match="RGB uint8"):
            tracker.process(np.zeros((10, 10, 3), np.float32))
    with pytest.raises(ValueError, match="selection"):
        FaceTracker(select="leftmost")


def test_closed_form_inverse_matches_numpy() -> None:
    from openlipsync.engine.tracking import _invert

    rng = np.random.default_rng(3)
    for _ in range(20):
        affine = rng.normal(size=(2, 3)) * [[3, 3, 100], [3, 3, 100]]
        inverse = _invert(affine)
        full = np.vstack([affine, [0, 0, 1]])
        assert np.allclose(np.vstack([inverse, [0, 0, 1]]), np.linalg.inv(full), atol=1e-9)
    with pytest.raises(np.linalg.LinAlgError):
        _invert(np.zeros((2, 3)))


def test_face_near_the_frame_edge_is_tracked() -> None:
    """The mesh crop is a view when it fits and padded when it does not; both must track."""
    frame = read_video(media_path("video/grid_bbaf2n.mpg"))[0]
    shifted = np.zeros_like(frame)
    shifted[:, : frame.shape[1] - 110] = frame[:, 110:]  # the face now touches the left edge
    with FaceTracker() as tracker:
        centred, edge = tracker.process(frame), None
    with FaceTracker() as tracker:
        edge = tracker.process(shifted)
    assert centred is not None and edge is not None
    error = np.abs(edge - (centred - [110, 0])).mean()
    assert error < 0.03 * float(np.linalg.norm(centred[EYE_OUTER_LEFT] - centred[EYE_OUTER_RIGHT]))


def test_closed_form_similarity_recovers_a_known_transform() -> None:
    """The 2-D closed form must give the least-squares similarity (as Umeyama's SVD does)."""
    from openlipsync.engine.tracking import _similarity

    rng = np.random.default_rng(0)
    for _ in range(20):
        src = rng.normal(size=(16, 2)) * 50
        angle, scale = rng.uniform(-3, 3), rng.uniform(0.3, 3)
        rotation = scale * np.array(
            [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
        )
        shift = rng.normal(size=2) * 30
        found = _similarity(src, src @ rotation.T + shift)
        assert np.allclose(found[:, :2], rotation, atol=1e-9)
        assert np.allclose(found[:, 2], shift, atol=1e-6)


def _sparse(frames: list[np.ndarray], cuts: set[int] = frozenset()) -> tuple[list, SparseTracker]:
    with SparseTracker() as tracker:
        settled = [out for i, f in enumerate(frames) for out in tracker.push(f, i in cuts)]
        settled += tracker.flush()
    return settled, tracker


def test_sparse_tracking_stays_close_to_full_tracking(grid_track: FaceTrack) -> None:
    frames = read_video(media_path("video/grid_bbaf2n.mpg"))
    settled, tracker = _sparse(frames)
    # Every frame comes back once, in order; a good share of them without a face-mesh run.
    assert [id(out[0]) for out in settled] == [id(f) for f in frames]
    assert tracker.meshed + tracker.interpolated == len(frames)
    assert tracker.interpolated >= 0.3 * len(frames), tracker.interpolated
    interpolated = [i for i, out in enumerate(settled) if not out[2]]
    assert len(interpolated) == tracker.interpolated
    for i in interpolated:  # lips and jaw within 0.04 eye distances (~1.5 px here) of the mesh
        reference = grid_track.landmarks[i]
        error = np.linalg.norm(settled[i][1] - reference, axis=1)[LOWER_FACE].max()
        assert error < 0.04 * face_scale(reference), (i, error)
    # The frames just before and after an interpolated one were measured.
    assert all(settled[i - 1][2] and settled[i + 1][2] for i in interpolated)


def test_scene_cut_and_sudden_motion_get_full_tracking() -> None:
    first = read_video(media_path("video/grid_bbaf2n.mpg"))
    second = read_video(media_path("video/grid_lbax4n.mpg"))[:20]
    frames = first[:30] + second
    cuts = SceneDetector()
    found = {i for i, f in enumerate(frames) if cuts.push(f)}
    assert found == {30}  # the cut between the two speakers
    settled, tracker = _sparse(frames, found)
    assert tracker.interpolated > 0
    # Frame 29 waited for a successor to interpolate from, but that one is of another shot.
    assert settled[29][2] and settled[30][2]
    assert settled[30][1] is not None
    # A frame that jumps away from both neighbours (a frame of the other clip inserted with no
    # cut declared) is never averaged: the mesh measures it.
    plain, _ = _sparse(first[:20])
    jolt, _ = _sparse(first[:11] + [second[0]] + first[12:20])
    assert not plain[11][2] and jolt[11][2]


def test_sparse_tracker_without_residual_meshes_every_frame() -> None:
    frames = read_video(media_path("video/grid_bbaf2n.mpg"))[:8]
    with SparseTracker(residual=None) as tracker:
        settled = [out for f in frames for out in tracker.push(f)] + tracker.flush()
    assert len(settled) == 8 and all(measured for _, _, measured in settled)
    assert tracker.meshed == 8 and tracker.interpolated == 0


def test_landmark_array_reads_the_wire_format_and_falls_back() -> None:
    from mediapipe.framework.formats import landmark_pb2

    rng = np.random.default_rng(0)
    points = rng.random((478, 3)).astype(np.float32)
    points[5] = 0.0  # zeros are still written (proto2 fields that are set)
    message = landmark_pb2.NormalizedLandmarkList()
    for x, y, z in points:
        message.landmark.add(x=x, y=y, z=z)
    np.testing.assert_array_equal(landmark_array(message), points[:, :2])
    message.landmark[7].visibility = 0.5  # another field: read point by point
    np.testing.assert_array_equal(landmark_array(message), points[:, :2])


def test_parallel_spans_give_the_track_of_one_tracker(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two trackers on alternate spans (each span re-detects the face) smooth to the same
    track as one tracker following the whole clip."""
    from openlipsync.engine import analysis
    from openlipsync.engine.render import MouthRenderer
    from openlipsync.engine.run_state import RunState
    from openlipsync.media.probe import probe

    path = media_path("video/grid_bbaf2n.mpg")
    video = probe(path).video
    tracks = {}
    for name, span in (("one", 10_000), ("spans", 12)):
        monkeypatch.setattr(analysis, "MAX_SPAN", span)
        monkeypatch.setattr(analysis, "MIN_SPAN", 12 if name == "spans" else 10_001)
        renderer = MouthRenderer(video.width, video.height, video.fps, "standard")
        try:
            tracks[name] = analysis.analyse(path, video, renderer, RunState()).track
        finally:
            renderer.close()
    one, spans = tracks["one"], tracks["spans"]
    assert np.array_equal(one.present, spans.present) and one.present.all()
    scale = face_scale(one.landmarks)
    error = np.linalg.norm(one.landmarks - spans.landmarks, axis=2)[:, LOWER_FACE].max(axis=1)
    assert np.median(error / scale) < 0.01 and (error / scale).max() < 0.04


def _zoomed(frame: np.ndarray, scale: float) -> np.ndarray:
    """`frame` enlarged by `scale` about its centre (a person leaning towards the camera)."""
    height, width = frame.shape[:2]
    zoom = cv2.getRotationMatrix2D((width / 2, height / 2), 0, scale)
    return cv2.warpAffine(frame, zoom, (width, height), borderMode=cv2.BORDER_REPLICATE)


def _two_shot(left_scales: list[float]) -> list[np.ndarray]:
    """Two real people side by side (bbaf2n left, lbax4n right, 720x288), the left one
    zoomed by the given scale on each frame."""
    left = read_video(media_path("video/grid_bbaf2n.mpg"))
    right = read_video(media_path("video/grid_lbax4n.mpg"))
    return [
        np.concatenate([_zoomed(left[i % 75], scale), right[i % 75]], axis=1)
        for i, scale in enumerate(left_scales)
    ]


def test_parallel_spans_keep_following_one_of_two_people(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A two-shot whose left person leans in until their face is the larger: each span starts
    by detecting the largest face, and without rejoining the spans the track (and the
    lip-sync) hopped from the right person to the left one at the first span starting after
    that (frames 48 on). It follows the right one, found first, to the end."""
    from openlipsync.engine import analysis
    from openlipsync.engine.render import MouthRenderer
    from openlipsync.engine.run_state import RunState
    from openlipsync.media.probe import probe
    from tests.media_helpers import write_frames

    scales = [0.95 + 0.35 * min(i / 60, 1.0) for i in range(96)]  # 0.95 -> 1.3 by frame 60
    path = write_frames(tmp_path / "two_shot.mp4", _two_shot(scales))
    monkeypatch.setattr(analysis, "MAX_SPAN", 24)
    video = probe(path).video
    renderer = MouthRenderer(video.width, video.height, video.fps, "standard")
    try:
        result = analysis.analyse(path, video, renderer, RunState())
    finally:
        renderer.close()
    assert result.cuts == [] and result.track.present.all()
    eyes_x = result.track.landmarks[:, [EYE_OUTER_LEFT, EYE_OUTER_RIGHT], 0].mean(axis=1)
    assert (eyes_x > 360).all(), np.flatnonzero(eyes_x <= 360)
    # The left face is the larger one by far at the end: a fresh start picks it.
    with FaceTracker() as tracker:
        assert tracker.process(_two_shot(scales)[-1])[:, 0].mean() < 360


def test_a_face_lost_by_the_mesh_is_found_again_where_it_was() -> None:
    """When the mesh loses the face it follows (here: a crop too small to hold it), the
    detector looks again and takes the face still there, not the largest in view."""
    frame = _two_shot([1.3])[0]
    with FaceTracker() as tracker:
        largest = tracker.process(frame)
        assert largest[:, 0].mean() < 360  # the larger, left face
        tracker.forget()
        right_alone = frame.copy()
        right_alone[:, :360] = 0
        followed = tracker.process(right_alone)
        centre = followed.mean(axis=0)
        tracker.followed = (float(centre[0]), float(centre[1]), 10.0)  # the mesh finds nothing
        found = tracker.process(frame)
    assert found is not None and found[:, 0].mean() > 360
    assert np.abs(found.mean(axis=0) - centre).max() < 0.1 * face_scale(found)


def test_warmed_up_and_forgetful_trackers_see_what_a_new_one_sees() -> None:
    """warm_up shows the graphs a picture with no face, and forget does the same to start a
    new shot; neither may change a single landmark against a tracker made for the frames."""
    first = read_video(media_path("video/grid_bbaf2n.mpg"))[:12]
    second = read_video(media_path("video/grid_lbax4n.mpg"))[:12]
    with FaceTracker() as fresh:
        expected = [fresh.process(frame) for frame in first]
    with FaceTracker() as fresh:
        expected += [fresh.process(frame) for frame in second]
    with FaceTracker() as tracker:
        tracker.warm_up()
        seen = [tracker.process(frame) for frame in first]
        tracker.forget()
        assert tracker.followed is None
        seen += [tracker.process(frame) for frame in second]
    assert all(a is not None for a in expected)
    for a, b in zip(expected, seen, strict=True):
        np.testing.assert_array_equal(a, b)


def test_graphs_handed_back_track_the_next_video_as_new_ones_do() -> None:
    """SparseTracker and HandWatch hand their MediaPipe graphs back for the next generation of
    the process (engine/graphs.py): a graph that followed one face, or looked for hands on
    another video, gives the next user exactly what a new graph gives."""
    first = read_video(media_path("video/grid_bbaf2n.mpg"))[:10]
    second = read_video(media_path("video/grid_lbax4n.mpg"))[:10]
    hand = read_video(media_path("video/pexels_woman_expressions.mp4"))[100:160:10]
    FACE_GRAPHS.clear()
    HAND_GRAPHS.clear()

    def track(frames: list[np.ndarray]) -> list[np.ndarray | None]:
        with SparseTracker(None) as tracker:
            settled = [out for f in frames for out in tracker.push(f)] + tracker.flush()
        return [landmarks for _, landmarks, _ in settled]

    def hands(frames: list[np.ndarray]) -> dict[int, bool]:
        with FaceTracker() as tracker:
            points = [tracker.process(frame) for frame in frames]
        watch = HandWatch(every=1)
        for index, (frame, landmarks) in enumerate(zip(frames, points, strict=True)):
            watch.observe(index, frame, landmarks)
            assert len(watch._looks) <= MAX_HAND_LOOKS  # the observer waits rather than hoards
        samples = watch.samples()
        watch.close()
        return samples

    expected, expected_hands = track(second), hands(hand)
    assert FACE_GRAPHS.idle() == 1 and HAND_GRAPHS.idle() == 1
    track(first)
    hands(second)
    again, again_hands = track(second), hands(hand)
    assert FACE_GRAPHS.idle() == 1 and HAND_GRAPHS.idle() == 1  # the same graphs, reused
    assert all(a is not None for a in expected) and any(expected_hands.values())
    for a, b in zip(expected, again, strict=True):
        np.testing.assert_array_equal(a, b)
    assert again_hands == expected_hands


def test_warm_graphs_keep_a_few_and_close_what_cannot_start_afresh() -> None:
    closed: list[str] = []

    def reset(graph: str) -> None:
        if graph.startswith("broken"):
            raise RuntimeError("graph failed")

    made = iter(["a", "b", "c", "broken"])
    pool = WarmGraphs(lambda: next(made), reset, closed.append, keep=2)
    graphs = [pool.take() for _ in range(4)]
    assert graphs == ["a", "b", "c", "broken"]
    for graph in graphs:
        pool.give(graph)
    assert pool.idle() == 2 and closed == ["c", "broken"]  # beyond `keep`; cannot reset
    assert {pool.take(), pool.take()} == {"a", "b"}
    pool.give("a")
    pool.clear()
    assert pool.idle() == 0 and closed == ["c", "broken", "a"]


def test_a_forked_child_makes_its_own_graphs() -> None:
    """Graphs' threads do not survive a fork: a prefork worker's child never takes the idle
    graphs its parent left (it would wait on threads that are not there)."""
    import os

    made = iter(["parent", "child"])
    pool = WarmGraphs(lambda: next(made), lambda graph: None, lambda graph: None)
    pool.give(pool.take())
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child reports what it was handed, and leaves without clean-up
        os.write(write, pool.take().encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    assert os.read(read, 16) == b"child"
    os.close(read)
    assert pool.take() == "parent"


@pytest.mark.parametrize("cut", [150, 165])
def test_a_face_cut_through_the_mouth_by_the_frame_edge_is_tracked(cut: int) -> None:
    """On a crop black past the frame's edge the mesh finds no face; it looks again on one
    that repeats the edge. The visible mouth corner lands where the uncut frame has it; the
    hidden one is a guess."""
    frame = read_video(media_path("video/grid_bbaf2n.mpg"))[0]
    with FaceTracker() as tracker:
        whole = tracker.process(frame)
    with FaceTracker() as tracker:
        cut_off = tracker.process(np.ascontiguousarray(frame[:, cut:]))
    assert whole is not None and cut_off is not None
    assert whole[61, 0] < cut < whole[291, 0]  # the cut goes through the mouth
    visible = cut_off[291] - (whole[291] - [cut, 0])
    assert np.linalg.norm(visible) < 3.0
