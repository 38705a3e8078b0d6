"""Face tracking: MediaPipe face mesh per frame, then offline zero-lag smoothing of the whole track.

Raw face-mesh landmarks jitter by a pixel or two from frame to frame; pasted mouths would shake
with them. Because the engine sees the whole video before it renders, smoothing can be offline
and symmetric in time (no lag). Rigid head pose and face shape are smoothed strongly; the lips
and jaw only lightly, so fast articulation survives.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.ndimage import median_filter
from scipy.signal import savgol_filter

from openlipsync.engine.detection import FaceDetector
from openlipsync.engine.graphs import WarmGraphs
from openlipsync.engine.mouth import JAW_LINE, LIPS_INNER, LIPS_OUTER, face_scale
from openlipsync.engine.native_logs import chatter_hidden, process
from openlipsync.engine.scenes import frame_runs
from openlipsync.media.mapped import grown, in_blocks, release, scratch_array
from openlipsync.media.picture import Box, Picture, RgbPicture, padded_square, shrink_square

N_LANDMARKS = 478
# Crops bigger than this are shrunk before the mesh (it works at 192 px internally anyway).
MESH_INPUT_CAP = 320
# SparseTracker: a frame is interpolated when its lower face differs from its neighbours'
# average by at most this many grey levels (mean over a RESIDUAL_THUMB^2 thumbnail). Measured
# on real talking heads: below 1.0 the interpolated lips and jaw stay within about 0.03 eye
# distances of the face mesh's own answer (its own frame-to-frame noise is about 0.01).
INTERP_RESIDUAL = 1.0
RESIDUAL_THUMB = 24
# Frames smoothed at once (float64 copies of all 478 points: ~8 MB per copy at 1024 frames).
SMOOTH_BLOCK = 1024
# While no face is found, the detector searches tiles for small faces on the first frame and
# then on every this-many-th (detection.py; 0.4 s at 25 fps).
TILED_EVERY = 10
# A face detected within this share of its size from the centre of the crop the mesh lost its
# face in is the face that was followed (another face is at least a face's width away).
NEAR_FOLLOWED = 0.5
# What warm_up shows a MediaPipe graph: a picture with no face in it.
BLANK = np.zeros((192, 192, 3), np.uint8)
MAX_HAND_LOOKS = 8  # hand samples waiting for the model before the observer waits for it

# Points that move rigidly with the skull (eye corners, nose bridge and base); used to factor the
# head pose out of the landmarks before smoothing.
STABLE_POINTS = [33, 133, 362, 263, 168, 6, 197, 195, 5, 4, 1, 2, 98, 327, 129, 358]

# Lower-lip/jaw area that articulates: smoothed lightly. Everything else is smoothed strongly.
ARTICULATING = sorted(
    set(LIPS_OUTER + LIPS_INNER + JAW_LINE)
    | {
        # Lip body and the skin between lower lip and chin.
        *(146, 91, 181, 84, 17, 314, 405, 321, 375, 61, 291, 185, 40, 39, 37, 0, 267, 269, 270),
        *(409, 76, 77, 90, 180, 85, 16, 315, 404, 320, 307, 306, 62, 96, 89, 179, 86, 15),
        *(316, 403, 319, 325, 292, 183, 42, 41, 38, 12, 268, 271, 272, 407),
        *(57, 43, 106, 182, 83, 18, 313, 406, 335, 273, 287, 204, 194, 201, 200, 421, 418, 424),
        *(32, 140, 171, 175, 396, 369, 262, 208, 199, 428, 211, 431, 210, 430, 214, 434),
    }
)


MISSING = np.full((N_LANDMARKS, 2), np.nan, dtype=np.float32)
MAX_EXPECTED_ROWS = 400_000  # frames of landmarks reserved up front at most (3 h at 37 fps)
RELEASE_ROWS = 1024  # rows of a mapped track written between two releases (4 MB)

# Lips and jaw: what SparseTracker's interpolation check looks at.
LOWER_FACE = sorted(set(LIPS_OUTER + LIPS_INNER + JAW_LINE))

Frame = np.ndarray | Picture  # an RGB uint8 (H, W, 3) array, or a Picture of one


@dataclass
class FaceTrack:
    landmarks: np.ndarray  # float32 (N, 478, 2) pixel coords in the frame; NaN rows where no face
    present: np.ndarray  # bool (N,)


class LandmarkRows:
    """Per-frame (478, 2) landmarks in one growing float32 array (NaN rows: no face).

    A list of per-frame arrays costs an object header per frame and, when stacked, a second
    copy of the whole track. With a `path` the array is a scratch file (media/mapped.py): at
    3 h of 25 fps the track is a gigabyte, so the rows written go out of memory every
    RELEASE_ROWS rows.
    """

    def __init__(self, expected: int, path: Path | None = None) -> None:
        # Untouched rows cost no memory (nor disk), only address space: room for the expected
        # count and a little more, so that growing (a copy, in memory) is the exception.
        room = (min(max(int(expected) * 51 // 50, 16), MAX_EXPECTED_ROWS), N_LANDMARKS, 2)
        self._data = (
            np.empty(room, np.float32) if path is None else scratch_array(path, room, np.float32)
        )
        self.count = 0

    def append(self, landmarks: np.ndarray | None) -> None:
        if self.count == len(self._data):  # the probe's frame count was an estimate
            self._data = grown(self._data, len(self._data) * 5 // 4 + 16)
        self._data[self.count] = MISSING if landmarks is None else landmarks
        self.count += 1
        if self.count % RELEASE_ROWS == 0:
            release(self._data)

    def array(self) -> np.ndarray:
        """The rows so far; trimmed by a copy only when in memory and the estimate was far too
        high."""
        if isinstance(self._data, np.memmap):
            release(self._data)
        elif self.count < len(self._data) * 9 // 10:
            self._data = self._data[: self.count].copy()
        return self._data[: self.count]


class FaceTracker:
    """Follows one face through a video: full-range detection picks it, face mesh tracks it.

    MediaPipe's face mesh finds faces with a short-range detector that misses small or distant
    faces and, with several people in view, follows whichever it likes. So the face is chosen
    by the full-range face detector, on tiles too for the small faces of wide shots
    (detection.py; select="largest": the largest box), and the mesh then runs
    in tracking mode on a crop that follows that face from frame to frame. When the mesh loses
    the face, the detector looks again on the next frame.
    """

    def __init__(self, select: str = "largest") -> None:
        if select not in ("largest",):
            raise ValueError(f"unknown face selection {select!r}; expected 'largest'")
        import mediapipe as mp

        self.select = select
        self._detector = FaceDetector()
        self._misses = 0  # detections in a row that found no face (see _detect)
        with chatter_hidden():
            self._mesh = mp.solutions.face_mesh.FaceMesh(
                static_image_mode=False,
                max_num_faces=1,
                refine_landmarks=True,
                min_detection_confidence=0.5,
                min_tracking_confidence=0.5,
            )
        self._roi: tuple[float, float, float] | None = None  # (cx, cy, side) of the crop

    def __enter__(self) -> FaceTracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def warm_up(self) -> FaceTracker:
        """Run both graphs once on a picture with no face. A graph's first call loads its model
        and sets up its CPU delegate (20-30 ms each, on the thread that makes the call); done
        here, on another thread while the first frames decode, the first frame does not wait
        for it. A face mesh that found no face begins its next frame as a new one does."""
        self._detector.warm_up(BLANK)
        self.forget()
        return self

    def forget(self) -> None:
        """Start afresh: the next frame is searched for a face as if it were the first. The
        mesh keeps the last face it saw to crop the next frame around it; a picture with no
        face clears that (a new graph costs ten times more)."""
        process(self._mesh, BLANK)
        self._roi = None
        self._misses = 0

    def process(self, frame: Frame) -> np.ndarray | None:
        """(478, 2) float32 pixel landmarks of the selected face, or None when there is none.

        `frame` is an RGB uint8 (H, W, 3) array or a Picture (then only the face's crop is
        converted, and the whole frame only when the detector has to look for the face)."""
        picture = as_picture(frame)
        followed = self._roi
        if self._roi is None:
            self._roi = self._detect(picture)
            if self._roi is None:
                return None
        landmarks = self._mesh_in_roi(picture)
        if landmarks is None and followed is not None:  # lost it: look for the face afresh
            self._roi = self._detect(picture, near=followed)
            landmarks = self._mesh_in_roi(picture) if self._roi is not None else None
        if landmarks is None:
            self._roi = None
            return None
        self._roi = roi_of(landmarks)
        return landmarks

    def follow(self, landmarks: np.ndarray) -> None:
        """Go on from a face found in the previous frame (by another tracker): the next frame
        is meshed around it, as if this tracker had found it."""
        self._roi = roi_of(landmarks)
        self._misses = 0

    @property
    def followed(self) -> tuple[float, float, float] | None:
        """Where the face is followed: (cx, cy, side) of the mesh's crop, or None when the next
        frame starts with a detection. Settable: a caller that meshes a frame out of order
        puts the crop back where the sequence left it, or forgets it with None."""
        return self._roi

    @followed.setter
    def followed(self, roi: tuple[float, float, float] | None) -> None:
        self._roi = roi

    def _detect(
        self, frame: Picture, near: tuple[float, float, float] | None = None
    ) -> tuple[float, float, float] | None:
        """The crop around the largest face: of the whole frame, else of its tiles (small
        faces). Tiles cost six detections: while no face is found they are searched on the
        first miss and every TILED_EVERY-th after, not on every frame without a face.

        `near`: the crop the mesh just lost its face in. A face still there is the one
        followed (a blink or a turn loses the mesh for a frame): with two people of about one
        size in view, the largest may be the other one, and the lip-sync would jump to them."""
        faces = self._detector.whole(frame)
        if not faces and self._misses % TILED_EVERY == 0:
            faces = self._detector.tiled(frame)
        if not faces:
            self._misses += 1
            return None
        self._misses = 0
        if near is not None:  # the followed face, when it is still there
            there = [
                f
                for f in faces
                if np.hypot(f.cx - near[0], f.cy - near[1])
                <= NEAR_FOLLOWED * max(f.width, f.height)
            ]
            faces = there or faces
        face = max(faces, key=lambda f: f.area)
        return face.cx, face.cy, 2.2 * max(face.width, face.height)

    def _mesh_in_roi(self, frame: Picture) -> np.ndarray | None:
        """Face mesh on a square crop around the followed face, mapped back to frame pixels."""
        cx, cy, side = self._roi
        side = max(side, 32.0)
        x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
        size = int(round(side))
        crop, factor = frame.square(x0, y0, size, MESH_INPUT_CAP)
        result = process(self._mesh, crop)
        past_edge = x0 < 0 or y0 < 0 or x0 + size > frame.width or y0 + size > frame.height
        if not result.multi_face_landmarks and past_edge:  # a face the frame's edge cuts
            crop, factor = frame.square(x0, y0, size, MESH_INPUT_CAP, edge=True)
            result = process(self._mesh, crop)
        if not result.multi_face_landmarks:
            return None
        n = crop.shape[0]
        points = landmark_array(result.multi_face_landmarks[0]) * n
        points = points / factor + np.array([x0, y0], np.float32)
        return points

    def close(self) -> None:
        self._mesh.close()
        self._detector.close()


class SparseTracker:
    """FaceTracker on about every other frame where the lower face moves smoothly.

    A frame between two meshed frames of the same shot gets the average of their landmarks
    when its lower face looks like the average of theirs (a small interpolation residual on a
    tiny grey thumbnail of the mouth and jaw); otherwise, and around scene cuts and lost faces,
    it is meshed like any other. So a closure or a jerk of the head is measured, and a mouth
    that moves steadily, or not at all, costs half the face-mesh time.

    `push` returns the frames it has settled, in order, as (frame, landmarks or None, meshed).
    """

    def __init__(self, residual: float | None = INTERP_RESIDUAL) -> None:
        self.residual = residual  # None: mesh every frame
        self._tracker = FACE_GRAPHS.take()  # handed back, forgetting the face, by close()
        self._last: tuple[Frame, np.ndarray] | None = None  # previous frame, meshed, a face
        self._pending: Frame | None = None  # a frame waiting for its successor
        self.meshed = 0
        self.interpolated = 0

    def __enter__(self) -> SparseTracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def push(
        self, frame: Frame, new_shot: bool = False
    ) -> list[tuple[Frame, np.ndarray | None, bool]]:
        settled = []
        if new_shot:  # the pending frame belongs to the old shot: measure it there
            settled += self.flush()
            self._tracker.forget()
            self._last = None
        if self._pending is None and self._last is not None and self.residual is not None:
            self._pending = frame
            return settled
        landmarks = self._mesh(frame)
        if self._pending is not None:
            settled.append(self._settle(self._pending, frame, landmarks))
            self._pending = None
        settled.append((frame, landmarks, True))
        self._last = None if landmarks is None else (frame, landmarks)
        return settled

    def restart(self, follow: np.ndarray | None = None) -> None:
        """Forget the followed face (the next frame is not this one's successor): the next
        push finds it afresh with the detector, or (`follow`: the landmarks of the frame
        before the next one) goes on from that face. Call between flush and the next push."""
        self._last = None
        self._pending = None
        self._tracker.followed = None
        if follow is not None:
            self._tracker.follow(follow)

    def flush(self) -> list[tuple[Frame, np.ndarray | None, bool]]:
        """Settle the frame still waiting (at the end of the video or of a shot)."""
        if self._pending is None:
            return []
        frame, self._pending = self._pending, None
        return [(frame, self._mesh(frame), True)]

    def _settle(
        self, frame: Frame, after: Frame, after_landmarks: np.ndarray | None
    ) -> tuple[Frame, np.ndarray | None, bool]:
        """The pending frame: interpolated between its meshed neighbours when that fits."""
        assert self._last is not None
        before, before_landmarks = self._last
        if after_landmarks is not None:
            pictures = [as_picture(image) for image in (before, frame, after)]
            box = _lower_face_box(before_landmarks, (pictures[1].height, pictures[1].width))
            residual = self.residual if self.residual is not None else -1.0
            if box is not None and _residual(*pictures, box) <= residual:
                self.interpolated += 1
                return frame, (before_landmarks + after_landmarks) / 2, False
        roi = self._tracker.followed
        landmarks = self._mesh(frame)
        if after_landmarks is not None:  # measured out of order: go on from the later frame
            self._tracker.followed = roi
        return frame, landmarks, True

    def _mesh(self, frame: Frame) -> np.ndarray | None:
        self.meshed += 1
        return self._tracker.process(frame)

    def close(self) -> None:
        tracker, self._tracker = self._tracker, None
        if tracker is not None:
            FACE_GRAPHS.give(tracker)


def roi_of(landmarks: np.ndarray) -> tuple[float, float, float]:
    """The mesh's crop around a face: (cx, cy, side), twice the landmarks' extent."""
    extent = landmarks.max(axis=0) - landmarks.min(axis=0)
    return (*landmarks.mean(axis=0).tolist(), 2.0 * float(extent.max()))


def _new_face_tracker() -> FaceTracker:
    return FaceTracker().warm_up()


# Graphs come out warm (made and called once) and go back reset: a taken one is ready to use.
FACE_GRAPHS = WarmGraphs(_new_face_tracker, FaceTracker.forget, FaceTracker.close)


def _lower_face_box(landmarks: np.ndarray, shape: tuple[int, ...]) -> Box | None:
    """(x0, y0, x1, y1) around lips and jaw with a small margin, inside the frame."""
    points = landmarks[LOWER_FACE]
    (x0, y0), (x1, y1) = points.min(axis=0), points.max(axis=0)
    margin = 0.1 * max(x1 - x0, y1 - y0)
    x0, y0 = max(int(x0 - margin), 0), max(int(y0 - margin), 0)
    x1, y1 = min(int(x1 + margin) + 1, shape[1]), min(int(y1 + margin) + 1, shape[0])
    if x1 - x0 < 8 or y1 - y0 < 8:
        return None
    return x0, y0, x1, y1


def _residual(before: Picture, frame: Picture, after: Picture, box: Box) -> float:
    """Mean grey-level distance between the frame's lower face and its neighbours' average."""
    thumbs = [image.grey_thumbnail(box, RESIDUAL_THUMB) for image in (before, frame, after)]
    return float(np.abs(thumbs[1] - (thumbs[0] + thumbs[2]) / 2).mean())


# NormalizedLandmark on the wire when it holds exactly x, y and z: a 15-byte message.
_WIRE = np.dtype(
    [("head", "u1", 3), ("x", "<f4"), ("tag_y", "u1"), ("y", "<f4"), ("tag_z", "u1"), ("z", "<f4")]
)
_WIRE_HEAD = np.array([0x0A, 0x0F, 0x0D], np.uint8)


def landmark_array(landmarks) -> np.ndarray:  # noqa: ANN001 - a MediaPipe protobuf message
    """(N_LANDMARKS, 2) float32 normalised x, y of a NormalizedLandmarkList.

    Reading 478 protobuf objects attribute by attribute costs over half a millisecond per
    frame, all of it holding the GIL that the other analysis threads wait for; the serialised
    message is a fixed-stride array when every point has exactly x, y and z, so numpy reads it
    in one go. Anything else is read point by point.
    """
    data = landmarks.SerializeToString()
    if len(data) % _WIRE.itemsize == 0:
        wire = np.frombuffer(data, _WIRE)
        if (
            (wire["head"] == _WIRE_HEAD).all()
            and (wire["tag_y"] == 0x15).all()
            and (wire["tag_z"] == 0x1D).all()
        ):
            return np.stack([wire["x"], wire["y"]], axis=1)[:N_LANDMARKS].astype(np.float32)
    points = [(p.x, p.y) for p in landmarks.landmark]
    return np.array(points, dtype=np.float32).reshape(-1, 2)[:N_LANDMARKS]


def as_picture(frame: Frame) -> Picture:
    """A Picture for an RGB uint8 (H, W, 3) array; Pictures pass through."""
    if isinstance(frame, np.ndarray):
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"expected an RGB uint8 (H, W, 3) frame, got {frame.shape}")
        return RgbPicture(frame)
    return frame


def track_video(frames: Iterable[np.ndarray]) -> FaceTrack:
    """Raw (unsmoothed) track of every frame."""
    missing = np.full((N_LANDMARKS, 2), np.nan, dtype=np.float32)
    rows = []
    with FaceTracker() as tracker:
        for frame in frames:
            landmarks = tracker.process(frame)
            rows.append(missing if landmarks is None else landmarks)
    landmarks = np.stack(rows) if rows else np.empty((0, N_LANDMARKS, 2), np.float32)
    return FaceTrack(landmarks=landmarks, present=~np.isnan(landmarks[:, 0, 0]))


def smooth_track(track: FaceTrack, fps: float) -> FaceTrack:
    """Zero-lag smoothing of each run of face frames, on a copy (see smooth_in_place)."""
    landmarks = track.landmarks.astype(np.float32)
    present = track.present.astype(bool)
    smooth_in_place(landmarks, present, fps)
    return FaceTrack(landmarks=landmarks, present=present)


def smooth_in_place(landmarks: np.ndarray, present: np.ndarray, fps: float) -> None:
    """Zero-lag smoothing of each run of consecutive face frames, written over `landmarks`.

    Each frame is split into a head pose (similarity of the stable points to the run's mean face)
    and a pose-free shape. Pose and non-articulating shape get a long Savitzky-Golay window;
    lips and jaw a short one. A running median first removes single-frame detector glitches.
    In place because the track of a 3-hour video is a gigabyte: a copy would double it.
    """
    present = np.asarray(present, bool)
    fps = float(fps) if fps and np.isfinite(fps) and fps > 0 else 25.0
    for start, stop in frame_runs(present):
        _smooth_run(landmarks[start:stop], fps)
    landmarks[~present] = np.nan
    release(landmarks)


def _odd_window(seconds: float, fps: float, length: int) -> int:
    window = int(round(seconds * fps)) | 1
    limit = length if length % 2 else length - 1
    return max(1, min(window, limit))


def _savgol(values: np.ndarray, window: int, order: int = 2) -> np.ndarray:
    if window <= order + 1:
        return values
    return savgol_filter(values, window, order, axis=0, mode="interp")


def _smooth_run(run: np.ndarray, fps: float) -> None:
    """Smooth one run of face frames in place, SMOOTH_BLOCK frames at a time.

    The shape smoothing works on float64 copies of every point; over a whole run (hours, for a
    single-shot video) those copies were gigabytes. The filters are local (a 3-frame median,
    then Savitzky-Golay windows), so each block is computed with `reach` frames of context on
    both sides and gives exactly the whole-run values. A block is written back only after the
    next one has read its context from the unsmoothed frames.
    """
    n = len(run)
    if n < 3:
        return
    stable = in_blocks(lambda block: block[:, STABLE_POINTS], run)  # 128 bytes per frame
    reference = stable.mean(axis=0)
    poses = np.stack([_similarity(points, reference) for points in stable])  # (n, 2, 3)
    del stable
    strong = _odd_window(0.36, fps, n)
    light = _odd_window(0.12, fps, n)
    pose_params = _savgol(poses.reshape(n, 6), strong).reshape(n, 2, 3)
    inverse = np.stack([_invert(p) for p in pose_params])
    reach = strong // 2 + 2  # the median's one frame, then half the longest window
    pending: tuple[int, np.ndarray] | None = None
    for start, stop in _blocks(n, SMOOTH_BLOCK):
        lo, hi = max(0, start - reach), min(n, stop + reach)
        out = _smooth_block(run[lo:hi], poses[lo:hi], inverse[lo:hi], strong, light)
        if pending is not None:
            run[pending[0] : pending[0] + len(pending[1])] = pending[1]
            release(run)  # a mapped track (media/mapped.py) keeps one block in memory
        pending = (start, out[start - lo : stop - lo])
    if pending is not None:
        run[pending[0] : pending[0] + len(pending[1])] = pending[1]


def _blocks(n: int, size: int) -> list[tuple[int, int]]:
    """[start, stop) blocks of `size` frames covering n; the last one takes a short remainder
    (so every block is at least as long as the smoothing windows)."""
    starts = list(range(0, n, size))
    if len(starts) > 1 and n - starts[-1] < size:
        starts.pop()
    return list(zip(starts, [*starts[1:], n], strict=True))


def _smooth_block(
    run: np.ndarray, poses: np.ndarray, inverse: np.ndarray, strong: int, light: int
) -> np.ndarray:
    """The pose-free shape of these frames smoothed, and mapped back by the smoothed poses."""
    # Pose-free shape: each frame mapped into the reference frame.
    local = np.einsum("nij,nkj->nki", poses[:, :, :2], run) + poses[:, None, :, 2]
    # Spike removal (median over 3 frames) on the pose-free shape, then zero-lag smoothing.
    local = median_filter(local, size=(3, 1, 1), mode="nearest")
    smoothed = _savgol(local, strong)
    smoothed[:, ARTICULATING] = _savgol(local[:, ARTICULATING], light)
    out = np.einsum("nij,nkj->nki", inverse[:, :, :2], smoothed) + inverse[:, None, :, 2]
    return out.astype(np.float32)


def _similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (2, 3) mapping src points onto dst points.

    The 2-D case of Umeyama in closed form (scaled rotation [[a, -b], [b, a]]): an SVD through
    LAPACK costs milliseconds per call when the machine is busy; this is a few sums.
    """
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    a, b = src - src_mean, dst - dst_mean
    norm = max(float((a * a).sum()), 1e-9)
    cos = float((a[:, 0] * b[:, 0] + a[:, 1] * b[:, 1]).sum()) / norm
    sin = float((a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]).sum()) / norm
    matrix = np.array([[cos, -sin], [sin, cos]])
    shift = dst_mean - np.array(
        [cos * src_mean[0] - sin * src_mean[1], sin * src_mean[0] + cos * src_mean[1]]
    )
    return np.hstack([matrix, shift[:, None]])


def _apply(affine: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(n, 2) points through a (2, 3) affine, elementwise: a BLAS matmul on arrays this small
    costs more in thread hand-off than in arithmetic when the machine is busy."""
    points = np.asarray(points, np.float64)
    x, y = points[:, 0], points[:, 1]
    return np.stack(
        [
            affine[0, 0] * x + affine[0, 1] * y + affine[0, 2],
            affine[1, 0] * x + affine[1, 1] * y + affine[1, 2],
        ],
        axis=1,
    )


def _compose_affine(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """(2, 3) affine applying `inner` then `outer`."""
    return np.hstack([outer[:, :2] @ inner[:, :2], outer[:, :2] @ inner[:, 2:] + outer[:, 2:]])


def _invert(affine: np.ndarray) -> np.ndarray:
    """Inverse of a (2, 3) affine in closed form: np.linalg.inv on a 2x2 matrix costs far more
    than the arithmetic (LAPACK dispatch, slow under thread contention)."""
    (a, b), (c, d) = affine[0, :2], affine[1, :2]
    det = a * d - b * c
    if not np.isfinite(det) or abs(det) < 1e-12:
        raise np.linalg.LinAlgError("singular affine")
    linear = np.array([[d, -b], [-c, a]], np.float64) / det
    return np.hstack([linear, -linear @ affine[:, 2:]])


def inter_ocular(landmarks: np.ndarray) -> float:
    """Median inter-ocular distance (pixels) over the frames that have a face."""
    scale = face_scale(landmarks)
    scale = scale[np.isfinite(scale)]
    return float(np.median(scale)) if scale.size else float("nan")


class HandWatch:
    """Notices a hand over the lower face, sampling every `every`-th frame.

    A mouth pasted over fingers is the most glaring failure a lip-sync can make, and the face
    mesh happily invents lips under a hand. MediaPipe's hand model is too slow to run on every
    frame, but hands move slowly compared with lips: sampling a few times a second and marking
    the frames between two samples as covered when either sample saw a hand is enough.
    """

    def __init__(self, every: int = 10) -> None:
        self.every = max(1, int(every))
        self._hands = HAND_GRAPHS.take()  # handed back by close()
        # The hand model takes about 14 ms a sample: it looks on a thread of its own, so the
        # analysis's observing thread (the face library, lip contrast) never waits for it.
        self._looking = ThreadPoolExecutor(max_workers=1, thread_name_prefix="openlipsync-hands")
        self._looks: deque[tuple[int, Future[bool]]] = deque()  # in order, not yet collected
        self._seen: dict[int, bool] = {}

    def observe(self, index: int, frame: np.ndarray, landmarks: np.ndarray) -> None:
        """Sample frame `index` (every `every`-th): its crop is cut now (the caller may reuse
        `frame`), the model looks later."""
        if index % self.every:
            return
        x0, y0, size = hand_square(landmarks)
        crop, scale = shrink_square(padded_square(frame, x0, y0, size), 256)
        look = self._looking.submit(self._hand_on_mouth, crop, scale, (x0, y0), landmarks)
        self._looks.append((int(index), look))
        # Collect what is done; wait when the model falls far behind (each crop holds 192 KB).
        while self._looks and (len(self._looks) > MAX_HAND_LOOKS or self._looks[0][1].done()):
            self._collect_oldest()

    def samples(self) -> dict[int, bool]:
        """Whether each sampled frame showed a hand on the mouth (waits for the model)."""
        while self._looks:
            self._collect_oldest()
        return dict(self._seen)

    def _collect_oldest(self) -> None:
        index, look = self._looks.popleft()
        self._seen[index] = look.result()

    def _hand_on_mouth(
        self, crop: np.ndarray, scale: float, origin: tuple[int, int], landmarks: np.ndarray
    ) -> bool:
        lower = landmarks[list(JAW_LINE) + [2, 98, 327]]
        (fx0, fy0), (fx1, fy1) = lower.min(axis=0), lower.max(axis=0)
        x0, y0 = origin
        result = process(self._hands, crop)
        for hand in result.multi_hand_landmarks or []:
            points = np.array([(p.x, p.y) for p in hand.landmark]) * crop.shape[0] / scale
            points += [x0, y0]
            (hx0, hy0), (hx1, hy1) = points.min(axis=0), points.max(axis=0)
            if hx0 < fx1 and hx1 > fx0 and hy0 < fy1 and hy1 > fy0:
                return True
        return False

    def covered(self, n_frames: int, clear: np.ndarray | None = None) -> np.ndarray:
        """bool (n_frames,): frames within one sampling step of a sample that saw a hand.

        A hand arrives or leaves somewhere between a sample that saw it and one that did not;
        with `clear` (per frame: the lips plainly uncovered, see library.clear_frames) the
        frames next to the sample without a hand that are still clear are not flagged: up to
        a step (0.6 s at 25 fps in the standard preset) of lip-sync kept per hand."""
        samples = self.samples()
        flags = np.zeros(n_frames, bool)
        for index, seen in samples.items():
            if not seen:
                continue
            start, stop = max(0, index - self.every), min(n_frames, index + self.every + 1)
            if clear is not None and samples.get(index - self.every) is False:
                while start < index and clear[start]:
                    start += 1
            if clear is not None and samples.get(index + self.every) is False:
                while stop - 1 > index and clear[stop - 1]:
                    stop -= 1
            flags[start:stop] = True
        return flags

    def close(self) -> None:
        """Stop looking (samples not begun are dropped) and hand the model back."""
        self._looking.shutdown(wait=True, cancel_futures=True)
        hands, self._hands = self._hands, None
        if hands is not None:
            HAND_GRAPHS.give(hands)


def _new_hands():  # noqa: ANN202 - a MediaPipe solution
    import mediapipe as mp

    with chatter_hidden():
        hands = mp.solutions.hands.Hands(
            static_image_mode=True,  # every picture on its own: nothing to reset between users
            max_num_hands=2,
            model_complexity=0,
            min_detection_confidence=0.4,
        )
        hands.process(BLANK)  # its first call loads the model (see FaceTracker.warm_up)
    return hands


HAND_GRAPHS = WarmGraphs(_new_hands, lambda hands: None, lambda hands: hands.close())


def hand_square(landmarks: np.ndarray) -> tuple[int, int, int]:
    """(x0, y0, side) of the square around the lower face that HandWatch looks in."""
    lower = landmarks[list(JAW_LINE) + [2, 98, 327]]
    (fx0, fy0), (fx1, fy1) = lower.min(axis=0), lower.max(axis=0)
    side = 2.2 * max(fx1 - fx0, fy1 - fy0)
    cx, cy = (fx0 + fx1) / 2, (fy0 + fy1) / 2
    return int(cx - side / 2), int(cy - side / 2), max(int(side), 16)
