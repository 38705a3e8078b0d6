"""Who the track follows: its stretches (shots, runs after the face was lost or jumped to
another place) grouped by person, so that each person gets only their own mouths, their own
relaxed mouth and speaking range in the plan, and their own lips' contrast as the measure of
a covered mouth.

An edited video cuts between people (an interview, a dialogue) and back. The mouth library is
one pool of every frame's mouth; knowing nothing of who is who, the renderer pasted the
interviewer's lips, teeth and moustache on the guest wherever their shapes fitted best
(measured: 11 of 154 rendered frames of a clip cutting between two GRID speakers). Each
stretch is sampled once or twice; dlib's face recognition network (shipped in the
face-recognition-models package, about 70 ms on the CPU per sample) turns a sample into a
128-number descriptor, and stretches whose descriptors agree are one person. A video of one
stretch, the common case, pays nothing.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from openlipsync.engine.mouth import EYE_OUTER_LEFT, EYE_OUTER_RIGHT, face_scale
from openlipsync.engine.tracking import _similarity
from openlipsync.media.picture import Box, source_box

# Descriptor distance under which two stretches show the same person. dlib's own threshold is
# 0.6; measured on the GRID speakers: one person's frames <= 0.30 apart, two people >= 0.65.
# A person wrongly split only narrows their choice of mouths; two people merged would mix them.
SAME_PERSON = 0.5
PLAINLY_SAME = 0.35  # a first sample this near another stretch's needs no second one
FIRST_SAMPLE = 2  # frames into a stretch (its first frame may still be a cut's blend)
SECOND_SAMPLE = 1.5  # seconds into a stretch, when it lasts that long
MAX_SAMPLES = 300  # per video: about 20 s of descriptors at worst
NEW_STRETCH_GAP = 0.5  # seconds without a face after which the face found may be someone else
# A face this many eye distances from the last one's place, one frame on, is another face (a
# head moves a fraction of that per frame even when shaken).
NEW_STRETCH_JUMP = 1.0
SAMPLE_IOD = 48.0  # px between the outer eye corners in a stored sample (a face chip holds ~50)
# dlib's frontal face box in eye distances: its side, and its centre below the eyes' centre
# (measured against dlib's own detector on the GRID clips: 1.78 and 0.35).
RECT_SIDE, RECT_DOWN = 1.8, 0.35
SAMPLE_SIDE = round(3.0 * SAMPLE_IOD)  # the upright square stored around that box


@dataclass
class _Sample:
    stretch: int
    face: np.ndarray  # upright RGB square, SAMPLE_SIDE px, the eyes SAMPLE_IOD px apart


class PeopleWatch:
    """Splits the track into stretches as frames are observed and samples each stretch's face.

    `cuts` is the scene detector's list of first frames of new shots; it may still grow while
    frames are observed, as long as it holds every cut up to the frame being observed.
    `source_box` and `observe` follow the renderer's protocol (see MouthRenderer.source_boxes).
    """

    def __init__(self, fps: float, cuts: Sequence[int]) -> None:
        self.cuts = cuts
        self._gap = max(1, round(NEW_STRETCH_GAP * fps))
        self._second = max(FIRST_SAMPLE + 1, round(SECOND_SAMPLE * fps))
        self.starts: list[int] = []  # first frame of each stretch
        self._last_face: int | None = None
        self._last_eyes = np.zeros(2)
        self._taken = 0  # samples of the current stretch
        self._samples: list[_Sample] = []

    def source_box(self, index: int, landmarks: np.ndarray | None) -> Box | None:
        """The frame pixels `observe` reads for this frame, or None when it reads none."""
        if not _is_face(landmarks) or not self._due(index, self._starts_stretch(index, landmarks)):
            return None
        return source_box(_to_sample(landmarks), (SAMPLE_SIDE, SAMPLE_SIDE))

    def observe(self, index: int, frame: np.ndarray, landmarks: np.ndarray | None) -> None:
        if not _is_face(landmarks):
            return
        new = self._starts_stretch(index, landmarks)
        due = self._due(index, new)
        if new:
            self.starts.append(index)
            self._taken = 0
        self._last_face, self._last_eyes = index, eyes_centre(landmarks)
        if due:
            self._samples.append(_Sample(len(self.starts) - 1, _sample_of(frame, landmarks)))
            self._taken += 1

    def people(self, frame_count: int) -> np.ndarray | None:
        """Person per frame (the same number for the same person; frames before the first face
        belong to the first stretch), or None when the track is one stretch."""
        if len(self.starts) < 2:
            return None
        person = group_stretches(self._descriptors(), SAME_PERSON)
        stretch = np.searchsorted(np.asarray(self.starts), np.arange(frame_count), side="right")
        return person[np.maximum(stretch - 1, 0)]

    def _descriptors(self) -> list[list[np.ndarray]]:
        """Per stretch, the descriptors of its samples. A second sample is described only for
        a stretch whose first is not plainly someone another stretch shows (within
        PLAINLY_SAME): it steadies an uncertain mean, and a jump cut back to the same face,
        the common case of an edited video, is certain at once (70 ms a sample)."""
        descriptors: list[list[np.ndarray]] = [[] for _ in self.starts]
        described, later = set(), []
        for sample in self._samples:
            if sample.stretch in described:
                later.append(sample)
                continue
            described.add(sample.stretch)
            found = describe(sample.face)
            if found is not None:
                descriptors[sample.stretch].append(found)
        firsts = [(i, d[0]) for i, d in enumerate(descriptors) if d]
        for sample in later:
            mine = descriptors[sample.stretch]
            if mine and any(
                i != sample.stretch and np.linalg.norm(mine[0] - other) <= PLAINLY_SAME
                for i, other in firsts
            ):
                continue
            found = describe(sample.face)
            if found is not None:
                mine.append(found)
        self._samples.clear()
        return descriptors

    def _due(self, index: int, new_stretch: bool) -> bool:
        """Whether this face's frame is sampled (decided on the state before observing it;
        `new_stretch`: it starts one)."""
        if len(self._samples) >= MAX_SAMPLES:
            return False
        if new_stretch:
            return FIRST_SAMPLE == 0
        into = index - self.starts[-1]
        wanted = FIRST_SAMPLE if self._taken == 0 else self._second if self._taken == 1 else None
        return wanted is not None and into >= wanted

    def _starts_stretch(self, index: int, landmarks: np.ndarray) -> bool:
        last = self._last_face
        if last is None or index - last > self._gap:
            return True
        if bisect.bisect_right(self.cuts, index) != bisect.bisect_right(self.cuts, last):
            return True
        return jumped(self._last_eyes, landmarks)


def group_stretches(samples: Sequence[Sequence[np.ndarray]], same: float) -> np.ndarray:
    """Person number per stretch, from each stretch's sample descriptors.

    Agglomerative, on mean descriptors: the two groups whose means are nearest merge, while
    they are within `same`. A mean over a person's samples is steadier than any one sample (a
    grimace or a hand moves one sample, not the mean) and the result does not depend on the
    order of the stretches. A stretch without a sample is a person of its own.
    """
    owner = np.arange(len(samples))  # group (a stretch index) of each stretch
    rows = [i for i, found in enumerate(samples) if len(found)]
    if len(rows) < 2:
        return owner
    sums = np.stack([np.sum(samples[i], axis=0) for i in rows]).astype(np.float64)
    counts = np.array([len(samples[i]) for i in rows], np.float64)
    means = sums / counts[:, None]
    distance = np.linalg.norm(means[:, None, :] - means[None, :, :], axis=-1)
    np.fill_diagonal(distance, np.inf)
    while True:  # merges update one row and column: the matrix is never rebuilt
        a, b = np.unravel_index(int(np.argmin(distance)), distance.shape)
        if not distance[a, b] <= same:
            break
        keep, gone = min(a, b), max(a, b)
        sums[keep] += sums[gone]
        counts[keep] += counts[gone]
        means[keep] = sums[keep] / counts[keep]
        owner[owner == rows[gone]] = rows[keep]
        distance[gone, :] = distance[:, gone] = np.inf
        live = np.isfinite(distance[keep]) | (np.arange(len(rows)) == keep)
        row = np.where(live, np.linalg.norm(means - means[keep], axis=1), np.inf)
        row[keep] = np.inf
        distance[keep, :] = distance[:, keep] = row
    return np.unique(owner, return_inverse=True)[1].astype(np.int64)


def describe(face: np.ndarray) -> np.ndarray | None:
    """dlib's 128-number descriptor of an upright face sample (see _to_sample), or None when
    its shape predictor cannot place the face."""
    import dlib

    predictor, network = _dlib_models()
    side = RECT_SIDE * SAMPLE_IOD
    centre = SAMPLE_SIDE / 2
    box = dlib.rectangle(*(round(centre + k * side / 2) for k in (-1, -1, 1, 1)))
    shape = predictor(np.ascontiguousarray(face), box)
    if shape.num_parts != 5:
        return None
    return np.asarray(network.compute_face_descriptor(np.ascontiguousarray(face), shape))


@lru_cache(maxsize=1)
def _dlib_models():  # noqa: ANN202 - dlib objects
    import dlib
    import face_recognition_models as models

    return (
        dlib.shape_predictor(models.pose_predictor_five_point_model_location()),
        dlib.face_recognition_model_v1(models.face_recognition_model_location()),
    )


def eyes_centre(landmarks: np.ndarray) -> np.ndarray:
    return landmarks[[EYE_OUTER_RIGHT, EYE_OUTER_LEFT]].astype(np.float64).mean(axis=0)


def jumped(last_eyes: np.ndarray, landmarks: np.ndarray) -> bool:
    """Whether the face of `landmarks` is far (NEW_STRETCH_JUMP) from where the face of the
    frame before had its eyes (`last_eyes`, see eyes_centre): another face."""
    jump = float(np.linalg.norm(eyes_centre(landmarks) - last_eyes))
    return jump > NEW_STRETCH_JUMP * max(float(face_scale(landmarks)), 1.0)


def _is_face(landmarks: np.ndarray | None) -> bool:
    return landmarks is not None and bool(np.isfinite(landmarks).all())


def _sample_of(frame: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """The upright face sample; a large face is warped at up to 4x the sample's size and
    area-averaged down, so its fine detail does not alias."""
    to_sample = _to_sample(landmarks)
    over = int(np.clip(np.floor(1 / max(np.hypot(*to_sample[0, :2]), 1e-6)), 1, 4))
    side = SAMPLE_SIDE * over
    face = cv2.warpAffine(frame, to_sample * over, (side, side), flags=cv2.INTER_LINEAR)
    return (
        face
        if over == 1
        else cv2.resize(face, (SAMPLE_SIDE, SAMPLE_SIDE), interpolation=cv2.INTER_AREA)
    )


def _to_sample(landmarks: np.ndarray) -> np.ndarray:
    """(2, 3) affine from frame pixels to the upright sample: the eyes level, SAMPLE_IOD px
    apart, dlib's face box centred."""
    centre = SAMPLE_SIDE / 2
    eye_y = centre - RECT_DOWN * SAMPLE_IOD
    eyes = np.array([[centre - SAMPLE_IOD / 2, eye_y], [centre + SAMPLE_IOD / 2, eye_y]])
    return _similarity(landmarks[[EYE_OUTER_RIGHT, EYE_OUTER_LEFT]].astype(np.float64), eyes)


__all__ = ["PeopleWatch", "describe", "group_stretches", "SAME_PERSON"]
