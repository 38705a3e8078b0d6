"""Mouth rendering: the person's own mouths from the library, posed, reshaped and blended in.

Per output frame: pick a library mouth (chosen for the whole timeline at once so nothing
flickers), place it on the current head with a similarity on the stable upper-face points, bend
its lips and chin to the exact target (open, jaw, width) with a piecewise-affine warp of the mesh,
colour-match it to the frame and blend it over the lower face with a feathered mask. All work
happens in a box around the lower face; the rest of the frame is returned untouched.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
from scipy.spatial import Delaunay

from openlipsync.engine.background import MadeAhead
from openlipsync.engine.captions import caption_mask, reach_for, union
from openlipsync.engine.composite import blend, match_colour, match_grain, polygon_mask
from openlipsync.engine.fallback_mouth import paint_gap, paint_interior, paint_seam
from openlipsync.engine.library import (
    CROP_X,
    CROP_Y,
    LipContrast,
    MouthLibrary,
    clear_frames,
    contrast_box,
    covered_frames,
    head_pose,
    lip_contrast,
)
from openlipsync.engine.mouth import (
    CHIN,
    LIPS_INNER,
    LIPS_OUTER,
    LOWER_OUTER_MID,
    MOUTH_LEFT,
    MOUTH_RIGHT,
    face_scale,
)
from openlipsync.engine.occluders import Crops, StillOccluders, find_still_occluders
from openlipsync.engine.scenes import frame_runs, shot_ranges
from openlipsync.engine.tracking import (
    STABLE_POINTS,
    FaceTrack,
    HandWatch,
    _apply,
    _compose_affine,
    _invert,
    _similarity,
    hand_square,
)
from openlipsync.media.mapped import in_blocks, release
from openlipsync.media.picture import Box, Patch, Picture, RgbPicture

RELEASE_FRAMES = 256  # output frames between two releases of the mapped track and crops
QUALITIES = ("fast", "standard", "pro")

UPPER_INNER = LIPS_INNER[1:10]
LOWER_INNER = LIPS_INNER[11:]
UPPER_OUTER = LIPS_OUTER[1:10]
LOWER_OUTER = LIPS_OUTER[11:]
LIP_CORNERS = [LIPS_OUTER[0], LIPS_OUTER[10], LIPS_INNER[0], LIPS_INNER[10]]
# Inner-lip points facing each other across the gap (upper, lower).
INNER_PAIRS = list(zip(UPPER_INNER, LOWER_INNER[::-1], strict=True))
# Skin around the lips that follows the lips' geometry from the library sample.
UPPER_SKIN = [164, 167, 393, 165, 391, 92, 322, 186, 410]
LOWER_SKIN = [18, 200, 202, 422, 204, 424, 194, 418, 57, 287, 212, 432]
CHIN_POINTS = [152, 148, 377, 176, 400, 149, 378, 150, 379, 136, 365, 175, 199, 32, 262, 140, 369]
MOVING = LIPS_OUTER + LIPS_INNER + UPPER_SKIN + LOWER_SKIN + CHIN_POINTS
# Points that stay where the current frame has them (nose, cheeks, jaw sides).
FIXED = [1, 2, 4, 98, 327, 205, 425, 50, 280, 187, 411, 147, 376, 123, 352, 93, 323, 132, 361]
FIXED += [58, 288, 172, 397, 36, 266, 203, 423, 206, 426, 216, 436, 214, 434]
CONTROL = MOVING + FIXED
# Hull of the blended region: under the nose, the cheeks beside the mouth, the chin.
# The jaw-side points sit on the face contour: the mask is pulled inside there (the background
# or hair behind a library face is not this frame's), and pushed past it only at the chin.
MASK_POINTS = [206, 164, 426, 434, 365, 379, 378, 400, 377, 152, 148, 176, 149, 150, 136, 214]
MASK_PULL = {365: 0.12, 379: 0.1, 136: 0.12, 150: 0.1, 378: 0.05, 149: 0.05}
MASK_PUSH = {400: 0.03, 377: 0.05, 152: 0.06, 148: 0.05, 176: 0.03}

# Selection costs: shape error per unit, pose error per unit, and switching between samples.
SHAPE_SCALE = np.array([0.025, 0.06, 0.05], np.float32)  # (open, jaw, width) tolerances
POSE_SCALE = np.array([0.02, 0.02], np.float32)  # a turned head's mouth does not fit
SWITCH_COST = 4.0
HOLD_COST = 0.6
# The frame's own mouth matches its skin, light and head pose exactly: prefer it when close.
OWN_BONUS = 3.0
CLOSED_OPEN = 0.04  # targets below this ask for closed lips
CLOSED_SCALE = 0.015  # tolerance for a parted sample behind a closed target
THICKNESS_SCALE = 0.02  # tolerance for lips thicker or thinner than the person's typical
# A mouth whose lips a still occluder hid in its own frame (occluders.py) shows the frame's own
# lips there instead: per share of its lips hidden, it costs as much as a switch.
HIDDEN_LIPS_COST = SWITCH_COST
# reshape_mouth scales a sample's width by at most these factors; what is left over shows (a
# grin narrowed to a neutral width stays a grin): per eye distance left, a cost this steep.
WIDTH_RATIO = (0.85, 1.2)
UNMET_WIDTH_SCALE = 0.02
FLAT = 0.05  # a warp triangle squashed to this fraction of its area is dropped
SQUASHED = 0.3  # of the typical area ratio: skin triangles _unfolded relaxes
UNFOLD_STEPS = 4
SWITCH_FADE = (0.6, 0.3)  # weight of the previous sequence on the frames after a jump
CANDIDATES = 16
VITERBI_CHUNK = 256
HAND_SAMPLING = {"fast": 25, "standard": 15, "pro": 8}  # look for hands every n-th frame
OPEN_LIBRARY = 0.08  # a library mouth opened less than this shows no interior of its own
# Work at most this many times the library's resolution (px per eye distance) before upscaling.
WORK_SCALE = {"fast": 1.0, "standard": 1.25, "pro": 1e9}
_ROW = {k: i for i, k in enumerate(CONTROL)}
_MASK_ROWS = [_ROW[k] for k in MASK_POINTS]
_INNER_ROWS = [_ROW[k] for k in LIPS_INNER]
_OUTER_ROWS = [_ROW[k] for k in LIPS_OUTER]
_SKIN_ROWS = np.array([_ROW[k] for k in UPPER_SKIN + LOWER_SKIN + CHIN_POINTS])


class MouthRenderer:
    def __init__(self, width: int, height: int, fps: float, quality: str = "standard") -> None:
        if quality not in QUALITIES:
            raise ValueError(f"unknown quality {quality!r}; expected one of {QUALITIES}")
        if width <= 0 or height <= 0:
            raise ValueError(f"invalid frame size {width}x{height}")
        self.width, self.height = int(width), int(height)
        self.fps = float(fps) if fps and np.isfinite(fps) and fps > 0 else 25.0
        self.quality = quality
        self.library = MouthLibrary(quality)
        self._interp = cv2.INTER_CUBIC if quality == "pro" else cv2.INTER_LINEAR
        self._prepared = False
        self._contrast: dict[int, LipContrast] = {}
        self._hands: HandWatch | None = None
        self._hands_ahead: MadeAhead[HandWatch] | None = None
        self._hand_covered = np.zeros(0, bool)
        self._choice = np.empty(0, np.int64)
        self._alpha = np.empty(0, np.float32)
        self._ghost = np.empty(0, np.int64)
        self._ghost_weight = np.empty(0, np.float32)
        self.occluders = StillOccluders([])

    # -- tracking pass ---------------------------------------------------------------------

    def observe(self, index: int, frame: np.ndarray, landmarks: np.ndarray | None) -> None:
        self._check_frame(frame)
        if landmarks is not None and np.shape(landmarks) != (478, 2):
            raise ValueError(f"expected (478, 2) landmarks, got {np.shape(landmarks)}")
        self.library.add(index, frame, landmarks)
        if landmarks is not None and np.isfinite(landmarks).all():
            self._contrast[int(index)] = lip_contrast(frame, landmarks)
            if self._hands is None:
                self._hands = self._hands_ahead.take() if self._hands_ahead else self._hand_watch()
            self._hands.observe(index, frame, landmarks)

    def make_ahead(self) -> None:
        """Start the hand model on another thread now, before the first frame `observe` needs
        it for (see MadeAhead)."""
        if self._hands is None and self._hands_ahead is None:
            self._hands_ahead = MadeAhead(self._hand_watch, 1, HandWatch.close)

    def _hand_watch(self) -> HandWatch:
        return HandWatch(every=HAND_SAMPLING[self.quality])

    def _stop_hands(self) -> None:
        if self._hands_ahead is not None:
            self._hands_ahead.close()
            self._hands_ahead = None
        if self._hands is not None:
            self._hands.close()
            self._hands = None

    def source_boxes(self, index: int, landmarks: np.ndarray | None) -> list[Box]:
        """The frame pixels `observe` reads for this frame (see Picture.partial)."""
        if landmarks is None or not np.isfinite(landmarks).all():
            return []
        boxes = [self.library.source_box(landmarks), contrast_box(landmarks)]
        if index % HAND_SAMPLING[self.quality] == 0:  # a HandWatch sample
            x0, y0, size = hand_square(landmarks)
            boxes.append((x0, y0, x0 + size, y0 + size))
        return [box for box in boxes if box is not None]

    # -- planning --------------------------------------------------------------------------

    def teeth(self, n_src: int) -> np.ndarray:
        """float (n_src,): share of each source frame's lip opening that shows teeth (NaN
        where the lips were not measured)."""
        return self._contrasts(n_src)[:, 2].astype(np.float32)

    def _contrasts(self, n_src: int) -> np.ndarray:
        """(n_src, 3) LipContrast (redness, darkness, teeth) per source frame, NaN unmeasured."""
        contrast = np.full((n_src, 3), np.nan)
        for index, value in self._contrast.items():
            if index < n_src:
                contrast[index] = value
        return contrast

    def _covered(self, n_src: int, people: np.ndarray | None = None) -> np.ndarray:
        """bool (n_src,): source frames whose mouth is covered (its lip contrast collapsed, or
        a hand was seen on it), never to be pasted over nor from. Known once the tracking
        pass is done (this stops the hand model). Contrast is judged against each person's
        own (`people`, see engine/identity.py): one man's lips under a moustache stand out
        less than another's, and against the other's they read as covered on every frame."""
        contrast = self._contrasts(n_src)
        covered = _per_person(
            covered_frames, people, contrast[:, 0], contrast[:, 1], contrast[:, 2]
        )
        if self._hands is not None:  # the hand model is done once the tracking pass is
            clear = _per_person(clear_frames, people, contrast[:, 0], contrast[:, 1])
            self._hand_covered = self._hands.covered(n_src, clear)
        self._stop_hands()
        if len(self._hand_covered) == n_src:
            covered |= self._hand_covered
        return covered

    def prepare(
        self,
        track: FaceTrack,
        targets: np.ndarray,
        src_index: np.ndarray,
        active: np.ndarray,
        people: np.ndarray | None = None,
        breaks: list[int] | None = None,
    ) -> None:
        """Choose every output frame's library mouth. `people` (per source frame, see
        engine/identity.py) keeps each person to their own mouths; a frame whose person has
        none left in the library is not drawn. `breaks`: source frames that start a new shot
        (or another face), where still occluders (see occluders.py) are looked for afresh."""
        targets = np.asarray(targets, np.float32).reshape(-1, 3)
        src_index = np.asarray(src_index, np.int64).reshape(-1)
        active = np.asarray(active, bool).reshape(-1)
        if not (len(targets) == len(src_index) == len(active)):
            raise ValueError("targets, src_index and active must have one row per output frame")
        n_src = len(track.present)
        if len(src_index) and (src_index.min() < 0 or src_index.max() >= n_src):
            raise ValueError("src_index refers to frames outside the track")
        people = None if people is None else np.asarray(people, np.int64)
        self.track = track
        self.targets = targets
        self.src_index = src_index
        self.library.finalize(track.landmarks)
        release(track.landmarks)
        lib = self.library
        self.occluders = find_still_occluders(
            Crops([lib.crop(i) for i in range(lib.count)], lib.to_crop, lib.landmarks, lib.scale),
            lib.src,
            shot_ranges(breaks or [], n_src),
        )
        lib.release_pages()
        present = track.present[src_index] if len(src_index) else np.zeros(0, bool)
        covered = self._covered(n_src, people)
        usable = ~covered[lib.src] if lib.count else np.zeros(0, bool)
        valid = active & present & np.isfinite(targets).all(axis=1) & usable.any()
        valid &= ~covered[src_index] if len(src_index) else valid
        owner = None if people is None else people[lib.src]
        if owner is not None and len(src_index):
            valid &= np.isin(people[src_index], owner[usable])
        self._choice = np.full(len(targets), -1, np.int64)
        self._alpha = np.zeros(len(targets), np.float32)
        self._ghost = np.full(len(targets), -1, np.int64)
        self._ghost_weight = np.zeros(len(targets), np.float32)
        if lib.count:
            self._triangles = _triangulation(lib)
            self._ring = _crop_ring(lib.size)
            poses = in_blocks(head_pose, track.landmarks)[src_index]  # no (T, 478, 2) copy
            entry_cost = _thickness_cost(lib, owner) + HIDDEN_LIPS_COST * self._hidden_lips()
            ramp = max(1, int(round(0.12 * self.fps)))
            for start, stop in frame_runs(valid):
                shown = src_index[start:stop]
                self._choice[start:stop] = _viterbi(
                    lib,
                    targets[start:stop],
                    poses[start:stop],
                    _allowed(usable, owner, None if people is None else people[shown]),
                    shown,
                    entry_cost,
                )
                self._alpha[start:stop] = _fade(stop - start, ramp, start > 0, stop < len(valid))
            self._ghost, self._ghost_weight = _switch_fades(self._choice, lib.src, owner)
        self._prepared = True

    def shown_sources(self) -> tuple[np.ndarray, np.ndarray]:
        """Per output frame, the source frames whose mouths the plan shows there: the mouth
        drawn, and the one fading out after a switch (-1: none)."""
        if not self._prepared:
            raise RuntimeError("MouthRenderer.prepare() must run before shown_sources()")
        lib_src = self.library.src if self.library.count else np.array([-1])
        return tuple(
            np.where(entries >= 0, lib_src[np.maximum(entries, 0)], -1)
            for entries in (self._choice, self._ghost)
        )

    # -- render pass -----------------------------------------------------------------------

    def render(self, out_index: int, frame: np.ndarray) -> np.ndarray:
        """Output frame `out_index`: `frame` itself when nothing changes, else a new array."""
        self._check_frame(frame)
        patch = self.render_patch(out_index, RgbPicture(frame))
        return frame if patch is None else patch.onto(frame)

    def render_patch(self, out_index: int, picture: Picture) -> Patch | None:
        """What output frame `out_index` changes of its source picture (None: nothing). Only
        the box around the mouth is read, so a 4:2:0 picture is converted there alone."""
        if not self._prepared:
            raise RuntimeError("MouthRenderer.prepare() must run before render()")
        if out_index % RELEASE_FRAMES == 0:  # mapped files: keep only what recent frames read
            self.library.release_pages()
            release(self.track.landmarks)
        if not (0 <= out_index < len(self._choice)):
            return None
        entry, alpha = int(self._choice[out_index]), float(self._alpha[out_index])
        if entry < 0 or alpha <= 0:
            return None
        current = self.track.landmarks[self.src_index[out_index]]
        if not np.isfinite(current).all():
            return None
        return self._compose(picture, current, entry, self.targets[out_index], alpha, out_index)

    def _compose(
        self,
        picture: Picture,
        current: np.ndarray,
        entry: int,
        target: np.ndarray,
        alpha: float,
        out_index: int = -1,
    ) -> Patch | None:
        lib = self.library
        sample = lib.landmarks[entry].astype(np.float64)
        iod_crop = float(face_scale(sample))
        shaped = reshape_mouth(sample, lib.shapes[entry], target, iod_crop)
        to_frame = _similarity(sample[STABLE_POINTS], current[STABLE_POINTS].astype(np.float64))
        ring_dst = _apply(to_frame, self._ring)
        src = np.vstack([sample[CONTROL], self._ring])
        dst = np.vstack([_apply(to_frame, shaped[MOVING]), current[FIXED], ring_dst])
        dst = _unfolded(dst, src, self._triangles, _apply(to_frame, sample[MOVING]))
        moved = dst[: len(MOVING)]

        iod = float(face_scale(current))
        target_pts = np.vstack([moved, current[FIXED]])
        feather = max(1.0, 0.06 * iod)
        hull_pts = np.vstack([target_pts[_MASK_ROWS], current[MASK_POINTS]]).astype(np.float64)
        hull_pts = _shape_mask_hull(hull_pts, current, iod)
        x0, y0 = np.floor(hull_pts.min(axis=0) - 2.5 * feather).astype(int)
        x1, y1 = np.ceil(hull_pts.max(axis=0) + 2.5 * feather).astype(int)
        x0, y0 = max(x0, 0), max(y0, 0)
        x1, y1 = min(x1, picture.width), min(y1, picture.height)
        if x1 - x0 < 4 or y1 - y0 < 4:
            return None
        full = (y1 - y0, x1 - x0)
        # The library holds mouths at lib.scale px per eye distance: working on a large face at
        # full size only resamples the same detail more finely. Warp, paint and colour-match at
        # about the library's resolution and upscale once.
        limit = WORK_SCALE[self.quality] * lib.scale / max(iod, 1e-6)
        box = full
        if limit < 0.9:
            box = (max(4, round(full[0] * limit)), max(4, round(full[1] * limit)))
        kx, ky = box[1] / full[1], box[0] / full[0]
        k = (kx + ky) / 2
        # frame pixel -> work pixel (pixel centres agree with cv2.resize between the two sizes)
        to_work = np.array(
            [[kx, 0.0, (0.5 - x0) * kx - 0.5], [0.0, ky, (0.5 - y0) * ky - 0.5]], np.float64
        )

        def work(points: np.ndarray) -> np.ndarray:
            return _apply(to_work, points)

        crop_to_work = _compose_affine(to_work, to_frame)
        dst_work = work(dst)
        map_x, map_y = _piecewise_affine(src, dst_work, self._triangles, box, crop_to_work)
        crop = np.asarray(lib.crop(entry))
        warped = cv2.remap(crop, map_x, map_y, self._interp, borderMode=cv2.BORDER_REPLICATE)
        warped = warped.astype(np.float32)
        # What stands still in front of the face stays as it is: in this frame, and where the
        # mouths drawn had it in their own frames (else it would be pasted again, elsewhere).
        shown = _shown(self._occluded_source(out_index, to_work, box))
        shown = _shown(self._occluded_entry(entry, map_x, map_y), shown)
        hull = cv2.convexHull(work(hull_pts).astype(np.float32))[:, 0]
        region = picture.region((x0, y0, x1, y1))
        own = self._captions(region, current, (x0, y0), box)
        # Where this frame has no caption, a donor's line must show inside the drawn mouth.
        drawn = hull if own is None else None
        letters = self._entry_captions(entry, map_x, map_y, drawn)
        ghost, weight = self._ghost_of(out_index)
        if ghost >= 0:  # cross-fade from the sequence we just left, so a switch never pops
            other, other_hidden, other_letters = self._warp_onto(
                ghost, current, dst_work, ring_dst, box, to_work, drawn
            )
            warped = (1 - weight) * warped + weight * other
            shown = _shown(other_hidden, shown, weight)
            letters = union(letters, other_letters)
        # Only colour statistics are read from it: bilinear is enough and cheaper than AREA.
        small = (
            region if box == full else cv2.resize(region, box[::-1], interpolation=cv2.INTER_LINEAR)
        )
        captions = union(own, letters)

        inner = work(target_pts[_INNER_ROWS])
        outer = work(target_pts[_OUTER_ROWS])
        iod_work = iod * k
        # Closed lips warped open show only stretched lip texture: paint an interior instead.
        # An entry that shows its own interior (teeth, tongue) is stretched, never painted over.
        entry_open = float(lib.shapes[entry, 0])
        amount = float(np.clip((target[0] - entry_open - 0.02) / 0.04, 0, 1))
        amount *= float(np.clip((OPEN_LIBRARY - entry_open) / 0.04, 0, 1))
        # Open lips warped shut squeeze their teeth into a sliver: cover it with a lip seam.
        closing = float(np.clip((lib.shapes[entry, 0] - target[0] - 0.015) / 0.03, 0, 1))
        closing *= float(np.clip((0.05 - target[0]) / 0.03, 0, 1))
        # A sample that shows teeth, opened much further: part the teeth over a dark gap.
        extra = (
            (float(target[0]) - 1.3 * entry_open) * iod_work if entry_open >= OPEN_LIBRARY else 0
        )
        if amount > 0 or closing > 0 or extra > 1.0:
            lip_rgb = _lip_colour(warped, outer, inner)
        if extra > 1.0:
            warped = paint_gap(warped, inner, extra, lip_rgb, iod_work)
        if amount > 0:
            white = float(np.percentile(small.mean(axis=2), 99))
            warped = paint_interior(warped, inner, iod_work, lip_rgb, white, amount)
        if closing > 0:
            warped = paint_seam(warped, inner, iod_work, lip_rgb, closing)

        mask = polygon_mask(box, [hull], feather * k)
        lips = polygon_mask(box, [outer, work(current[LIPS_OUTER])], 0)
        lips = cv2.dilate(lips, None, iterations=max(1, int(0.05 * iod_work)))
        weight = mask * (1 - lips)
        if shown is not None:
            mask, weight = mask * shown, weight * shown
        if captions is not None:  # letters stay as the frame has them (engine/captions.py)
            mask, weight = mask * (1 - captions), weight * (1 - captions)
        warped = match_colour(warped, small, weight, sigma=max(2.0, 0.18 * iod_work))
        mask *= alpha
        if box != full:
            warped = cv2.resize(warped, full[::-1], interpolation=cv2.INTER_LINEAR)
            mask = cv2.resize(mask, full[::-1], interpolation=cv2.INTER_LINEAR)
            weight = cv2.resize(weight, full[::-1], interpolation=cv2.INTER_LINEAR)
        warped = match_grain(warped, region, weight, seed=max(out_index, 0))
        return Patch((x0, y0, x1, y1), blend(region, warped, mask))

    def _captions(
        self, region: np.ndarray, current: np.ndarray, origin: tuple[int, int], box: tuple[int, int]
    ) -> np.ndarray | None:
        """Where this frame's caption text lies in the work box (found at full size, where
        strokes are sharp)."""
        lips = current[LIPS_OUTER].astype(np.float64) - np.asarray(origin, np.float64)
        own = caption_mask(region, lips, reach_for(self.height))
        if own is not None and own.shape != box:
            own = cv2.resize(own, box[::-1], interpolation=cv2.INTER_AREA)
        return own

    def _entry_captions(
        self, entry: int, map_x: np.ndarray, map_y: np.ndarray, drawn: np.ndarray | None
    ) -> np.ndarray | None:
        """Where a library mouth's own frame had caption text, through the crop's warp (work
        pixels): the donor's letters are found in its sharp crop, not in the warped, blended
        mouth, where soft letters without an outline were missed and came through as ghosts.
        With `drawn` (a polygon in work pixels: the mouth drawn, for a frame without a caption
        of its own), outlined strokes count only inside it, taken into the crop: beside it, a
        collar's tips against a dark suit lined up like letters on a portrait, and the teeth
        in their rows were then kept as text."""
        lib = self.library
        crop = np.asarray(lib.crop(entry))
        x0, y0 = max(int(map_x.min()), 0), max(int(map_y.min()), 0)
        x1, y1 = min(int(map_x.max()) + 2, crop.shape[1]), min(int(map_y.max()) + 2, crop.shape[0])
        if x1 - x0 < 4 or y1 - y0 < 4:
            return None
        where = None if drawn is None else _in_crop(drawn, map_x, map_y, (x0, y0, x1, y1))
        scale = float(np.sqrt(abs(np.linalg.det(lib.to_crop[entry][:, :2]))))
        reach = max(1, round(reach_for(self.height) * scale))
        lips = lib.landmarks[entry][LIPS_OUTER].astype(np.float64) - (x0, y0)
        found = caption_mask(crop[y0:y1, x0:x1], lips, reach, where)
        if found is None:
            return None
        return cv2.remap(
            found,
            map_x - np.float32(x0),
            map_y - np.float32(y0),
            cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
        )

    def _check_frame(self, frame: np.ndarray) -> None:
        """Frames must be RGB uint8; their size is not checked against (width, height), since
        a container's rotation metadata can legitimately swap them."""
        if (
            not isinstance(frame, np.ndarray)
            or frame.dtype != np.uint8
            or frame.ndim != 3
            or frame.shape[2] != 3
            or min(frame.shape[:2]) < 1
        ):
            raise ValueError(
                "expected an RGB uint8 (H, W, 3) frame, got "
                f"{getattr(frame, 'shape', None)} {getattr(frame, 'dtype', None)}"
            )

    def _ghost_of(self, out_index: int) -> tuple[int, float]:
        if 0 <= out_index < len(self._ghost):
            return int(self._ghost[out_index]), float(self._ghost_weight[out_index])
        return -1, 0.0

    def _warp_onto(
        self,
        entry: int,
        current: np.ndarray,
        dst_work: np.ndarray,
        ring_dst: np.ndarray,
        box: tuple[int, int],
        to_work: np.ndarray,
        drawn: np.ndarray | None,
    ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """Another library entry warped onto exactly the same target geometry (work pixels),
        its still occluders there (see _occluded_entry) and its frame's caption text (see
        _entry_captions)."""
        sample = self.library.landmarks[entry].astype(np.float64)
        to_frame = _similarity(sample[STABLE_POINTS], current[STABLE_POINTS].astype(np.float64))
        back = _invert(to_frame)
        ring_src = _apply(back, ring_dst)
        src = np.vstack([sample[CONTROL], ring_src])
        crop_to_work = _compose_affine(to_work, to_frame)
        map_x, map_y = _piecewise_affine(src, dst_work, self._triangles, box, crop_to_work)
        crop = np.asarray(self.library.crop(entry))
        warped = cv2.remap(crop, map_x, map_y, self._interp, borderMode=cv2.BORDER_REPLICATE)
        hidden = self._occluded_entry(entry, map_x, map_y)
        return warped.astype(np.float32), hidden, self._entry_captions(entry, map_x, map_y, drawn)

    def _hidden_lips(self) -> np.ndarray:
        """Per library entry: the share of its lips the still occluders hid in its frame."""
        lib = self.library
        hidden = np.zeros(lib.count, np.float32)
        if not self.occluders:
            return hidden
        width, height = lib.size
        for entry in range(lib.count):
            cover = self.occluders.warped(int(lib.src[entry]), lib.to_crop[entry], (height, width))
            lips = polygon_mask((height, width), [lib.landmarks[entry][LIPS_OUTER]], 0) > 0.5
            if cover is not None and lips.any():
                hidden[entry] = float(cover[lips].mean())
        return hidden

    def _occluded_source(
        self, out_index: int, to_work: np.ndarray, box: tuple[int, int]
    ) -> np.ndarray | None:
        """Coverage (work pixels) of the still occluders in front of this frame's face."""
        if not self.occluders or not 0 <= out_index < len(self.src_index):
            return None
        return self.occluders.warped(int(self.src_index[out_index]), to_work, box)

    def _occluded_entry(
        self, entry: int, map_x: np.ndarray, map_y: np.ndarray
    ) -> np.ndarray | None:
        """Coverage (work pixels, through the crop's warp `map_x`, `map_y`) of the still
        occluders that were in front of a library mouth in its own frame."""
        lib = self.library
        if not self.occluders:
            return None
        width, height = lib.size
        in_crop = self.occluders.warped(int(lib.src[entry]), lib.to_crop[entry], (height, width))
        if in_crop is None:
            return None
        return cv2.remap(in_crop, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

    def close(self) -> None:
        self._stop_hands()
        self.library.close()

    # -- hand-over to other processes (chunked rendering) -----------------------------------

    def export_state(self) -> tuple[dict, dict[str, np.ndarray]]:
        """(scalars, arrays) that `from_state` turns back into a renderer whose `render` gives
        the same pixels for every output frame, in another process or on another machine.

        Only the library mouths the plan actually shows are kept (entries are renumbered), so
        the hand-over holds a few hundred crops, not the whole capped library."""
        if not self._prepared:
            raise RuntimeError("MouthRenderer.prepare() must run before export_state()")
        lib = self.library
        shown = np.concatenate([self._choice, self._ghost])
        used = np.unique(shown[shown >= 0])
        renumber = np.full(max(lib.count, 1), -1, np.int64)
        renumber[used] = np.arange(len(used))

        def remap(entries: np.ndarray) -> np.ndarray:
            return np.where(entries >= 0, renumber[np.maximum(entries, 0)], -1)

        width, height = lib.size
        crops = np.zeros((len(used), height, width, 3), np.uint8)
        for slot, entry in enumerate(used.tolist()):
            crops[slot] = lib.crop(entry)
        scalars = {
            "width": self.width,
            "height": self.height,
            "fps": self.fps,
            "quality": self.quality,
            "library_scale": float(lib.scale),
            "library_size": [int(width), int(height)],
        }
        arrays = {
            "track_landmarks": np.asarray(self.track.landmarks, np.float32),
            "targets": self.targets,
            "src_index": self.src_index,
            "choice": remap(self._choice),
            "alpha": self._alpha,
            "ghost": remap(self._ghost),
            "ghost_weight": self._ghost_weight,
            "triangles": getattr(self, "_triangles", np.zeros((0, 3), np.int64)),
            "ring": getattr(self, "_ring", np.zeros((0, 2))),
            "library_landmarks": lib.landmarks[used],
            "library_shapes": lib.shapes[used],
            "library_crops": crops,
            "library_src": lib.src[used],
            "library_to_crop": lib.to_crop[used],
            **self.occluders.export(),
        }
        return scalars, arrays

    @classmethod
    def from_state(cls, scalars: dict, arrays: dict[str, np.ndarray]) -> MouthRenderer:
        """A prepared renderer from `export_state`: renders, never observes or prepares."""
        renderer = cls(scalars["width"], scalars["height"], scalars["fps"], scalars["quality"])
        landmarks = np.asarray(arrays["track_landmarks"], np.float32)  # may be mapped
        present = in_blocks(lambda block: np.isfinite(block).all(axis=(1, 2)), landmarks)
        renderer.track = FaceTrack(landmarks, present)
        renderer.targets = np.asarray(arrays["targets"], np.float32)
        renderer.src_index = np.asarray(arrays["src_index"], np.int64)
        renderer._choice = np.asarray(arrays["choice"], np.int64)
        renderer._alpha = np.asarray(arrays["alpha"], np.float32)
        renderer._ghost = np.asarray(arrays["ghost"], np.int64)
        renderer._ghost_weight = np.asarray(arrays["ghost_weight"], np.float32)
        renderer._triangles = np.asarray(arrays["triangles"], np.int64)
        renderer._ring = np.asarray(arrays["ring"], np.float64)
        lib = renderer.library
        lib.scale = float(scalars["library_scale"])
        lib.size = tuple(scalars["library_size"])
        lib.landmarks = np.asarray(arrays["library_landmarks"], np.float32)
        lib.shapes = np.asarray(arrays["library_shapes"], np.float32)
        lib._crops = np.asarray(arrays["library_crops"], np.uint8)
        lib.count = len(lib.landmarks)
        lib.src = np.asarray(arrays["library_src"], np.int64)
        lib.to_crop = np.asarray(arrays["library_to_crop"], np.float64)
        renderer.occluders = StillOccluders.imported(arrays)
        renderer._prepared = True
        return renderer


def reshape_mouth(
    points: np.ndarray, shape: np.ndarray, target: np.ndarray, iod: float
) -> np.ndarray:
    """Bend upright (crop-space) landmarks from `shape` to the `target` (open, jaw, width).

    Width scales the lips about the mouth centre; opening moves the lower lip down three times
    as far as the upper lip up (the jaw does most of the work), most at the middle, none at the
    corners; jaw moves the chin. Large extrapolations are clipped: past the library's range the
    nearest sample is bent, not invented.
    """
    out = points.copy()
    centre = (points[MOUTH_LEFT] + points[MOUTH_RIGHT]) / 2
    width_ratio = float(np.clip(target[2] / max(shape[2], 1e-3), *WIDTH_RATIO))
    lips = LIPS_OUTER + LIPS_INNER
    out[lips, 0] = centre[0] + (points[lips, 0] - centre[0]) * width_ratio
    skin = UPPER_SKIN + LOWER_SKIN
    out[skin, 0] = centre[0] + (points[skin, 0] - centre[0]) * (1 + (width_ratio - 1) * 0.5)

    half = max(abs(out[MOUTH_RIGHT, 0] - out[MOUTH_LEFT, 0]) / 2, 1.0)
    gap = float(np.clip(target[0] - shape[0], -0.4, 0.45)) * iod
    jaw = float(np.clip(target[1] - shape[1], -0.08, 0.15)) * iod

    def profile(index: list[int]) -> np.ndarray:
        return np.clip(1 - ((out[index, 0] - centre[0]) / half) ** 2, 0, 1)

    out[UPPER_INNER + UPPER_OUTER, 1] -= 0.25 * gap * profile(UPPER_INNER + UPPER_OUTER)
    out[UPPER_SKIN, 1] -= 0.08 * gap * profile(UPPER_SKIN)
    lower_drop = 0.75 * gap
    out[LOWER_INNER + LOWER_OUTER, 1] += lower_drop * profile(LOWER_INNER + LOWER_OUTER)
    # Skin between lower lip and chin: interpolate the lip's and the chin's drop by height, so
    # the two never cross (a fold) whatever combination of open and jaw is asked for.
    below = LOWER_SKIN + CHIN_POINTS
    lip_y, chin_y = points[LOWER_OUTER_MID, 1], points[CHIN, 1]
    f = np.clip((points[below, 1] - lip_y) / max(chin_y - lip_y, 1.0), 0, 1)
    lateral = (out[below, 0] - centre[0]) / half
    lip_reach = np.clip(1 - (lateral / 1.6) ** 2, 0, 1)
    chin_reach = np.clip(1 - 0.45 * (lateral / 1.2) ** 2, 0, 1)
    out[below, 1] += (1 - f) * lower_drop * lip_reach + f * jaw * chin_reach
    for upper, lower in INNER_PAIRS:  # lips never pass through each other
        out[lower, 1] = max(out[lower, 1], out[upper, 1])
    return out


def _shape_mask_hull(hull: np.ndarray, current: np.ndarray, iod: float) -> np.ndarray:
    """Pull the jaw-side points toward the mouth and push the chin points away from it, by
    MASK_PULL / MASK_PUSH eye-distances; `hull` is MASK_POINTS twice (target, then current)."""
    centre = current[[MOUTH_LEFT, MOUTH_RIGHT]].mean(axis=0).astype(np.float64)
    offsets = hull - centre
    unit = offsets / np.maximum(np.linalg.norm(offsets, axis=1, keepdims=True), 1e-6)
    amount = np.array([MASK_PUSH.get(k, 0.0) - MASK_PULL.get(k, 0.0) for k in MASK_POINTS] * 2)
    return hull + unit * amount[:, None] * iod


def _per_person(
    flags: Callable[..., np.ndarray], people: np.ndarray | None, *columns: np.ndarray
) -> np.ndarray:
    """`flags(*columns)` (bool per frame), computed over each person's frames on their own."""
    if people is None:
        return flags(*columns)
    out = np.zeros(len(columns[0]), bool)
    for person in np.unique(people):
        mine = people[: len(out)] == person
        out[mine] = flags(*(column[mine] for column in columns))
    return out


def _lip_colour(image: np.ndarray, outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    ring = polygon_mask(image.shape[:2], [outer], 0) - polygon_mask(image.shape[:2], [inner], 0)
    ring = np.clip(ring, 0, 1)
    if ring.sum() < 4:
        return np.array([150.0, 80.0, 80.0])
    return (image * ring[..., None]).reshape(-1, 3).sum(0) / ring.sum()


def _in_crop(
    polygon: np.ndarray, map_x: np.ndarray, map_y: np.ndarray, window: tuple[int, int, int, int]
) -> np.ndarray:
    """Bool mask, over the crop's `window` (x0, y0, x1, y1), of a work-pixel `polygon` taken
    into the crop through the warp's maps (its corners moved; the warp is near-affine)."""
    x0, y0, x1, y1 = window
    corners = np.clip(np.round(polygon).astype(int), 0, np.array(map_x.shape[::-1]) - 1)
    at = np.column_stack([map_x[corners[:, 1], corners[:, 0]], map_y[corners[:, 1], corners[:, 0]]])
    inside = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cv2.fillPoly(inside, [np.round(at - (x0, y0)).astype(np.int32)], 1)
    return inside > 0


def _shown(
    hidden: np.ndarray | None, shown: np.ndarray | None = None, weight: float = 1.0
) -> np.ndarray | None:
    """What may be drawn (1) or must stay as it is (0), given coverage `hidden` (times
    `weight`) on top of what `shown` already keeps; None: everything may be drawn."""
    if hidden is None:
        return shown
    visible = 1.0 - weight * np.clip(hidden, 0.0, 1.0)
    return visible if shown is None else shown * visible


def _crop_ring(size: tuple[int, int], per_side: int = 5) -> np.ndarray:
    """Points along the crop border: the warp is rigid there, so its edge never shows."""
    width, height = size
    xs = np.linspace(0, width - 1, per_side + 1)
    ys = np.linspace(0, height - 1, per_side + 1)
    top = np.stack([xs, np.zeros_like(xs)], 1)
    bottom = np.stack([xs, np.full_like(xs, height - 1)], 1)
    left = np.stack([np.zeros_like(ys[1:-1]), ys[1:-1]], 1)
    right = np.stack([np.full_like(ys[1:-1], width - 1), ys[1:-1]], 1)
    return np.vstack([top, bottom, left, right])


def _triangulation(lib: MouthLibrary) -> np.ndarray:
    """Fixed triangles over the control points, from a mean face with the mouth half open (so
    the inner-lip triangles span the gap instead of crossing the lips)."""
    mean = np.nanmedian(lib.landmarks, axis=0).astype(np.float64)
    iod = float(face_scale(mean))
    shape = np.array([0.0, 0.0, 1.0])
    opened = reshape_mouth(mean, shape, np.array([0.2, 0.05, 1.0]), iod)
    points = np.vstack([opened[CONTROL], _crop_ring(lib.size)])
    return Delaunay(points).simplices.astype(np.int64)


def _piecewise_affine(
    src: np.ndarray,
    dst: np.ndarray,
    triangles: np.ndarray,
    box: tuple[int, int],
    crop_to_box: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """remap() maps from dst (box pixels) to src (crop pixels), one affine per triangle.

    Pixels outside every triangle use the rigid crop-to-box similarity, inverted. A triangle
    the reshape turned over or squashed flat (a corner pulled onto the line of two cheek
    points) is left out: its affine fetches pixels from across its edge or from anywhere,
    and even a flat triangle is drawn as a line, a streak on the cheek; its neighbours,
    folded over its place, cover it.
    """
    height, width = box
    step = 2 if max(height, width) > 200 else 1
    gh, gw = (height + step - 1) // step + 1, (width + step - 1) // step + 1
    label = np.full((gh, gw), -1.0, np.float32)  # float: dilate() below needs it
    d = dst[triangles]  # (T, 3, 2)
    s = src[triangles]
    area, src_area = _signed_areas(d), _signed_areas(s)
    src_area = src_area * abs(np.linalg.det(crop_to_box[:, :2]))  # in box pixels
    kept = (area * src_area >= 0) & (np.abs(area) >= np.maximum(1e-3, FLAT * np.abs(src_area)))
    lo, hi = d.min(axis=1), d.max(axis=1)
    inside = (hi[:, 0] >= 0) & (hi[:, 1] >= 0) & (lo[:, 0] < width) & (lo[:, 1] < height)
    corners = np.round(d / step * 16).astype(np.int32)
    for k in np.flatnonzero(inside & kept).tolist():
        cv2.fillConvexPoly(label, corners[k], float(k), cv2.LINE_8, 4)
    # Rounding leaves one-pixel cracks between triangles: give them a neighbour's triangle (its
    # affine agrees along the shared edge, so the crack pixels are exact).
    cracks = label < 0
    label = np.where(cracks, cv2.dilate(label, np.ones((3, 3), np.uint8)), label)
    label = np.where(label < 0, len(triangles), label).astype(np.int32)
    coef = _triangle_affines(d, s, area)
    rigid = _invert(crop_to_box).T  # rows: coefficients of x, of y, constant
    coef = np.concatenate([coef, rigid[None]], axis=0)
    ys, xs = np.mgrid[0:gh, 0:gw].astype(np.float32) * step
    c = coef.astype(np.float32)[label]  # (gh, gw, 3, 2)
    map_x = xs * c[..., 0, 0] + ys * c[..., 1, 0] + c[..., 2, 0]
    map_y = xs * c[..., 0, 1] + ys * c[..., 1, 1] + c[..., 2, 1]
    if step > 1:
        size = ((gw - 1) * step + 1, (gh - 1) * step + 1)
        map_x = cv2.resize(map_x, size, interpolation=cv2.INTER_LINEAR)[:height, :width]
        map_y = cv2.resize(map_y, size, interpolation=cv2.INTER_LINEAR)[:height, :width]
    else:
        map_x, map_y = map_x[:height, :width], map_y[:height, :width]
    return np.ascontiguousarray(map_x), np.ascontiguousarray(map_y)


def _unfolded(
    dst: np.ndarray, src: np.ndarray, triangles: np.ndarray, rigid: np.ndarray
) -> np.ndarray:
    """`dst` with the skin around the lips pulled back toward where the sample has it (placed
    rigidly, `rigid`: MOVING's rows) wherever its triangles turn over or squash: skin
    pushed out with the lips' width across a fixed cheek point folds the warp, and a fold
    shows as a seam on the cheek. The lips themselves keep their target."""
    dst = dst.copy()
    src_area = _signed_areas(src[triangles])
    src_area = np.where(np.abs(src_area) < 1e-9, 1e-9, src_area)
    for _ in range(UNFOLD_STEPS):
        ratio = _signed_areas(dst[triangles]) / src_area
        bad = ratio < SQUASHED * np.median(ratio)
        rows = np.intersect1d(triangles[bad].ravel(), _SKIN_ROWS)
        if not len(rows):
            break
        dst[rows] = rigid[rows] + 0.5 * (dst[rows] - rigid[rows])
    return dst


def _signed_areas(corners: np.ndarray) -> np.ndarray:
    """Twice the signed area of each (3, 2) triangle; the sign is its orientation."""
    e1, e2 = corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]
    return e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]


def _triangle_affines(d: np.ndarray, s: np.ndarray, area: np.ndarray) -> np.ndarray:
    """(T, 3, 2) coefficients with [x y 1] @ coef = source point, for every triangle at once."""
    safe = np.where(np.abs(area) < 1e-3, 1.0, area)
    x, y = d[..., 0], d[..., 1]
    # Rows of the inverse of [[x0 y0 1], [x1 y1 1], [x2 y2 1]] (adjugate / determinant).
    inv = np.empty((len(d), 3, 3))
    inv[:, 0] = np.stack([y[:, 1] - y[:, 2], y[:, 2] - y[:, 0], y[:, 0] - y[:, 1]], 1)
    inv[:, 1] = np.stack([x[:, 2] - x[:, 1], x[:, 0] - x[:, 2], x[:, 1] - x[:, 0]], 1)
    inv[:, 2] = np.stack(
        [
            x[:, 1] * y[:, 2] - x[:, 2] * y[:, 1],
            x[:, 2] * y[:, 0] - x[:, 0] * y[:, 2],
            x[:, 0] * y[:, 1] - x[:, 1] * y[:, 0],
        ],
        1,
    )
    return np.einsum("tij,tjk->tik", inv / safe[:, None, None], s)


def _switch_fades(
    choice: np.ndarray,
    lib_src: np.ndarray,
    owner: np.ndarray | None = None,
    weights: tuple[float, ...] = SWITCH_FADE,
) -> tuple[np.ndarray, np.ndarray]:
    """Per frame, the entry to cross-fade from (-1: none) and its weight.

    After a jump between library sequences, the old sequence is continued (its next source
    frame if the library has it, else held) and faded out over len(weights) frames; never
    from one person's mouth to another's (`owner`: person per entry, see engine/identity.py).
    """
    ghost = np.full(len(choice), -1, np.int64)
    weight = np.zeros(len(choice), np.float32)
    by_src = {int(src): i for i, src in enumerate(lib_src)}
    stride = max(1, int(np.median(np.diff(lib_src)))) if len(lib_src) > 1 else 1
    for t in range(1, len(choice)):
        before, now = int(choice[t - 1]), int(choice[t])
        if before < 0 or now < 0:
            continue
        if 0 <= int(lib_src[now]) - int(lib_src[before]) <= 2 * stride:
            continue
        if owner is not None and owner[before] != owner[now]:
            continue
        old = before
        for k, w in enumerate(weights):
            if t + k >= len(choice) or choice[t + k] < 0 or w <= weight[t + k]:
                break
            if owner is not None and owner[choice[t + k]] != owner[old]:
                break  # the fade ran into another person's frames
            following = by_src.get(int(lib_src[old]) + stride, old)
            old = following if owner is None or owner[following] == owner[old] else old
            ghost[t + k], weight[t + k] = old, w
    return ghost, weight


def _fade(length: int, ramp: int, fade_in: bool, fade_out: bool) -> np.ndarray:
    """Alpha over a run: 1 inside, ramping at edges that border untouched frames."""
    position = np.arange(length, dtype=np.float32)
    alpha = np.ones(length, np.float32)
    if fade_in:
        alpha = np.minimum(alpha, (position + 1) / (ramp + 1))
    if fade_out:
        alpha = np.minimum(alpha, (length - position) / (ramp + 1))
    return alpha


def _allowed(
    usable: np.ndarray, owner: np.ndarray | None, person: np.ndarray | None
) -> Callable[[slice], np.ndarray]:
    """Which entries each frame may show, per slice of frames: (frames, entries) or
    (1, entries). Covered mouths never; another person's never."""
    if owner is None or person is None:
        return lambda part: usable[None, :]
    return lambda part: usable[None, :] & (owner[None, :] == person[part, None])


def _unary_costs(
    lib: MouthLibrary,
    targets: np.ndarray,
    poses: np.ndarray,
    usable: np.ndarray,
    shown: np.ndarray,
    entry_cost: np.ndarray | None = None,
) -> np.ndarray:
    """(frames, entries) cost of showing each library mouth at each frame; `usable`
    broadcasts against that shape; `entry_cost`: what each entry costs wherever it is shown
    (by default _thickness_cost)."""
    shape_err = (targets[:, None, :] - lib.shapes[None, :, :]) / SHAPE_SCALE
    # Opening closed lips by warping looks worse than closing open ones: penalise it double.
    short = np.maximum(targets[:, None, 0] - lib.shapes[None, :, 0], 0) / SHAPE_SCALE[0]
    # Lips warped shut from a parted sample keep a sliver of teeth or shadow that reads as open:
    # when the target is (nearly) closed, a sample that is open at all costs extra.
    shut = np.clip((CLOSED_OPEN - targets[:, None, 0]) / CLOSED_OPEN, 0, 1)
    parted = np.maximum(lib.shapes[None, :, 0] - targets[:, None, 0], 0) / CLOSED_SCALE
    pose_err = (poses[:, None, :] - lib.poses[None, :, :]) / POSE_SCALE
    reachable = np.clip(targets[:, None, 2], *(k * lib.shapes[None, :, 2] for k in WIDTH_RATIO))
    unmet = (targets[:, None, 2] - reachable) / UNMET_WIDTH_SCALE
    unary = (shape_err**2).sum(-1) + short**2 + np.nan_to_num((pose_err**2).sum(-1), nan=0)
    unary = unary + unmet**2
    entry_cost = _thickness_cost(lib) if entry_cost is None else entry_cost
    unary = unary + shut * parted**2 + entry_cost[None, :]
    unary = unary - OWN_BONUS * (lib.src[None, :] == shown[:, None])
    return np.where(usable, unary, 1e9)  # nor pasted from where they may not be


def _thickness_cost(lib: MouthLibrary, owner: np.ndarray | None = None) -> np.ndarray:
    """Per entry: how unusual its lip thickness (outer height minus inner gap) is for its
    person (`owner`: person per entry; None: one person).

    Pressed, pouted or mid-word lips are thick for their gap; warped to a closed target they
    still read as a half-open mouth to any observer. The person's typical lips are preferred.
    """
    thickness = lib.outer - lib.shapes[:, 0]
    cost = np.zeros(lib.count, np.float32)
    owner = np.zeros(lib.count, np.int64) if owner is None else owner
    for person in np.unique(owner):
        mine = (owner == person) & np.isfinite(thickness)
        if mine.any():
            typical = float(np.median(thickness[mine]))
            cost[mine] = ((thickness[mine] - typical) / THICKNESS_SCALE) ** 2
    return cost


def _viterbi(
    lib: MouthLibrary,
    targets: np.ndarray,
    poses: np.ndarray,
    allowed: Callable[[slice], np.ndarray],
    shown: np.ndarray,
    entry_cost: np.ndarray | None = None,
) -> np.ndarray:
    """Library entry per frame minimising shape/pose error plus switching between samples.

    Moving to the sample that follows the current one in the source video costs nothing (it is
    the person's real motion); holding a sample costs a little; jumping costs SWITCH_COST.
    """
    n, count, lib_src = len(targets), lib.count, lib.src
    k = min(CANDIDATES, count)
    cand = np.empty((n, k), np.int32)  # library entries (at most a few thousand)
    cost = np.empty((n, k), np.float32)
    for start in range(0, n, VITERBI_CHUNK):  # bounded memory: chunk x library, not T x library
        part = slice(start, min(start + VITERBI_CHUNK, n))
        unary = _unary_costs(
            lib, targets[part], poses[part], allowed(part), shown[part], entry_cost
        )
        if k < count:
            cand[part] = np.argpartition(unary, k - 1, axis=1)[:, :k]
        else:
            cand[part] = np.arange(count)[None, :]
        cost[part] = np.take_along_axis(unary, cand[part], axis=1)
    stride = max(1, int(np.median(np.diff(lib_src))) if count > 1 else 1)
    total = cost[0].copy()
    back = np.zeros((n, k), np.int8)  # candidate slots (k <= CANDIDATES): 8x less per frame
    for t in range(1, n):
        prev_src = lib_src[cand[t - 1]][:, None]
        next_src = lib_src[cand[t]][None, :]
        step = next_src - prev_src
        trans = np.full((k, k), SWITCH_COST, np.float32)
        trans[(step > 0) & (step <= 2 * stride)] = 0.0
        trans[step == 0] = HOLD_COST
        scores = total[:, None] + trans
        back[t] = np.argmin(scores, axis=0)
        total = scores[back[t], np.arange(k)] + cost[t]
    path = np.empty(n, np.int64)
    j = int(np.argmin(total))
    for t in range(n - 1, -1, -1):
        path[t] = cand[t, j]
        j = back[t, j]
    return path


__all__ = ["MouthRenderer", "reshape_mouth", "CROP_X", "CROP_Y"]
