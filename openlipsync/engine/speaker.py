"""Which face to lip-sync when several are in view (`options.active_speaker_detection`).

Faces are found with MediaPipe's full-range face detector (the face mesh's own short-range
detector misses small faces) and each detection gets a face mesh on its own crop.
`MultiFaceTracker` links the faces of consecutive frames into identities by box overlap and
starts afresh at scene cuts. `choose_face` then turns the spec option into one target box per
frame (or None), which the single-face tracker can use to pick its face.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from openlipsync.engine.detection import FaceBox, FaceDetector
from openlipsync.engine.mouth import face_scale, mouth_shape
from openlipsync.engine.native_logs import chatter_hidden, process
from openlipsync.engine.scenes import shot_ranges
from openlipsync.engine.tracking import TILED_EVERY, LandmarkRows
from openlipsync.media.mapped import release
from openlipsync.media.picture import RgbPicture, padded_square, shrink_square

N_LANDMARKS = 478
MESH_INPUT_CAP = 384
# Two boxes in consecutive frames belong to the same face above this overlap.
MATCH_IOU = 0.3
# A face unseen for this many frames is forgotten (a new face there gets a new identity).
MAX_GAP = 12
# Auto-detect needs the best face's correlation to beat the next by this much, else tie-break.
CLEAR_MARGIN = 0.1
# Auto-detect in a dialogue (see _listening): a mouth whose opening spreads (10th to 90th
# percentile) less than STILL_SPREAD eye distances over a shot the source talks through
# (LISTENED of its frames) is a listener's; only when another shot shows a mouth that moves
# (MOVING_SPREAD) while the source talks (SPOKEN). GRID: speech 0.10-0.21, closed 0.001-0.024.
STILL_SPREAD, MOVING_SPREAD = 0.03, 0.06
LISTENED, SPOKEN = 0.6, 0.3
SPEECH_BELOW_PEAK = 20.0  # dB under the source's loud frames (90th percentile) that is speech
SPEECH_FLOOR = -50.0  # dBFS: below this nothing is speech, however quiet the source
# Speaking turns in one shot (see _turns): mouth spread measured over TURN_WINDOW seconds; a
# turn is at least MIN_TURN seconds of one mouth moving while the others are still.
TURN_WINDOW = 0.8
MIN_TURN = 0.5


class SpeakerSelectionError(ValueError):
    """The speaker option cannot be honoured (point on no face, malformed boxes...)."""


def landmark_box(landmarks: np.ndarray) -> np.ndarray:
    """[x1, y1, x2, y2] around a face's landmarks."""
    return np.concatenate([landmarks.min(axis=0), landmarks.max(axis=0)]).astype(np.float32)


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


class FaceFinder:
    """All faces of a frame: full-range detection, then a face mesh per detected face.

    The small faces of a wide shot (a panel, a room) escape the whole-frame detector (see
    engine/detection.py): while fewer than `max_faces` are detected, the frame's tiles are
    searched too, on the first frame and every TILED_EVERY-th; in between, a face of the
    previous frame that no detection holds is followed by its face mesh where it was.
    """

    def __init__(self, max_faces: int = 5) -> None:
        import mediapipe as mp

        if not 1 <= int(max_faces) <= 20:
            raise ValueError(f"max_faces must be in 1..20, got {max_faces}")
        self.max_faces = int(max_faces)
        self._detector = FaceDetector()
        with chatter_hidden():
            self._mesh = mp.solutions.face_mesh.FaceMesh(
                static_image_mode=True, max_num_faces=1, refine_landmarks=True
            )
        self._calls = 0

    def __enter__(self) -> FaceFinder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def restart(self) -> None:
        """The next frame is searched as a first one (its tiles too): after a jump ahead."""
        self._calls = 0

    def close(self) -> None:
        self._mesh.close()
        self._detector.close()

    def find(self, frame: np.ndarray, known: Sequence[np.ndarray] = ()) -> list[np.ndarray]:
        """(478, 2) float32 pixel landmarks of every face, largest first; `known`: the faces
        of the previous frame of the same shot, followed where no detection holds them."""
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8 or frame.size == 0:
            raise ValueError(f"expected an RGB uint8 (H, W, 3) frame, got {frame.shape}")
        picture = RgbPicture(np.ascontiguousarray(frame))
        boxes = self._detector.whole(picture)
        if len(boxes) < self.max_faces and self._calls % TILED_EVERY == 0:
            boxes += [b for b in self._detector.tiled(picture) if not _held(b, boxes)]
        self._calls += 1
        boxes.sort(key=lambda b: -b.area)
        crops = [(b.cx, b.cy, 2.0 * max(b.width, b.height)) for b in boxes[: self.max_faces]]
        for points in known:
            followed = _followed_box(points)
            if len(crops) < self.max_faces and not _held(followed, boxes):
                crops.append((followed.cx, followed.cy, 2.0 * followed.width))
        faces: list[np.ndarray] = []
        for cx, cy, side in crops:
            landmarks = self._mesh_in(frame, cx, cy, side)
            if landmarks is not None and not _duplicate(landmarks, faces):
                faces.append(landmarks)
        faces.sort(key=lambda f: -float(np.prod(np.ptp(f, axis=0))))
        return faces

    def _mesh_in(self, frame: np.ndarray, cx: float, cy: float, side: float) -> np.ndarray | None:
        size = max(int(round(side)), 32)
        x0, y0 = int(round(cx - size / 2)), int(round(cy - size / 2))
        crop, factor = shrink_square(padded_square(frame, x0, y0, size), MESH_INPUT_CAP)
        result = process(self._mesh, crop)
        if not result.multi_face_landmarks:
            return None
        n = crop.shape[0]
        face = result.multi_face_landmarks[0].landmark
        points = np.array([(p.x * n, p.y * n) for p in face], np.float32)[:N_LANDMARKS]
        return points / factor + np.array([x0, y0], np.float32)


def _followed_box(points: np.ndarray) -> FaceBox:
    """The square box of a face's landmarks (as the single-face tracker crops around it)."""
    (x0, y0), (x1, y1) = points.min(axis=0), points.max(axis=0)
    side = float(max(x1 - x0, y1 - y0))
    return FaceBox(float(x0 + x1) / 2, float(y0 + y1) / 2, side, side)


def _held(face: FaceBox, boxes: Sequence[FaceBox]) -> bool:
    return any(box.holds(face) or face.holds(box) for box in boxes)


def detect_faces(frame: np.ndarray, max_faces: int = 5) -> list[np.ndarray]:
    """All faces' (478, 2) landmarks in one frame, largest first (loops: use FaceFinder)."""
    with FaceFinder(max_faces) as finder:
        return finder.find(frame)


@dataclass
class MultiFaceTrack:
    """Every face of a video with a stable identity per shot, as sightings (one face in one
    frame) in frame order.

    Choosing the speaker reads a sighting's identity, box, mouth opening and eye distance (40
    bytes, in memory); only the chosen face's landmarks (3.8 KB a sighting) are read back, so
    they are kept in a LandmarkRows (a scratch file in the pipeline). A long single shot of
    two people (a three-hour podcast) has two gigabytes of them, which would have been the
    process's memory. Identities never cross a cut, so a film has thousands of them."""

    first: np.ndarray  # int64 (frames + 1,): the sightings of frame i are rows first[i]:first[i+1]
    identity: np.ndarray  # int64 per sighting
    boxes: np.ndarray  # float32 (sightings, 4): [x1, y1, x2, y2]
    opening: np.ndarray  # float32 per sighting: mouth opening in eye distances (mouth_shape)
    eyes: np.ndarray  # float32 per sighting: eye distance in pixels (face_scale)
    landmarks: np.ndarray  # float32 (sightings, 478, 2), possibly a mapped file
    cuts: list[int] = field(default_factory=list)

    @property
    def frame_count(self) -> int:
        return len(self.first) - 1

    @property
    def identities(self) -> list[int]:
        return np.unique(self.identity).tolist()

    def points(self, identity: int, index: int) -> np.ndarray | None:
        row = self._row(identity, index)
        return None if row is None else np.array(self.landmarks[row])

    def box(self, identity: int, index: int) -> np.ndarray | None:
        row = self._row(identity, index)
        return None if row is None else self.boxes[row]

    def faces_at(self, index: int) -> dict[int, np.ndarray]:
        rows = range(self.first[index], self.first[index + 1])
        return {int(self.identity[r]): np.array(self.landmarks[r]) for r in rows}

    def mouth_opening(self, identity: int, start: int, stop: int) -> np.ndarray:
        """float64 per frame of [start, stop): one face's mouth opening, NaN where unseen."""
        frames, rows = self._sightings(identity, start, stop)
        out = np.full(max(stop - start, 0), np.nan)
        out[frames] = self.opening[rows]
        return out

    def eye_distance(self, identity: int, start: int, stop: int) -> float:
        """One face's median eye distance (pixels) over [start, stop); NaN when unseen."""
        _, rows = self._sightings(identity, start, stop)
        return float(np.median(self.eyes[rows])) if rows.size else np.nan

    def seen(self, identity: int, start: int = 0, stop: int | None = None) -> np.ndarray:
        """bool per frame of [start, stop): where this face is seen."""
        stop = self.frame_count if stop is None else stop
        out = np.zeros(max(stop - start, 0), bool)
        out[self._sightings(identity, start, stop)[0]] = True
        return out

    def shot_identities(self, start: int, stop: int) -> list[int]:
        return np.unique(self.identity[self.first[start] : self.first[stop]]).tolist()

    def head(self, frames: int) -> MultiFaceTrack:
        """The first `frames` frames (a still, a short clip)."""
        rows = int(self.first[frames])
        return MultiFaceTrack(
            self.first[: frames + 1],
            self.identity[:rows],
            self.boxes[:rows],
            self.opening[:rows],
            self.eyes[:rows],
            self.landmarks[:rows],
            [cut for cut in self.cuts if cut < frames],
        )

    def _row(self, identity: int, index: int) -> int | None:
        start = int(self.first[index])
        hits = np.flatnonzero(self.identity[start : self.first[index + 1]] == identity)
        return start + int(hits[0]) if hits.size else None

    def _sightings(self, identity: int, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """(frame offsets from `start`, rows) of one face's sightings in [start, stop)."""
        low = int(self.first[start])
        rows = low + np.flatnonzero(self.identity[low : self.first[stop]] == identity)
        return np.searchsorted(self.first, rows, side="right") - 1 - start, rows


class MultiFaceTracker:
    """Links each frame's faces to identities by box overlap; `cut()` starts a new shot.

    Identities never carry across a cut: the same person in the next shot is a new identity,
    which is what per-shot speaker choice wants. `path`: the scratch file for the landmarks
    (see MultiFaceTrack); `expected`: about how many frames come.
    """

    def __init__(self, max_faces: int = 5, path: Path | None = None, expected: int = 0) -> None:
        self.max_faces = max_faces
        self._finder: FaceFinder | None = None  # made by the first push (push_faces needs none)
        self._landmarks = LandmarkRows(expected, path)
        self._first, self._identity = array("q", [0]), array("q")
        self._boxes, self._opening, self._eyes = array("f"), array("f"), array("f")
        self._last: list[np.ndarray] = []  # the faces of the previous frame of this shot
        self._live: dict[int, tuple[np.ndarray, int]] = {}  # id -> (last box, last frame)
        self._next_id = 0
        self._cuts: list[int] = []

    def __enter__(self) -> MultiFaceTracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._finder is not None:
            self._finder.close()

    def cut(self) -> None:
        """The next pushed frame starts a new shot."""
        self._live.clear()
        self._last = []
        if len(self._first) > 1:
            self._cuts.append(len(self._first) - 1)

    def push(self, frame: np.ndarray, new_shot: bool = False) -> dict[int, np.ndarray]:
        """Faces of this frame by identity; `new_shot` (e.g. SceneDetector.push) calls `cut()`."""
        if new_shot:
            self.cut()
        if self._finder is None:
            self._finder = FaceFinder(self.max_faces)
        return self.push_faces(self._finder.find(frame, self._last))

    def push_faces(self, faces: Sequence[np.ndarray]) -> dict[int, np.ndarray]:
        index = len(self._first) - 1
        self._live = {k: v for k, v in self._live.items() if index - v[1] <= MAX_GAP}
        boxes = [landmark_box(f) for f in faces]
        pairs = sorted(
            (
                (box_iou(b, live[0]), i, k)
                for i, b in enumerate(boxes)
                for k, live in self._live.items()
            ),
            reverse=True,
        )
        assigned: dict[int, int] = {}
        for iou, i, k in pairs:
            if iou < MATCH_IOU:
                break
            if i not in assigned and k not in assigned.values():
                assigned[i] = k
        row: dict[int, np.ndarray] = {}
        for i, face in enumerate(faces):
            identity = assigned.get(i)
            if identity is None:
                identity, self._next_id = self._next_id, self._next_id + 1
            self._live[identity] = (boxes[i], index)
            row[identity] = np.asarray(face, np.float32)
            self._sighted(identity, boxes[i], row[identity])
        self._first.append(len(self._identity))
        self._last = list(row.values())
        return row

    def _sighted(self, identity: int, box: np.ndarray, face: np.ndarray) -> None:
        self._identity.append(identity)
        self._boxes.extend(box.tolist())
        self._opening.append(float(mouth_shape(face)[0]))
        self._eyes.append(float(face_scale(face)))
        self._landmarks.append(face)

    def finish(self) -> MultiFaceTrack:
        return MultiFaceTrack(
            np.array(self._first, np.int64),
            np.array(self._identity, np.int64),
            np.array(self._boxes, np.float32).reshape(-1, 4),
            np.array(self._opening, np.float32),
            np.array(self._eyes, np.float32),
            self._landmarks.array(),
            list(self._cuts),
        )


@dataclass
class FaceChoice:
    """The face to lip-sync per frame: a box (NaN row = no face to sync) and its identity."""

    boxes: np.ndarray  # float32 (N, 4) [x1, y1, x2, y2]
    identity: np.ndarray  # int (N,), -1 where none (-1 also for bounding_boxes input)

    def box_at(self, index: int) -> np.ndarray | None:
        if not 0 <= index < len(self.boxes) or np.isnan(self.boxes[index, 0]):
            return None
        return self.boxes[index]


def pick_in_box(box: np.ndarray | None, faces: Sequence[np.ndarray]) -> int | None:
    """Index of the face whose landmark centre lies in `box` (nearest centre wins), or None."""
    if box is None:
        return None
    best, best_distance = None, np.inf
    centre = np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])
    for i, face in enumerate(faces):
        cx, cy = np.nanmean(face, axis=0)
        if box[0] <= cx <= box[2] and box[1] <= cy <= box[3]:
            distance = float(np.hypot(cx - centre[0], cy - centre[1]))
            if distance < best_distance:
                best, best_distance = i, distance
    return best


def choose_face(
    option: dict | None,
    track: MultiFaceTrack,
    fps: float,
    source_loudness: np.ndarray | None = None,
    driving_loudness: np.ndarray | None = None,
    scale: float = 1.0,
) -> FaceChoice | None:
    """Apply `options.active_speaker_detection`; None means "no selection: largest face".

    Loudness arrays are per video frame (e.g. `loudness_per_frame`): the input video's own audio
    decides who speaks; the new audio only breaks ties (e.g. a silent source). `scale` takes
    the option's positions, given in the file's pixels, to the picture's: a large photo is
    read smaller (media/probe.py PHOTO_SIDE).
    """
    if not option:
        return None
    if not isinstance(option, dict):
        raise SpeakerSelectionError("active_speaker_detection must be an object")
    if option.get("bounding_boxes") is not None:
        return _from_boxes(option["bounding_boxes"], track.frame_count, scale)
    if option.get("coordinates") is not None:
        return _from_point(option.get("frame_number", 0), option["coordinates"], track, scale)
    if option.get("auto_detect"):
        return _auto(track, fps, source_loudness, driving_loudness)
    return None


def _from_boxes(boxes: object, frame_count: int, scale: float) -> FaceChoice:
    if not isinstance(boxes, list):
        raise SpeakerSelectionError("bounding_boxes must be a list of [x1, y1, x2, y2] or null")
    out = np.full((frame_count, 4), np.nan, np.float32)
    for index, box in enumerate(boxes[:frame_count]):
        if box is None:
            continue
        if (
            not isinstance(box, list | tuple)
            or len(box) != 4
            or not all(_is_number(v) for v in box)
        ):
            raise SpeakerSelectionError(f"bounding_boxes[{index}] must be [x1, y1, x2, y2] or null")
        x1, y1, x2, y2 = (float(v) for v in box)
        if x2 <= x1 or y2 <= y1:
            raise SpeakerSelectionError(f"bounding_boxes[{index}] has x2 <= x1 or y2 <= y1")
        out[index] = (x1 * scale, y1 * scale, x2 * scale, y2 * scale)
    # Frames beyond the list have no box: nothing to sync there.
    return FaceChoice(out, np.full(frame_count, -1, np.int64))


def _from_point(
    frame_number: object, coordinates: object, track: MultiFaceTrack, scale: float
) -> FaceChoice:
    if (
        not isinstance(coordinates, list | tuple)
        or len(coordinates) != 2
        or not all(_is_number(v) for v in coordinates)
    ):
        raise SpeakerSelectionError("coordinates must be [x, y]")
    if not isinstance(frame_number, int) or isinstance(frame_number, bool):
        raise SpeakerSelectionError("frame_number must be an integer")
    if not 0 <= frame_number < track.frame_count:
        raise SpeakerSelectionError(
            f"frame_number {frame_number} is outside the video's {track.frame_count} frames"
        )
    given = [float(v) for v in coordinates]
    x, y = given[0] * scale, given[1] * scale
    hits = []
    for identity, points in track.faces_at(frame_number).items():
        box = landmark_box(points)
        if box[0] <= x <= box[2] and box[1] <= y <= box[3]:
            centre = points.mean(axis=0)
            hits.append((float(np.hypot(centre[0] - x, centre[1] - y)), identity))
    if not hits:
        raise SpeakerSelectionError(
            f"no face contains the point ({given[0]:g}, {given[1]:g}) in frame {frame_number}"
        )
    chosen = min(hits)[1]
    identity = np.full(track.frame_count, -1, np.int64)
    identity[track.seen(chosen)] = chosen
    return _choice(track, identity)


def _auto(
    track: MultiFaceTrack,
    fps: float,
    source: np.ndarray | None,
    driving: np.ndarray | None,
) -> FaceChoice:
    identity = np.full(track.frame_count, -1, np.int64)
    speech = None if source is None else _speech(source)
    picks = []
    for start, stop in shot_ranges(track.cuts, track.frame_count):
        candidates = _candidates(track, start, stop)
        ranked = speaking_scores(candidates, start, stop, source, driving)
        if ranked:
            picked = max(ranked, key=ranked.get)
            picks += _turns(candidates, start, stop, picked, speech, fps)
    for (start, stop, chosen), listener in zip(
        picks, _listening(track, picks, speech), strict=True
    ):
        if not listener:
            identity[start:stop][track.seen(chosen, start, stop)] = chosen
    return _choice(track, identity)


def _turns(
    candidates: dict[int, Candidate],
    start: int,
    stop: int,
    picked: int,
    speech: np.ndarray | None,
    fps: float,
) -> list[tuple[int, int, int]]:
    """The shot's speaking turns as (start, stop, face): people on screen together who take
    turns (a two-shot, a podcast) are each lip-synced while they speak.

    A frame is plainly one face's turn when the source speaks, that face's mouth moves
    (opening spread over TURN_WINDOW seconds >= MOVING_SPREAD) and every other candidate's is
    still (< STILL_SPREAD). Runs of such frames shorter than MIN_TURN seconds are ignored;
    between two turns of different faces the switch falls midway. With no plain turn at all
    (one soundtrack over two moving mouths, a silent source) the shot keeps `picked`, the face
    whose mouth follows the source best. `candidates`: the shot's faces (see _candidates);
    `speech`: per frame of the video, whether the source speaks (see _speech)."""
    if speech is None or len(candidates) < 2:
        return [(start, stop, picked)]
    speaking = np.zeros(stop - start, bool)
    heard = speech[start:stop]  # the sound may end before the picture
    speaking[: len(heard)] = heard
    half = max(1, round(TURN_WINDOW * fps / 2))
    motion = {k: _spread(face.opening, half) for k, face in candidates.items()}
    owner = np.full(stop - start, -1, np.int64)
    for face, moving in motion.items():
        others = [m for k, m in motion.items() if k != face]
        still = np.all([~(m >= STILL_SPREAD) for m in others], axis=0)
        owner[speaking & (moving >= MOVING_SPREAD) & still] = face
    runs = [
        (a, b, int(owner[a]))
        for a, b in _runs_of(owner)
        if owner[a] >= 0 and b - a >= MIN_TURN * fps
    ]
    if not runs:
        return [(start, stop, picked)]
    turns, begin = [], 0
    for (_, b, face), following in zip(runs, [*runs[1:], None], strict=True):
        if following is not None and following[2] == face:
            continue  # the same face's turn goes on
        end = stop - start if following is None else (b + following[0]) // 2
        turns.append((start + begin, start + end, face))
        begin = end
    return turns


def _spread(opening: np.ndarray, half: int) -> np.ndarray:
    """10th-90th percentile spread of `opening` over +-half frames; NaN where under half of
    that window sees the face."""
    padded = np.pad(np.asarray(opening, np.float64), half, constant_values=np.nan)
    windows = np.lib.stride_tricks.sliding_window_view(padded, 2 * half + 1)
    enough = np.isfinite(windows).sum(axis=1) * 2 >= 2 * half + 1
    out = np.full(len(opening), np.nan)
    if enough.any():
        low, high = np.nanpercentile(windows[enough], [10, 90], axis=1)
        out[enough] = high - low
    return out


def _runs_of(values: np.ndarray) -> list[tuple[int, int]]:
    """[a, b) of each run of equal values."""
    edges = np.flatnonzero(np.diff(values)) + 1
    bounds = [0, *edges.tolist(), len(values)]
    return list(zip(bounds[:-1], bounds[1:], strict=True))


def _speech(source: np.ndarray) -> np.ndarray:
    """bool per frame: the source's loudness is speech (see SPEECH_BELOW_PEAK)."""
    loud = np.asarray(source, np.float64)
    return loud > max(SPEECH_FLOOR, float(np.percentile(loud, 90)) - SPEECH_BELOW_PEAK)


def _listening(
    track: MultiFaceTrack, picks: list[tuple[int, int, int]], speech: np.ndarray | None
) -> list[bool]:
    """Per picked face: whether it only listens, so the shot is left as it is.

    In a dialogue the dub carries every character's lines, and a reaction shot would mouth
    the other character's. The source tells them apart: there the voice goes on while the
    mouth on screen stays still. Only when some other shot shows a mouth moving while the
    source talks (so the source's voice is the people on screen, not a narrator over a silent
    face, and the video is no silent clip to be given a voice), and never without source audio
    (`speech`: see _speech).
    """
    if speech is None or len(picks) < 2:
        return [False] * len(picks)
    shots = []
    for start, stop, chosen in picks:
        opening = track.mouth_opening(chosen, start, stop)
        seen = opening[np.isfinite(opening)]
        spread = float(np.ptp(np.percentile(seen, [10, 90]))) if seen.size >= 5 else np.nan
        shots.append((spread, float(speech[start:stop].mean()) if stop > start else 0.0))
    if not any(spread >= MOVING_SPREAD and talk >= SPOKEN for spread, talk in shots):
        return [False] * len(picks)
    return [talk >= LISTENED and spread < STILL_SPREAD for spread, talk in shots]


@dataclass
class Candidate:
    """A face of a shot that may be the speaker."""

    opening: np.ndarray  # float64 per frame of the shot: mouth opening, NaN where unseen
    eyes: float  # median eye distance (pixels): the larger face wins a tie


def _candidates(track: MultiFaceTrack, start: int, stop: int) -> dict[int, Candidate]:
    """The faces of a shot seen in a third of it and in 3 of its frames (a still's one frame
    is enough)."""
    candidates = {}
    for identity in track.shot_identities(start, stop):
        if track.seen(identity, start, stop).sum() >= max(min(3, stop - start), (stop - start) / 3):
            candidates[identity] = Candidate(
                track.mouth_opening(identity, start, stop),
                track.eye_distance(identity, start, stop),
            )
    return candidates


def speaking_scores(
    candidates: dict[int, Candidate],
    start: int,
    stop: int,
    source: np.ndarray | None,
    driving: np.ndarray | None,
) -> dict[int, float]:
    """Per candidate face of a shot (see _candidates): how well its mouth motion follows the
    source audio's loudness. When no face beats the others clearly (silent source, dubbed
    video), the new audio's loudness and finally face size break the tie.
    """
    if not candidates:
        return {}
    scores = {
        k: _correlation(face.opening, _slice(source, start, stop)) for k, face in candidates.items()
    }
    ordered = sorted(scores.values(), reverse=True)
    if len(ordered) > 1 and ordered[0] - ordered[1] < CLEAR_MARGIN:
        for k, face in candidates.items():
            tie = _correlation(face.opening, _slice(driving, start, stop))
            scores[k] += 0.1 * tie + 1e-3 * face.eyes
    return scores


def _slice(values: np.ndarray | None, start: int, stop: int) -> np.ndarray | None:
    if values is None:
        return None
    out = np.full(stop - start, np.nan)
    part = np.asarray(values, np.float64)[start:stop]
    out[: len(part)] = part
    return out


def _correlation(motion: np.ndarray, loudness: np.ndarray | None) -> float:
    """Pearson correlation over frames where both are known; 0 when undefined."""
    if loudness is None:
        return 0.0
    both = np.isfinite(motion) & np.isfinite(loudness)
    if both.sum() < 5:
        return 0.0
    a, b = motion[both], loudness[both]
    if a.std() < 1e-9 or b.std() < 1e-9:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def _choice(track: MultiFaceTrack, identity: np.ndarray) -> FaceChoice:
    boxes = np.full((track.frame_count, 4), np.nan, np.float32)
    for index, chosen in enumerate(identity):
        if chosen >= 0:
            boxes[index] = track.box(int(chosen), index)
    return FaceChoice(boxes, identity)


def loudness_per_frame(
    samples: np.ndarray, sample_rate: int, fps: float, frame_count: int
) -> np.ndarray:
    """Log RMS loudness (dB) of the audio under each video frame, lightly smoothed.

    Mouth opening lags and leads the sound by a frame or so; a 3-frame window absorbs that.
    """
    samples = np.asarray(samples, np.float32).ravel()
    if sample_rate <= 0 or fps <= 0:
        raise ValueError("sample_rate and fps must be positive")
    out = np.full(frame_count, -100.0)
    hop = sample_rate / fps
    for index in range(frame_count):
        a, b = int(round((index - 1) * hop)), int(round((index + 2) * hop))
        part = samples[max(a, 0) : max(min(b, len(samples)), 0)]
        if part.size:
            out[index] = 10 * np.log10(float(np.mean(part.astype(np.float64) ** 2)) + 1e-10)
        if index % 4096 == 4095:  # samples in a file (media/mapped.py): keep a few pages
            release(samples)
    release(samples)
    return out


def _is_number(value: object) -> bool:
    return (
        isinstance(value, int | float) and not isinstance(value, bool) and bool(np.isfinite(value))
    )


def _duplicate(face: np.ndarray, faces: list[np.ndarray]) -> bool:
    box = landmark_box(face)
    return any(box_iou(box, landmark_box(other)) > 0.5 for other in faces)
