"""Still occluders: what stands still in the picture while the face moves behind it.

A microphone on a stand, a mug held still, the edge of a desk: in front of the lower face. The
renderer draws the person's mouth from other moments of their footage, warped onto the current
head, and anything in front of the mouth comes along: a microphone was bent by the chin's warp
and pasted a second time wherever it sat in the donor frame (a ghost that moves with the head).

The mouth library already holds the lower face of frames spread over the video, upright and at
one scale (face coordinates). Per shot, each crop is mapped back onto a coarse grid in picture
coordinates. A grid pixel that keeps its value there while the same place in face coordinates
changes (the head moved under it) belongs to something in front of the face. A still head gives
no such evidence, and then nothing is marked: from the picture alone, a face that does not move
and a thing in front of it cannot be told apart.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from openlipsync.engine.tracking import _apply, _compose_affine, _invert

GRID_IOD = 24.0  # grid pixels per eye distance: a microphone's edge within a twelfth of one
MIN_ENTRIES = 12  # library crops a shot needs before anything in it is judged
SAMPLES = 48  # crops of a shot looked at, spread over it (a statistic needs no more)
# The face must move under the grid by this many eye distances (10th-90th percentile of its
# position): otherwise a still face and a still object look the same.
MIN_MOTION = 0.15
COVERED = 0.8  # share of a shot's crops that must see a grid pixel for it to be judged
# Grey levels (standard deviation over the shot's crops): a still object stays under STILL in
# the picture (compression noise, lighting flicker), while in face coordinates the place it
# covers changes by more than CHANGING and by RATIO times as much (a face moving under it).
STILL = 4.0
CHANGING = 10.0
RATIO = 3.0
MIN_AREA = 0.05  # square eye distances: specks smaller than this are noise, not an object
# An object is in front of the face when this share of it lies inside the face's outline (on
# most of the shot's crops): a still shirt under a moving chin is beside the face, not in front
# of it, and the chin must be free to move over it.
IN_FRONT = 0.3
# A face that crosses the picture by many of its sizes in one shot (a small face walking
# across a wide shot) would need a grid as large as the picture, and 48 pictures of it: such
# a shot is not searched.
MAX_GRID = 160 * 160


_PIXEL = np.ones((3, 3), np.uint8)  # a grid pixel around


@dataclass
class ShotOccluder:
    """Where something stands still in front of the face during frames [start, stop)."""

    start: int
    stop: int
    to_grid: np.ndarray  # (2, 3) picture pixels -> grid pixels
    mask: np.ndarray  # float32 (h, w) on the grid: 1 where the occluder is


class StillOccluders:
    """The shots' still occluders, looked up by source frame."""

    def __init__(self, shots: list[ShotOccluder]) -> None:
        self.shots = sorted(shots, key=lambda shot: shot.start)
        self._starts = np.array([shot.start for shot in self.shots], np.int64)

    def __bool__(self) -> bool:
        return bool(self.shots)

    def of(self, frame: int) -> ShotOccluder | None:
        at = int(np.searchsorted(self._starts, frame, side="right")) - 1
        if at < 0 or frame >= self.shots[at].stop:
            return None
        return self.shots[at]

    def warped(self, frame: int, to_target: np.ndarray, size: tuple[int, int]) -> np.ndarray | None:
        """Float32 (h, w) coverage of source frame `frame`'s occluder in a target image whose
        pixels are `to_target` (2, 3) of the frame's; `size` is (h, w). None: nothing there."""
        shot = self.of(frame)
        if shot is None:
            return None
        grid_to_target = _compose_affine(to_target, _invert(shot.to_grid))
        out = cv2.warpAffine(
            shot.mask,
            grid_to_target,
            (size[1], size[0]),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=0.0,
        )
        return out if out.max() > 0.01 else None

    # -- hand-over to other processes (chunked rendering) -----------------------------------

    def export(self) -> dict[str, np.ndarray]:
        """Plain arrays (np.savez) that `imported` turns back into these occluders."""
        height = max((shot.mask.shape[0] for shot in self.shots), default=0)
        width = max((shot.mask.shape[1] for shot in self.shots), default=0)
        masks = np.zeros((len(self.shots), height, width), np.float32)
        for slot, shot in enumerate(self.shots):
            masks[slot, : shot.mask.shape[0], : shot.mask.shape[1]] = shot.mask
        return {
            "occluder_ranges": np.array([[s.start, s.stop] for s in self.shots], np.int64).reshape(
                -1, 2
            ),
            "occluder_to_grid": np.array([s.to_grid for s in self.shots], np.float64).reshape(
                -1, 2, 3
            ),
            "occluder_masks": masks,
        }

    @classmethod
    def imported(cls, arrays: dict[str, np.ndarray]) -> StillOccluders:
        if "occluder_ranges" not in arrays:
            return cls([])
        ranges, grids = arrays["occluder_ranges"], arrays["occluder_to_grid"]
        masks = np.asarray(arrays["occluder_masks"], np.float32)
        return cls(
            [
                ShotOccluder(int(a), int(b), np.asarray(grid, np.float64), masks[slot])
                for slot, ((a, b), grid) in enumerate(zip(ranges, grids, strict=True))
            ]
        )


@dataclass
class Crops:
    """Mouth-library crops (see library.py)."""

    images: list[np.ndarray]  # RGB uint8, face coordinates at `scale` px per eye distance
    to_crop: np.ndarray  # (n, 2, 3): picture -> crop affine of each
    landmarks: np.ndarray  # (n, 478, 2) in crop coordinates
    scale: float


def find_still_occluders(
    library: Crops, src: np.ndarray, shots: list[tuple[int, int]]
) -> StillOccluders:
    """The still occluders of every shot; crop i of `library` was cut from source frame
    `src[i]`; `shots`: [start, stop) source frame ranges."""
    found = []
    for start, stop in shots:
        entries = np.flatnonzero((src >= start) & (src < stop))
        if len(entries) > SAMPLES:
            entries = entries[np.linspace(0, len(entries) - 1, SAMPLES).round().astype(int)]
        if len(entries) >= MIN_ENTRIES:
            crops = Crops(
                [library.images[i] for i in entries],
                library.to_crop[entries],
                library.landmarks[entries],
                library.scale,
            )
            shot = _shot_occluder(crops, start, stop)
            if shot is not None:
                found.append(shot)
    return StillOccluders(found)


def _shot_occluder(crops: Crops, start: int, stop: int) -> ShotOccluder | None:
    shrink = GRID_IOD / crops.scale
    to_small = np.array([[shrink, 0.0, 0.5 * shrink - 0.5], [0.0, shrink, 0.5 * shrink - 0.5]])
    small_of = [_compose_affine(to_small, a) for a in crops.to_crop]  # picture -> small face
    faces = [_grey(crop, shrink) for crop in crops.images]  # face coordinates, GRID_IOD px/eye
    to_grid, size = _grid(small_of, faces[0].shape)
    if size[0] * size[1] > MAX_GRID:
        return None
    to_picture = [_compose_affine(to_grid, _invert(small)) for small in small_of]  # face -> grid
    if not _moved(_face_positions(to_picture)):
        return None
    views = _Views(faces, to_picture, size)
    mask = _objects(_marked(*views.spread()), views.inside(crops.landmarks * shrink))
    if not mask.any():
        return None
    mask = cv2.dilate(mask.astype(np.uint8), _PIXEL) > 0  # its outline is soft on the grid
    return ShotOccluder(start, stop, to_grid, mask.astype(np.float32))


def _marked(still: np.ndarray, changes: np.ndarray, judged: np.ndarray) -> np.ndarray:
    """Still in the picture, changing on the face under it (see STILL, CHANGING, RATIO)."""
    return judged & (still < STILL) & (changes > CHANGING) & (changes > RATIO * still)


def _grid(small_of: list[np.ndarray], shape: tuple[int, ...]) -> tuple[np.ndarray, tuple[int, int]]:
    """(picture -> grid affine, grid (width, height)): picture coordinates at GRID_IOD px per
    eye distance of the shot's median face, over the box the crops cover."""
    zoom = float(np.median([np.sqrt(abs(np.linalg.det(a[:, :2]))) for a in small_of]))
    height, width = shape[:2]
    corners = np.array([[0, 0], [width, 0], [0, height], [width, height]], np.float64)
    seen = np.array([_apply(_invert(a), corners) for a in small_of]).reshape(-1, 2) * zoom
    origin = np.floor(seen.min(axis=0)) - 1
    size = np.ceil(seen.max(axis=0)) + 1 - origin
    return np.array([[zoom, 0.0, -origin[0]], [0.0, zoom, -origin[1]]]), (
        int(size[0]),
        int(size[1]),
    )


def _face_positions(to_picture: list[np.ndarray]) -> np.ndarray:
    """(n, 2): where each crop's face (its crop's origin) is on the grid."""
    return np.array([_apply(a, np.zeros((1, 2)))[0] for a in to_picture])


def _moved(where: np.ndarray) -> bool:
    """Whether the faces (see _face_positions) moved under the grid by MIN_MOTION (10th-90th
    percentile)."""
    return bool(
        np.ptp(np.percentile(where, [10, 90], axis=0), axis=0).max() >= MIN_MOTION * GRID_IOD
    )


class _Views:
    """A shot's small faces seen on the grid (picture coordinates)."""

    def __init__(
        self, faces: list[np.ndarray], to_picture: list[np.ndarray], size: tuple[int, int]
    ) -> None:
        self.faces, self.to_picture, self.size = faces, to_picture, size
        self.pictures = [_warp(f, a, size) for f, a in zip(faces, to_picture, strict=True)]
        self.seen = [
            _warp(np.ones_like(f), a, size) > 0.999 for f, a in zip(faces, to_picture, strict=True)
        ]

    def inside(self, landmarks: np.ndarray) -> np.ndarray:
        """Where the face's outline (its landmarks' hull) is on most crops."""
        count = sum(
            _warp(_inside(points, face.shape), a, self.size) > 0.5
            for face, points, a in zip(self.faces, landmarks, self.to_picture, strict=True)
        )
        return count >= 0.5 * len(self.faces)

    def spread(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Over the whole shot: how much each grid pixel changes in the picture, and the face
        under it (standard deviations), and whether enough crops see it to judge."""
        count = sum(self.seen)
        n = np.maximum(count, 1)
        total = sum(np.where(s, p, 0) for s, p in zip(self.seen, self.pictures, strict=True))
        squares = sum(np.where(s, p * p, 0) for s, p in zip(self.seen, self.pictures, strict=True))
        still = np.sqrt(np.maximum(squares / n - (total / n) ** 2, 0))
        face_std = np.std(np.stack(self.faces), axis=0)
        changes = sum(
            np.where(s, _warp(face_std, a, self.size), 0)
            for s, a in zip(self.seen, self.to_picture, strict=True)
        )
        return still, changes / n, count >= COVERED * len(self.faces)


def _objects(mask: np.ndarray, face: np.ndarray) -> np.ndarray:
    """The objects of `mask` in front of the `face` region (see IN_FRONT), not specks."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), 8)
    area = stats[:, cv2.CC_STAT_AREA]
    in_front = np.bincount(labels[face], minlength=count)
    min_area = MIN_AREA * GRID_IOD**2
    keep = (area >= min_area) & (in_front >= IN_FRONT * area) & (in_front >= min_area)
    keep[0] = False
    cleaned = keep[labels].astype(np.uint8)
    return cleaned > 0


def _inside(points: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """float32 mask of the face's outline (the hull of its landmarks) on an image of `shape`."""
    out = np.zeros(shape[:2], np.float32)
    hull = cv2.convexHull(np.round(points).astype(np.int32))
    cv2.fillConvexPoly(out, hull, 1.0)
    return out


def _grey(crop: np.ndarray, shrink: float) -> np.ndarray:
    grey = cv2.cvtColor(np.asarray(crop), cv2.COLOR_RGB2GRAY)
    size = (max(1, round(grey.shape[1] * shrink)), max(1, round(grey.shape[0] * shrink)))
    return cv2.resize(grey, size, interpolation=cv2.INTER_AREA).astype(np.float32)


def _warp(image: np.ndarray, affine: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return cv2.warpAffine(
        image,
        affine,
        size,
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0.0,
    )
