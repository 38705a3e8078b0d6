"""The mouth library: the person's own lower-face crops, stored upright and at a common scale.

Every source frame with a face contributes a crop of the lower face, resampled into a canonical,
upright frame (eye line horizontal, inter-ocular distance = `scale` pixels). Crops keep the
transform that made them, so once the whole track is smoothed the crop's landmarks are recomputed
from the smoothed track rather than the jittery raw landmarks the crop was cut with.

Memory is bounded: crops live in a disk-backed np.memmap with a fixed capacity; when it fills,
every other entry is dropped and only every other later frame is kept (the library still spans
the whole video, at a coarser time step).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from openlipsync.engine.mouth import (
    EYE_OUTER_LEFT,
    EYE_OUTER_RIGHT,
    LIPS_INNER,
    LIPS_OUTER,
    LOWER_OUTER_MID,
    NOSE_TIP,
    UPPER_OUTER_MID,
    face_scale,
    mouth_shape,
)
from openlipsync.engine.tracking import STABLE_POINTS, _similarity
from openlipsync.media.mapped import release, scratch_array
from openlipsync.media.picture import Box, source_box

# Crop window in canonical units (eye midpoint at the origin, inter-ocular distance 1, y down).
CROP_X = (-1.0, 1.0)
CROP_Y = (0.3, 1.8)

# Pixels per inter-ocular distance in the crops (upper bound; small faces keep their own size),
# and the memory each quality may spend on crops.
SCALE_CAP = {"fast": 80, "standard": 140, "pro": 220}
MEMORY_BUDGET = {"fast": 96 << 20, "standard": 256 << 20, "pro": 512 << 20}
MAX_ENTRIES = 3000
RELEASE_ENTRIES = 32  # crops written between two releases of the crop file's pages
MIN_SCALE = 24
CONTRAST_WIDTH = 64  # px across the mouth patch that lip_contrast measures on
# covered_frames: the uncovered mouth's usual contrast is this percentile of the clip's, and
# below these floors (Lab units of 8-bit OpenCV) a cue says nothing. Measured: redness 4-5 on
# a well-lit face, 1.9-2.3 when that film is darkened to a third, 15-19 on GRID; darkness 20-30
# on both in black and white, where fingers over the lips bring it under 8.
TYPICAL_PERCENTILE = 85
MIN_REDNESS = 1.2
MIN_DARKNESS = 8.0
# Teeth between the lips: pixels of the mouth's opening this much lighter than the skin around
# the lips and this much greyer. A grin loses up to half of the lips' redness (stretched thin
# over teeth; measured 0.5-0.6 of the typical on a grinning face) and would read as covered;
# the teeth say it is not. Measured: 18-29 % of a grin's opening; 0-3 % under a hand (13 % on
# one frame as the hand arrives, whose lips had lost nine tenths of their redness).
TEETH_LIGHTER = 1.12
TEETH_GREYER = 0.8
COLOURLESS_CHROMA = 2.0  # Lab a*/b* distance from grey under which skin has no colour
TEETH_SHOWN = 0.08
TEETH_MIN_REDNESS = 0.3  # of the typical: lips still there around the teeth (not a white cup)
CLEAR_RATIO = 0.8  # of the typical contrast: lips as plain as usual (clear_frames)


class MouthLibrary:
    """Capped, disk-backed store of upright lower-face crops and their landmarks."""

    def __init__(self, quality: str = "standard", capacity: int | None = None) -> None:
        if quality not in SCALE_CAP:
            raise ValueError(f"unknown quality {quality!r}; expected one of {sorted(SCALE_CAP)}")
        self.quality = quality
        self.scale = 0.0  # px per inter-ocular distance, fixed by the first face seen
        self.template: np.ndarray | None = None  # canonical positions of STABLE_POINTS
        self.size = (0, 0)  # crop (width, height)
        self.count = 0
        self.stride = 1
        self._capacity = capacity
        self._dir: Path | None = None
        self._crops: np.ndarray | None = None
        self._src: list[int] = []
        self._to_crop: list[np.ndarray] = []  # (2, 3) frame -> crop transform per entry
        self._raw: list[np.ndarray] = []  # raw landmarks per entry (frame coordinates)
        # Filled by finalize():
        self.src = np.empty(0, np.int64)
        self.landmarks = np.empty((0, 478, 2), np.float32)  # crop coordinates, smoothed
        self.shapes = np.empty((0, 3), np.float32)
        self.poses = np.empty((0, 2), np.float32)
        self.outer = np.empty(0, np.float32)  # outer-lip height (eye distances)
        self.to_crop = np.empty((0, 2, 3))  # picture -> crop affine per entry

    # -- building -------------------------------------------------------------------------

    def add(self, index: int, frame: np.ndarray, landmarks: np.ndarray | None) -> None:
        if landmarks is None or not np.isfinite(landmarks).all():
            return
        if self.template is None:
            self._start(landmarks)
        if index % self.stride:
            return
        if self.count == len(self._crops):
            self._decimate()
            if index % self.stride:
                return
        to_crop = self.crop_transform(landmarks)
        width, height = self.size
        self._crops[self.count] = cv2.warpAffine(
            frame, to_crop, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
        )
        self._src.append(int(index))
        self._to_crop.append(to_crop)
        self._raw.append(landmarks.astype(np.float32))
        self.count += 1
        if self.count % RELEASE_ENTRIES == 0:
            self.release_pages()

    def source_box(self, landmarks: np.ndarray | None) -> Box | None:
        """The frame pixels `add` reads for this face (the whole frame until the first face
        has fixed the crop's geometry), or None when it reads none."""
        if landmarks is None or not np.isfinite(landmarks).all():
            return None
        if self.template is None:
            return (0, 0, 1 << 30, 1 << 30)
        return source_box(self.crop_transform(landmarks), self.size)

    def _start(self, landmarks: np.ndarray) -> None:
        eyes = np.array([[-0.5, 0.0], [0.5, 0.0]])
        upright = _similarity(landmarks[[EYE_OUTER_RIGHT, EYE_OUTER_LEFT]].astype(float), eyes)
        stable = landmarks[STABLE_POINTS].astype(float)
        self.template = stable @ upright[:, :2].T + upright[:, 2]
        iod = float(face_scale(landmarks))
        self.scale = float(np.clip(iod, MIN_SCALE, SCALE_CAP[self.quality]))
        width = int(round((CROP_X[1] - CROP_X[0]) * self.scale))
        height = int(round((CROP_Y[1] - CROP_Y[0]) * self.scale))
        self.size = (width, height)
        capacity = self._capacity or MEMORY_BUDGET[self.quality] // (width * height * 3)
        capacity = int(np.clip(capacity, 2, MAX_ENTRIES))
        self._dir = Path(tempfile.mkdtemp(prefix="openlipsync-mouths-"))
        self._crops = scratch_array(self._dir / "crops.u8", (capacity, height, width, 3), np.uint8)

    def _decimate(self) -> None:
        """Keep every other entry (by source index) to make room; later frames follow suit."""
        self.stride *= 2
        keep = [i for i, src in enumerate(self._src) if src % self.stride == 0]
        if len(keep) == self.count:  # irregular indices: fall back to every other slot
            keep = list(range(0, self.count, 2))
        for slot, entry in enumerate(keep):
            self._crops[slot] = self._crops[entry]
        self._src = [self._src[i] for i in keep]
        self._to_crop = [self._to_crop[i] for i in keep]
        self._raw = [self._raw[i] for i in keep]
        self.count = len(keep)
        self.release_pages()

    def crop_transform(self, landmarks: np.ndarray) -> np.ndarray:
        """(2, 3) affine from frame pixels to this library's crop pixels for a face's landmarks."""
        canonical = _similarity(landmarks[STABLE_POINTS].astype(float), self.template)
        shift = np.array([[1.0, 0.0, -CROP_X[0]], [0.0, 1.0, -CROP_Y[0]]]) * self.scale
        to_crop = self.scale * canonical
        to_crop[:, 2] += shift[:, 2]
        return to_crop

    # -- after the tracking pass ----------------------------------------------------------

    def finalize(self, track_landmarks: np.ndarray | None = None) -> None:
        """Recompute entry landmarks from the smoothed track; drop entries it has no face for."""
        keep, rows = [], []
        for i in range(self.count):
            src = self._src[i]
            landmarks = self._raw[i]
            if track_landmarks is not None and src < len(track_landmarks):
                smoothed = track_landmarks[src]
                if np.isfinite(smoothed).all():
                    landmarks = smoothed
            to_crop = self._to_crop[i]
            rows.append(landmarks.astype(np.float64) @ to_crop[:, :2].T + to_crop[:, 2])
            keep.append(i)
        self.src = np.array([self._src[i] for i in keep], dtype=np.int64)
        self.to_crop = np.array([self._to_crop[i] for i in keep], np.float64).reshape(-1, 2, 3)
        self.landmarks = (
            np.stack(rows).astype(np.float32) if rows else np.empty((0, 478, 2), np.float32)
        )
        self.shapes = mouth_shape(self.landmarks) if rows else np.empty((0, 3), np.float32)
        self.poses = head_pose(self.landmarks) if rows else np.empty((0, 2), np.float32)
        self.outer = outer_height(self.landmarks) if rows else np.empty(0, np.float32)

    def crop(self, entry: int) -> np.ndarray:
        return self._crops[entry]

    def release_pages(self) -> None:
        """Let go of the crop file's pages this process holds: the budget is for the file, and
        the crops in use come back from the page cache (media/mapped.py)."""
        if self._crops is not None:
            release(self._crops)

    def close(self) -> None:
        self._crops = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __del__(self) -> None:
        self.close()


def outer_height(landmarks: np.ndarray) -> np.ndarray:
    """Outer-lip height in eye distances; (..., 478, 2) -> (...). Pressed or pouted lips are
    thick for their inner gap, which is what an outside observer reads as an open mouth."""
    gap = landmarks[..., LOWER_OUTER_MID, :] - landmarks[..., UPPER_OUTER_MID, :]
    return (np.linalg.norm(gap, axis=-1) / face_scale(landmarks)).astype(np.float32)


def head_pose(landmarks: np.ndarray) -> np.ndarray:
    """Crude (yaw, pitch) proxies in eye-distance units: nose-tip offset from the eye midpoint
    across and along the face. Library mouths from a very different head turn look pasted on."""
    eyes = (landmarks[..., EYE_OUTER_RIGHT, :] + landmarks[..., EYE_OUTER_LEFT, :]) / 2
    axis = landmarks[..., EYE_OUTER_LEFT, :] - landmarks[..., EYE_OUTER_RIGHT, :]
    scale = np.linalg.norm(axis, axis=-1, keepdims=True)
    across = axis / np.maximum(scale, 1e-6)
    down = np.stack([-across[..., 1], across[..., 0]], axis=-1)
    nose = landmarks[..., NOSE_TIP, :] - eyes
    yaw = (nose * across).sum(-1) / scale[..., 0]
    pitch = (nose * down).sum(-1) / scale[..., 0]
    return np.stack([yaw, pitch], axis=-1).astype(np.float32)


def contrast_box(landmarks: np.ndarray) -> Box | None:
    """The box around the lips that lip_contrast measures (frame pixels, not clipped)."""
    iod = float(face_scale(landmarks))
    if not np.isfinite(iod) or iod < 4:
        return None
    outer = landmarks[LIPS_OUTER]
    margin = 0.2 * iod
    x0, y0 = np.floor(outer.min(axis=0) - margin).astype(int)
    x1, y1 = np.ceil(outer.max(axis=0) + margin).astype(int)
    return int(x0), int(y0), int(x1), int(y1)


class LipContrast(NamedTuple):
    """How the lips stand out from the skin around them (see lip_contrast)."""

    redness: float  # Lab a*, lips minus skin (means)
    darkness: float  # Lab L, skin minus lips (means)
    teeth: float  # share of the opening between the lips that looks like teeth


NO_CONTRAST = LipContrast(float("nan"), float("nan"), float("nan"))


def lip_contrast(frame: np.ndarray, landmarks: np.ndarray) -> LipContrast:
    """How much redder the lips are than the skin around them, how much darker, and how much
    of the opening between them shows teeth: NaNs where the lips cannot be measured.

    Lips are redder than the surrounding skin for every complexion and most lighting; a hand or
    a microphone over the mouth is not. A frame whose contrast collapses relative to the video's
    typical value has its mouth covered: it must neither be pasted over nor pasted from. Film
    without colour has no redness to lose, but its lips are usually darker than the skin, and
    fingers over them are not (see covered_frames).
    """
    box = contrast_box(landmarks)
    if box is None:
        return NO_CONTRAST
    iod = float(face_scale(landmarks))
    outer, inner = landmarks[LIPS_OUTER], landmarks[LIPS_INNER]
    x0, y0, x1, y1 = box
    x0, y0 = max(x0, 0), max(y0, 0)
    x1, y1 = min(x1, frame.shape[1]), min(y1, frame.shape[0])
    if x1 - x0 < 4 or y1 - y0 < 4:
        return NO_CONTRAST
    # A mean difference needs no detail: measure on a patch about CONTRAST_WIDTH pixels wide
    # (Lab conversion of a large face's full-resolution patch costs milliseconds per frame).
    factor = min(1.0, CONTRAST_WIDTH / (x1 - x0))
    patch = np.ascontiguousarray(frame[y0:y1, x0:x1])
    if factor < 1.0:
        size = (max(4, round((x1 - x0) * factor)), max(4, round((y1 - y0) * factor)))
        patch = cv2.resize(patch, size, interpolation=cv2.INTER_AREA)
        factor_xy = np.array([size[0] / (x1 - x0), size[1] / (y1 - y0)], np.float32)
    else:
        factor_xy = np.ones(2, np.float32)
    lab = cv2.cvtColor(patch, cv2.COLOR_RGB2LAB)
    lightness, redness, yellowness = lab[..., 0], lab[..., 1], lab[..., 2]
    origin = np.array([x0, y0], np.float32)
    outer, inner, iod = (outer - origin) * factor_xy, (inner - origin) * factor_xy, iod * factor
    origin = np.zeros(2, np.float32)
    lips = np.zeros(redness.shape, np.uint8)
    cv2.fillPoly(lips, [np.round(outer - origin).astype(np.int32)], 1)
    mouth = np.zeros_like(lips)
    cv2.fillPoly(mouth, [np.round(inner - origin).astype(np.int32)], 1)
    radius = max(1, int(0.15 * iod))
    around = cv2.dilate(lips, np.ones((2 * radius + 1, 2 * radius + 1), np.uint8))
    ring, skin = (lips > 0) & (mouth == 0), (around > 0) & (lips == 0)
    if ring.sum() < 4 or skin.sum() < 4:
        return NO_CONTRAST
    red = float(redness[ring].mean()) - float(redness[skin].mean())
    dark = float(lightness[skin].mean()) - float(lightness[ring].mean())
    return LipContrast(red, dark, _teeth(lightness, redness, yellowness, mouth > 0, skin))


def _teeth(
    lightness: np.ndarray,
    redness: np.ndarray,
    yellowness: np.ndarray,
    opening: np.ndarray,
    skin: np.ndarray,
) -> float:
    """Share of the opening between the lips lighter and greyer than the skin: teeth. Film
    without colour (skin as grey as teeth) has only the lightness: there a light hand would
    count too, but a hand over the mouth is found by the lips' darkness, not by teeth."""
    if opening.sum() < 4:
        return 0.0

    def chroma2(where: np.ndarray) -> np.ndarray:  # squared: the order is all that matters
        a, b = redness[where].astype(np.int32) - 128, yellowness[where].astype(np.int32) - 128
        return a * a + b * b

    light = _middle(lightness[skin]) * TEETH_LIGHTER
    skin_chroma2 = _middle(chroma2(skin))
    teeth = lightness[opening] > light
    if skin_chroma2 > COLOURLESS_CHROMA**2:
        teeth &= chroma2(opening) < skin_chroma2 * TEETH_GREYER**2
    return float(teeth.mean())


def _middle(values: np.ndarray) -> float:
    """The median (upper, for an even count) without np.median's overhead: called per frame."""
    half = values.size // 2
    return float(np.partition(values, half)[half])


def covered_frames(
    redness: np.ndarray,
    darkness: np.ndarray | None = None,
    teeth: np.ndarray | None = None,
    ratio: float = 0.55,
    spread: int = 2,
) -> np.ndarray:
    """Frames whose mouth looks covered: lip contrast far below the video's typical value.

    The cue is redness where the lips stand out by it, else darkness (film without colour);
    a video whose lips stand out by neither gives no evidence, so nothing is flagged there.
    Typical is a high percentile, not the median: when a hand covers the mouth for most of
    the clip, the median is a covered frame's value. Teeth between lips that keep some of
    their redness are a grin, not a hand. The flag is widened by `spread` frames: a hand
    arrives and leaves in motion blur.
    """
    cue = _cue(redness, darkness)
    if cue is None:
        return np.zeros(len(redness), bool)
    contrast, typical = cue
    with np.errstate(invalid="ignore"):  # NaN (no measure) is never under anything
        covered = contrast < ratio * typical
        if teeth is not None and contrast is redness:
            covered &= ~((teeth >= TEETH_SHOWN) & (redness >= TEETH_MIN_REDNESS * typical))
    if spread and covered.any():
        kernel = np.ones(2 * spread + 1)
        covered = np.convolve(covered.astype(float), kernel, mode="same") > 0
    return covered


def clear_frames(redness: np.ndarray, darkness: np.ndarray | None = None) -> np.ndarray:
    """Frames whose lips stand out as plainly as usual (at least CLEAR_RATIO of the typical
    contrast, by the cue covered_frames uses): nothing is over them. None are clear where the
    lips stand out by neither cue, or cannot be measured."""
    cue = _cue(redness, darkness)
    if cue is None:
        return np.zeros(len(redness), bool)
    contrast, typical = cue
    with np.errstate(invalid="ignore"):
        return contrast >= CLEAR_RATIO * typical


def _cue(redness: np.ndarray, darkness: np.ndarray | None) -> tuple[np.ndarray, float] | None:
    """The contrast that gives evidence and its typical value: redness where the lips stand
    out by it, else darkness (film without colour); None when neither reaches its floor."""
    for contrast, floor in ((redness, MIN_REDNESS), (darkness, MIN_DARKNESS)):
        if contrast is None:
            continue
        finite = np.isfinite(contrast)
        if finite.sum() < 3:
            continue
        typical = float(np.percentile(contrast[finite], TYPICAL_PERCENTILE))
        if typical >= floor:
            return contrast, typical
    return None
