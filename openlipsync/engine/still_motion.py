"""A photo becomes a talking video: natural blinks and subtle head motion.

A lip-synced still with a frozen face reads as a photo with a moving mouth. People blink every
2-6 s (about 150 ms, the lid falls faster than it rises) and their heads never stop moving:
slow sway plus small nods that follow the stress of their speech. The schedule is generated
once per video (seeded, so a re-run gives the same video); `apply_still_motion` then warps
each frame: eyelids by a thin-plate warp of the eye contour, the head by a rigid transform
that fades out towards the background so the frame edges never move.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np
from scipy.ndimage import gaussian_filter1d

from openlipsync.engine.facewarp import face_region
from openlipsync.engine.mouth import EYE_OUTER_LEFT, EYE_OUTER_RIGHT

# Upper lid point -> lower lid point facing it (MediaPipe eye contours), both eyes.
LID_PAIRS = [
    *((246, 7), (161, 163), (160, 144), (159, 145), (158, 153), (157, 154), (173, 155)),
    *((466, 249), (388, 390), (387, 373), (386, 374), (385, 380), (384, 381), (398, 382)),
]
BLINK_SECONDS = 0.15
BLINK_INTERVAL = (2.0, 6.0)
MAX_CLOSURE = 0.95
# Head motion bounds at amplitude 1: degrees, inter-ocular distances, relative scale.
MAX_ANGLE, MAX_SHIFT, MAX_SCALE = 1.5, 0.04, 0.015
HEAD_MARGIN = 0.6  # of the landmarks' box, on each side: the region the head's move warps
MAP_STEP = 4  # px of the coarse grid the head's move is computed on (_head_maps)
BLUR_DETAIL = 8.0  # grid steps per blur sigma where the head's weight is computed


@dataclass(frozen=True)
class HeadPose:
    """Small rigid motion of the head about its centre, relative to the source photo."""

    angle: float = 0.0  # degrees, positive = counter-clockwise in the image
    dx: float = 0.0  # inter-ocular distances
    dy: float = 0.0
    scale: float = 1.0


@dataclass(frozen=True)
class MotionFrame:
    closure: float  # 0 = eyes as in the photo, 1 = closed
    pose: HeadPose


@dataclass
class StillMotion:
    closure: np.ndarray  # float32 (N,) eyelid closure per frame
    poses: list[HeadPose]
    blink_frames: list[int]  # frame of each blink's full closure

    def __len__(self) -> int:
        return len(self.closure)

    def __getitem__(self, index: int) -> MotionFrame:
        return MotionFrame(float(self.closure[index]), self.poses[index])


def still_motion(
    frame_count: int, fps: float, seed: int = 0, speech_energy: np.ndarray | None = None
) -> StillMotion:
    """The blink and head-motion schedule of a video made from a still."""
    frame_count, fps = _check_timing(frame_count, fps)
    closure, peaks = _blinks(frame_count, fps, np.random.default_rng(seed))
    poses = head_poses(frame_count, fps, speech_energy, seed)
    return StillMotion(closure, poses, peaks)


def head_poses(
    frame_count: int,
    fps: float,
    speech_energy: np.ndarray | None = None,
    seed: int = 0,
    amplitude: float = 1.0,
) -> list[HeadPose]:
    """Smooth sway (band-limited noise under 0.5 Hz) plus nods that follow speech energy.

    Every component is bounded by MAX_* x amplitude, whatever the energy's scale.
    """
    frame_count, fps = _check_timing(frame_count, fps)
    if frame_count == 0:
        return []
    rng = np.random.default_rng(seed + 7919)
    sway = np.stack([_smooth_noise(rng, frame_count, fps) for _ in range(4)], axis=1)
    nod = np.zeros(frame_count)
    if speech_energy is not None:
        energy = np.nan_to_num(np.asarray(speech_energy, np.float64).ravel()[:frame_count])
        energy = np.pad(energy, (0, frame_count - len(energy)))
        if energy.max() > energy.min():
            energy = (energy - energy.min()) / (energy.max() - energy.min())
            nod = gaussian_filter1d(energy, sigma=max(1.0, 0.12 * fps))
            nod = nod - gaussian_filter1d(nod, sigma=max(1.0, 1.0 * fps))  # nods, not a lean
            nod = nod / max(float(np.abs(nod).max()), 1e-6)
    angle = (0.7 * sway[:, 0] + 0.3 * nod) * MAX_ANGLE * amplitude
    dx = sway[:, 1] * MAX_SHIFT * amplitude
    dy = (0.5 * sway[:, 2] + 0.5 * nod) * MAX_SHIFT * amplitude
    scale = 1.0 + (0.7 * sway[:, 3] + 0.3 * nod) * MAX_SCALE * amplitude
    return [HeadPose(*map(float, row)) for row in zip(angle, dx, dy, scale, strict=True)]


def apply_still_motion(
    frame: np.ndarray, landmarks: np.ndarray, motion_at_i: MotionFrame
) -> tuple[np.ndarray, np.ndarray]:
    """(warped frame, moved landmarks): blink first, then the head pose."""
    if np.shape(landmarks) != (478, 2) or not np.all(np.isfinite(landmarks)):
        raise ValueError("expected finite (478, 2) landmarks")
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 (H, W, 3) frame, got {frame.shape}")
    landmarks = np.asarray(landmarks, np.float32)
    frame, landmarks = blink(frame, landmarks, motion_at_i.closure, copy=False)
    return move_head(frame, landmarks, motion_at_i.pose)


def blink(
    frame: np.ndarray, landmarks: np.ndarray, closure: float, copy: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Slide each upper eyelid down over the eye by `closure` (0..1).

    The eyeball stays where it is and the lid skin between the crease and the lash line is
    stretched down over it, so a half-closed eye shows the lower half of the iris under the
    lashes, as a real one does. Pixels outside each eye's lid band are untouched. With open
    eyes the frame is returned as it is unless `copy` (move_head copies it anyway: a 12 MP
    photo's frame is 10 ms to copy).
    """
    moved = _blinked_landmarks(landmarks, closure)
    closure = float(np.clip(closure, 0.0, 1.0)) * MAX_CLOSURE
    if closure < 0.02:
        return frame.copy() if copy else frame, moved
    out = frame.copy()
    for pairs, corners in ((LID_PAIRS[:7], (33, 133)), (LID_PAIRS[7:], (362, 263))):
        _close_eye(frame, out, landmarks, pairs, corners, closure)
    return out, moved


def moved_landmarks(landmarks: np.ndarray, motion_at_i: MotionFrame) -> np.ndarray:
    """Where `apply_still_motion` puts the landmarks, without warping a frame.

    Lets the pipeline build the whole output-frame face track (for the mouth renderer's
    `prepare`) before the render pass warps the frames themselves.
    """
    if np.shape(landmarks) != (478, 2) or not np.all(np.isfinite(landmarks)):
        raise ValueError("expected finite (478, 2) landmarks")
    blinked = _blinked_landmarks(np.asarray(landmarks, np.float32), motion_at_i.closure)
    return _pose_matrix_apply(blinked, _head_matrix(blinked, motion_at_i.pose))


def _blinked_landmarks(landmarks: np.ndarray, closure: float) -> np.ndarray:
    closure = float(np.clip(closure, 0.0, 1.0)) * MAX_CLOSURE
    moved = landmarks.copy()
    if closure < 0.02:
        return moved
    upper = [u for u, _ in LID_PAIRS]
    moved[upper] += (landmarks[[lo for _, lo in LID_PAIRS]] - landmarks[upper]) * closure
    return moved


def _head_matrix(landmarks: np.ndarray, pose: HeadPose) -> np.ndarray:
    """Forward (2, 3) similarity of the head about its landmark centre."""
    scale_px = float(np.linalg.norm(landmarks[EYE_OUTER_LEFT] - landmarks[EYE_OUTER_RIGHT]))
    centre = landmarks.mean(axis=0).astype(np.float64)
    forward = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), pose.angle, pose.scale)
    forward[:, 2] += (pose.dx * scale_px, pose.dy * scale_px)
    return forward


def _pose_matrix_apply(landmarks: np.ndarray, forward: np.ndarray) -> np.ndarray:
    return (landmarks @ forward[:, :2].T + forward[:, 2]).astype(np.float32)


def _close_eye(
    frame: np.ndarray,
    out: np.ndarray,
    landmarks: np.ndarray,
    pairs: list[tuple[int, int]],
    corners: tuple[int, int],
    closure: float,
) -> None:
    a, b = landmarks[corners[0]].astype(np.float64), landmarks[corners[1]].astype(np.float64)
    width = float(np.hypot(*(b - a)))
    if width < 3:
        return
    ux = (b - a) / width
    uy = np.array([-ux[1], ux[0]])
    if uy[1] < 0:
        uy = -uy  # v grows downwards in the image
    local = lambda p: np.stack([(p - a) @ ux, (p - a) @ uy], axis=-1)  # noqa: E731
    up = local(landmarks[[u for u, _ in pairs]].astype(np.float64))
    lo = local(landmarks[[lo for _, lo in pairs]].astype(np.float64))
    knots_u = np.concatenate([[0.0], up[:, 0], [width]])
    order = np.argsort(knots_u)
    upper_v = np.concatenate([[0.0], up[:, 1], [0.0]])[order]
    lower_knots = np.concatenate([[0.0], lo[:, 0], [width]])
    lower_order = np.argsort(lower_knots)
    lower_v = np.concatenate([[0.0], lo[:, 1], [0.0]])[lower_order]
    knots_u, lower_knots = knots_u[order], lower_knots[lower_order]
    crease = 0.45 * width  # height of lid skin above the lash line that stretches
    pts = np.vstack([landmarks[list(corners)], landmarks[[p for pair in pairs for p in pair]]])
    x1, y1 = np.floor(pts.min(axis=0) - (4, crease + 4)).astype(int)
    x2, y2 = np.ceil(pts.max(axis=0) + 4).astype(int)
    height, img_w = frame.shape[:2]
    x1, y1, x2, y2 = max(x1, 0), max(y1, 0), min(x2, img_w), min(y2, height)
    if x2 - x1 < 3 or y2 - y1 < 3:
        return
    xs, ys = np.meshgrid(np.arange(x1, x2, dtype=np.float64), np.arange(y1, y2, dtype=np.float64))
    u = (xs - a[0]) * ux[0] + (ys - a[1]) * ux[1]
    v = (xs - a[0]) * uy[0] + (ys - a[1]) * uy[1]
    top = np.interp(u, knots_u, upper_v)
    bottom = np.interp(u, lower_knots, lower_v)
    gap = np.clip(bottom - top, 0.0, None)
    inside = (u > 0) & (u < width)
    lid = top + closure * gap  # new lash line
    start = top - crease
    band = inside & (v >= start) & (v <= lid) & (gap > 0)
    # [start, lid] shows what was in [start, top]: the lid skin stretched down.
    src_v = np.where(band, start + (v - start) * crease / np.maximum(lid - start, 1e-6), v)
    map_x = (a[0] + u * ux[0] + src_v * uy[0]).astype(np.float32)
    map_y = (a[1] + u * ux[1] + src_v * uy[1]).astype(np.float32)
    out[y1:y2, x1:x2] = cv2.remap(
        frame, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
    )


def move_head(
    frame: np.ndarray, landmarks: np.ndarray, pose: HeadPose
) -> tuple[np.ndarray, np.ndarray]:
    """Rigidly move the head region; the weight fades to 0 outside it so edges stay still."""
    forward = _head_matrix(landmarks, pose)
    moved = _pose_matrix_apply(landmarks, forward)
    if abs(pose.angle) < 1e-4 and abs(pose.scale - 1) < 1e-6 and pose.dx == pose.dy == 0:
        return frame.copy(), moved
    height, width = frame.shape[:2]
    x1, y1, x2, y2 = (int(v) for v in np.round(face_region(landmarks, HEAD_MARGIN)))
    x1, y1, x2, y2 = max(x1, 0), max(y1, 0), min(x2, width), min(y2, height)
    if x2 - x1 < 8 or y2 - y1 < 8:
        return frame.copy(), landmarks.copy()
    hull = cv2.convexHull(np.round(landmarks).astype(np.int32)).reshape(-1, 2)
    inverse = cv2.invertAffineTransform(forward)
    map_x, map_y = _head_maps(inverse, hull.tobytes(), (x1, y1, x2, y2))
    out = frame.copy()
    out[y1:y2, x1:x2] = cv2.remap(
        frame, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
    )
    return out, moved


def _head_maps(
    inverse: np.ndarray, hull_bytes: bytes, box: tuple[int, int, int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """cv2.remap's maps over `box`: x + weight * (inverse(x) - x).

    The displacement is that of an affine map faded by a weight blurred over a fifth of a
    face: smooth enough to compute on a grid MAP_STEP times coarser and let cv2.resize
    enlarge (the weight is 0 for MAP_STEP px inside the box's edges, so they stay exactly
    still). At the largest moves (30 px on a 12 MP photo) it stays within 0.06 px of the full
    computation on the face, 0.2 px where the fading starts; that took 40 ms of each frame of
    such a photo, this 9."""
    x1, y1, x2, y2 = box
    coarse, cols, rows = _coarse_weight(hull_bytes, box)
    field_x = (inverse[0, 0] - 1) * cols[None, :] + (inverse[0, 1] * rows + inverse[0, 2])[:, None]
    field_y = inverse[1, 0] * cols[None, :] + ((inverse[1, 1] - 1) * rows + inverse[1, 2])[:, None]
    size = (x2 - x1, y2 - y1)
    map_x = cv2.resize((coarse * field_x).astype(np.float32), size, interpolation=cv2.INTER_LINEAR)
    map_y = cv2.resize((coarse * field_y).astype(np.float32), size, interpolation=cv2.INTER_LINEAR)
    map_x += np.arange(x1, x2, dtype=np.float32)[None, :]
    map_y += np.arange(y1, y2, dtype=np.float32)[:, None]
    return map_x, map_y


@functools.lru_cache(maxsize=2)
def _coarse_weight(
    hull_bytes: bytes, box: tuple[int, int, int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(the head's weight on the coarse grid of _head_maps, the grid's columns and rows in
    frame pixels, where cv2.resize takes its samples to lie)."""
    x1, y1, x2, y2 = box
    width, height = x2 - x1, y2 - y1
    columns, lines = max(2, -(-width // MAP_STEP)), max(2, -(-height // MAP_STEP))
    across = (np.arange(columns) + 0.5) * (width / columns) - 0.5
    down = (np.arange(lines) + 0.5) * (height / lines) - 0.5
    pick_x = np.clip(np.round(across), 0, width - 1).astype(int)
    pick_y = np.clip(np.round(down), 0, height - 1).astype(int)
    coarse = _head_weight(hull_bytes, box)[np.ix_(pick_y, pick_x)]
    return coarse.astype(np.float64), x1 + across, y1 + down


@functools.lru_cache(maxsize=2)
def _head_weight(hull_bytes: bytes, box: tuple[int, int, int, int]) -> np.ndarray:
    """1 over the head (landmark hull grown upwards for hair), fading out over half a face.

    Cached by the hull (int32 points) and box: a photo's face is the same in every frame
    (a blink moves only points inside the hull), and this took 1.5 ms of each frame's 5."""
    x1, y1, x2, y2 = box
    hull = np.frombuffer(hull_bytes, np.int32).reshape(-1, 2).astype(np.float64)
    centre = hull.mean(axis=0)
    grown = centre + (hull - centre) * 1.25
    grown[:, 1] -= np.clip(centre[1] - grown[:, 1], 0, None) * 0.25  # more room over the brow
    mask = np.zeros((y2 - y1, x2 - x1), np.float32)
    cv2.fillPoly(mask, [np.round(grown - (x1, y1)).astype(np.int32)], 1.0)
    face_w = float(hull[:, 0].max() - hull[:, 0].min())
    weight = _blurred(mask, max(2.0, 0.2 * face_w))
    # Taper to exactly 0 at the region's edges (and so at the frame's, where they meet it);
    # clipped along each axis first (np.clip of the whole region took 3 ms of a 720p frame).
    reach = max(0.1 * face_w, 2.0)
    rows, cols = np.arange(y2 - y1, dtype=np.float32), np.arange(x2 - x1, dtype=np.float32)
    # 0 for MAP_STEP px inside the edges: _head_maps' coarse grid then holds them still
    down = np.clip((np.minimum(rows, rows[::-1]) - MAP_STEP) / reach, 0.0, 1.0)
    across = np.clip((np.minimum(cols, cols[::-1]) - MAP_STEP) / reach, 0.0, 1.0)
    weight *= np.minimum(down[:, None], across[None, :])
    weight.flags.writeable = False  # shared by the cache
    return weight


def _blurred(mask: np.ndarray, sigma: float) -> np.ndarray:
    """`mask` under a Gaussian blur of `sigma` px, computed on a grid `sigma / BLUR_DETAIL`
    times coarser: what is left after so wide a blur varies too slowly for the grid to show
    (< 0.015 of the weight), and a full-size blur of a face's width took 34 ms a frame of a
    1 MP photo, most of a still's render."""
    step = max(1, int(sigma / BLUR_DETAIL))
    if step == 1:
        return cv2.GaussianBlur(mask, (0, 0), sigma)
    # Whole steps (reflected past the edge, as the blur itself does): a whole-step INTER_AREA
    # is OpenCV's fast path, 6x cheaper than a fractional one here.
    height, width = mask.shape
    rows, cols = -(-height // step), -(-width // step)
    padded = cv2.copyMakeBorder(
        mask, 0, rows * step - height, 0, cols * step - width, cv2.BORDER_REFLECT_101
    )
    small = cv2.resize(padded, (cols, rows), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), sigma / step)
    fine = cv2.resize(small, (cols * step, rows * step), interpolation=cv2.INTER_LINEAR)
    return fine[:height, :width]


def _blinks(frame_count: int, fps: float, rng: np.random.Generator) -> tuple[np.ndarray, list[int]]:
    """Closure per frame; the lid falls in ~40% of the blink and rises in ~60%."""
    closure = np.zeros(frame_count, np.float32)
    peaks: list[int] = []
    t = rng.uniform(0.8, 2.5)
    duration = frame_count / fps
    fall, rise = 0.4 * BLINK_SECONDS, 0.6 * BLINK_SECONDS
    while t < duration - BLINK_SECONDS:
        peak = int(round(t * fps))
        peaks.append(peak)
        times = (np.arange(frame_count) - peak) / fps
        shape = np.where(times < 0, 1 + times / fall, 1 - times / rise)
        closure = np.maximum(closure, np.clip(shape, 0, 1).astype(np.float32))
        t += rng.uniform(*BLINK_INTERVAL)
    return closure, peaks


def _smooth_noise(rng: np.random.Generator, frame_count: int, fps: float) -> np.ndarray:
    """Band-limited noise reaching +-1: a few slow sinusoids, random frequencies and phases.

    Scaled to its own peak so that even a 3 s clip uses the full (small) range of motion.
    """
    t = np.arange(frame_count) / fps
    out = np.zeros(frame_count)
    for _ in range(3):
        freq = rng.uniform(0.15, 0.5)
        out += rng.uniform(0.5, 1.0) * np.sin(2 * np.pi * freq * t + rng.uniform(0, 2 * np.pi))
    return out / max(float(np.abs(out).max()), 1e-6)


def _check_timing(frame_count: int, fps: float) -> tuple[int, float]:
    if not isinstance(frame_count, int | np.integer) or frame_count < 0:
        raise ValueError(f"frame_count must be a non-negative integer, got {frame_count!r}")
    if frame_count > 10_000_000:
        raise ValueError(f"frame_count {frame_count} is too large")
    if not np.isfinite(fps) or not 0 < fps <= 240:
        raise ValueError(f"fps must be in (0, 240], got {fps}")
    return int(frame_count), float(fps)
