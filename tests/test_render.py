"""Mouth rendering on real media: follows the targets, touches only the lower face, fallbacks."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from conftest import REPO, media_path

from openlipsync.engine.library import MouthLibrary
from openlipsync.engine.mouth import JAW_LINE, LIPS_INNER, face_scale, mouth_shape
from openlipsync.engine.render import MouthRenderer
from openlipsync.engine.tracking import FaceTrack, smooth_track, track_video
from openlipsync.media.picture import YuvPicture

# Around the nose base: the lower face the renderer may change starts here.
NOSE_BASE = [98, 327, 2, 205, 425, 50, 280]


def read_video(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def driven_targets(person: np.ndarray, driver: np.ndarray) -> np.ndarray:
    """The driver clip's real mouth-shape curve, mapped onto this person's 5..95 % range."""
    lo_d, hi_d = np.percentile(driver, 5, axis=0), np.percentile(driver, 95, axis=0)
    lo_p, hi_p = np.percentile(person, 5, axis=0), np.percentile(person, 95, axis=0)
    mapped = lo_p + (driver - lo_d) / np.maximum(hi_d - lo_d, 1e-6) * (hi_p - lo_p)
    mapped[:, 0] = np.maximum(mapped[:, 0], 0)
    return mapped.astype(np.float32)


def render_all(
    frames: list[np.ndarray],
    raw: FaceTrack,
    targets: np.ndarray,
    src_index: np.ndarray,
    active: np.ndarray | None = None,
    quality: str = "standard",
) -> list[np.ndarray]:
    height, width = frames[0].shape[:2]
    renderer = MouthRenderer(width, height, 25.0, quality=quality)
    for i, frame in enumerate(frames):
        renderer.observe(i, frame, raw.landmarks[i] if raw.present[i] else None)
    active = np.ones(len(targets), bool) if active is None else active
    renderer.prepare(smooth_track(raw, 25.0), targets, src_index, active)
    outputs = [renderer.render(t, frames[s]) for t, s in enumerate(src_index)]
    renderer.close()
    return outputs


@dataclass
class Driven:
    frames: list[np.ndarray]
    track: FaceTrack  # smoothed source track
    targets: np.ndarray
    outputs: list[np.ndarray]


@pytest.fixture(scope="module")
def driven() -> Driven:
    """grid_bbaf2n's face driven by grid_swiz3n's real mouth shapes."""
    frames = read_video(media_path("video/grid_bbaf2n.mpg"))
    driver = mouth_shape(track_video(read_video(media_path("video/grid_swiz3n.mpg"))).landmarks)
    raw = track_video(frames)
    track = smooth_track(raw, 25.0)
    n = min(len(frames), len(driver))
    targets = driven_targets(mouth_shape(track.landmarks), driver[:n])
    outputs = render_all(frames[:n], raw, targets, np.arange(n))
    return Driven(frames[:n], track, targets, outputs)


def test_output_has_frame_shape_and_dtype(driven: Driven) -> None:
    for source, output in zip(driven.frames, driven.outputs, strict=True):
        assert output.shape == source.shape and output.dtype == np.uint8


def test_rendered_opening_follows_targets(driven: Driven) -> None:
    measured = mouth_shape(track_video(driven.outputs).landmarks)[:, 0]
    assert np.isfinite(measured).all()
    target = driven.targets[:, 0]
    assert np.corrcoef(measured, target)[0, 1] > 0.8
    # The source's own mouth no longer explains the output.
    source_open = mouth_shape(driven.track.landmarks)[:, 0]
    assert np.corrcoef(measured, target)[0, 1] > np.corrcoef(measured, source_open)[0, 1] + 0.2


def test_opening_follows_targets_for_an_independent_landmarker(driven: Driven) -> None:
    """dlib shares nothing with MediaPipe: the new mouth must fool a different model too."""
    pytest.importorskip("dlib")
    spec = importlib.util.spec_from_file_location("dlib_lm", REPO / "bench" / "dlib_landmarks.py")
    dlib_lm = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(dlib_lm)
    points = dlib_lm.measure_frames(driven.outputs)
    measured = dlib_lm.outer_lip_opening(points)
    ok = np.isfinite(measured)
    assert ok.mean() > 0.9
    assert np.corrcoef(measured[ok], driven.targets[ok, 0])[0, 1] > 0.7


def lower_face_mask(landmarks: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The region the renderer may touch: nose base down past the chin, generously dilated."""
    iod = float(face_scale(landmarks))
    points = landmarks[JAW_LINE + NOSE_BASE].astype(np.int32)
    mask = np.zeros(shape, np.uint8)
    cv2.fillConvexPoly(mask, cv2.convexHull(points), 1)
    radius = int(0.25 * iod)
    return cv2.dilate(mask, np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)).astype(bool)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def test_only_the_lower_face_changes(driven: Driven) -> None:
    changed = 0
    for i, (source, output) in enumerate(zip(driven.frames, driven.outputs, strict=True)):
        inside = lower_face_mask(driven.track.landmarks[i], source.shape[:2])
        assert psnr(source[~inside], output[~inside]) >= 40.0
        changed += psnr(source[inside], output[inside]) < 40.0
    assert changed > len(driven.frames) // 2  # and the lower face did change


def test_no_flicker_between_frames(driven: Driven) -> None:
    """Pops between library samples show as frame-to-frame acceleration of the lower face: it
    must stay at the level of the source's own (camera noise, real motion)."""
    x0, y0 = np.nanmin(driven.track.landmarks[:, JAW_LINE], axis=(0, 1)).astype(int)
    x1, y1 = np.nanmax(driven.track.landmarks[:, JAW_LINE], axis=(0, 1)).astype(int)

    def roughness(frames: list[np.ndarray]) -> float:
        stack = np.stack([f[y0:y1, x0:x1].astype(np.float32) for f in frames])
        return float(np.abs(stack[2:] - 2 * stack[1:-1] + stack[:-2]).mean())

    assert roughness(driven.outputs) < 1.25 * roughness(driven.frames)


def test_frames_without_face_or_lipsync_pass_through(driven: Driven) -> None:
    frames = driven.frames[:20]
    raw = track_video(frames)
    blank = np.zeros_like(frames[0])
    frames = frames[:8] + [blank, blank] + frames[10:]
    raw.landmarks[8:10] = np.nan
    raw.present[8:10] = False
    active = np.ones(20, bool)
    active[15:] = False
    outputs = render_all(frames, raw, driven.targets[:20] + 0.08, np.arange(20), active)
    assert np.array_equal(outputs[8], blank) and np.array_equal(outputs[9], blank)
    for i in range(15, 20):
        assert np.array_equal(outputs[i], frames[i])

    # Cross-fades: the frame next to a lost run changes less than the middle of a run.
    def change(i: int) -> float:
        return float(np.abs(outputs[i].astype(int) - frames[i]).mean())

    assert change(7) < change(4) and change(10) < change(12)
    assert change(14) < change(12)


def closed_still() -> np.ndarray:
    frames = read_video(media_path("video/grid_bbaf2n.mpg"))
    opening = mouth_shape(track_video(frames).landmarks)[:, 0]
    return frames[int(np.argmin(opening))]


def test_still_with_closed_mouth_opens_onto_teeth_not_a_hole() -> None:
    still = closed_still()
    raw = track_video([still])
    shape = mouth_shape(raw.landmarks)[0]
    targets = np.tile([[0.22, shape[1] + 0.06, shape[2]]], (6, 1)).astype(np.float32)
    outputs = render_all([still], raw, targets, np.zeros(6, np.int64))
    output = outputs[-1]
    measured = mouth_shape(track_video([output]).landmarks)[0]
    assert measured[0] > 0.15
    landmarks = raw.landmarks[0].copy()
    inner = track_video([output]).landmarks[0][LIPS_INNER].astype(np.int32)
    mask = np.zeros(output.shape[:2], np.uint8)
    cv2.fillPoly(mask, [inner], 1)
    mask = mask.astype(bool)
    assert mask.sum() > 50
    luminance = output.mean(axis=2)[mask]
    skin = output[int(landmarks[205, 1]), int(landmarks[205, 0])].mean()
    assert luminance.mean() > 45, "the open mouth is a black hole"
    assert (luminance > 0.8 * skin).sum() >= 10, "no teeth visible"
    assert (luminance < 0.4 * skin).sum() >= 10, "no dark mouth cavity"


def test_photo_with_open_smile_renders() -> None:
    image = cv2.cvtColor(cv2.imread(str(media_path("photo/obama.jpg"))), cv2.COLOR_BGR2RGB)
    raw = track_video([image])
    assert raw.present[0]
    shape = mouth_shape(raw.landmarks)[0]
    targets = np.array([[0.0, shape[1] - 0.03, shape[2]], [0.25, shape[1] + 0.05, shape[2]]])
    outputs = render_all(
        [image], raw, np.repeat(targets, 4, 0).astype(np.float32), np.zeros(8, int)
    )
    measured = mouth_shape(track_video(outputs[3:4] + outputs[7:8]).landmarks)[:, 0]
    assert measured[1] > measured[0] + 0.12


def test_library_memory_is_bounded(driven: Driven) -> None:
    library = MouthLibrary("fast", capacity=8)
    raw = track_video(driven.frames[:40])
    for i, frame in enumerate(driven.frames[:40]):
        library.add(i, frame, raw.landmarks[i])
    assert library.count <= 8 and library.stride >= 4
    library.finalize(smooth_track(raw, 25.0).landmarks)
    assert library.src.min() <= 4 and library.src.max() >= 32  # still spans the whole clip
    library.close()


def test_renderer_rejects_bad_input(driven: Driven) -> None:
    with pytest.raises(ValueError, match="quality"):
        MouthRenderer(360, 288, 25.0, quality="ultra")
    with pytest.raises(ValueError, match="size"):
        MouthRenderer(0, 288, 25.0)
    renderer = MouthRenderer(360, 288, 25.0)
    with pytest.raises(RuntimeError, match="prepare"):
        renderer.render(0, driven.frames[0])
    track = driven.track
    with pytest.raises(ValueError, match="one row"):
        renderer.prepare(track, driven.targets[:5], np.arange(4), np.ones(5, bool))
    with pytest.raises(ValueError, match="outside"):
        renderer.prepare(track, driven.targets[:2], np.array([0, 999]), np.ones(2, bool))
    # No library (no face was ever observed): every frame passes through.
    renderer.prepare(track, driven.targets[:3], np.arange(3), np.ones(3, bool))
    assert renderer.render(0, driven.frames[0]) is driven.frames[0]
    assert renderer.render(99, driven.frames[0]) is driven.frames[0]
    renderer.close()


def test_bad_frames_and_hostile_targets(driven: Driven) -> None:
    renderer = MouthRenderer(360, 288, 25.0)
    with pytest.raises(ValueError, match="RGB uint8"):
        renderer.observe(0, np.zeros((10, 10), np.uint8), None)
    with pytest.raises(ValueError, match="landmarks"):
        renderer.observe(0, driven.frames[0], np.zeros((68, 2), np.float32))
    raw = track_video(driven.frames[:6])
    for i, frame in enumerate(driven.frames[:6]):
        renderer.observe(i, frame, raw.landmarks[i])
    targets = np.array(
        [[np.nan, 0.8, 0.5], [5.0, 9.0, 9.0], [-3.0, -2.0, 0.0], [0.1, 0.8, 0.5]] * 2, np.float32
    )[:6]
    renderer.prepare(smooth_track(raw, 25.0), targets, np.arange(6), np.ones(6, bool))
    assert np.array_equal(renderer.render(0, driven.frames[0]), driven.frames[0])  # NaN target
    for i in range(1, 6):
        out = renderer.render(i, driven.frames[i])
        assert out.shape == driven.frames[i].shape and out.dtype == np.uint8
        inside = lower_face_mask(driven.track.landmarks[i], out.shape[:2])
        assert psnr(driven.frames[i][~inside], out[~inside]) >= 40.0
    with pytest.raises(ValueError, match="RGB uint8"):
        renderer.render(1, driven.frames[1].astype(np.float32))
    renderer.close()


def test_small_face_in_a_large_frame(driven: Driven) -> None:
    """A distant speaker: the face is ~30 px between the eyes in a 1280x720 frame."""
    small = [
        cv2.resize(f, None, fx=0.45, fy=0.45, interpolation=cv2.INTER_AREA)
        for f in driven.frames[:25]
    ]
    frames = [cv2.copyMakeBorder(f, 230, 360, 500, 618, cv2.BORDER_REPLICATE) for f in small]
    raw = track_video(frames)
    assert raw.present.all()
    assert 20 < float(face_scale(raw.landmarks[0])) < 45
    outputs = render_all(frames, raw, driven.targets[:25], np.arange(25))
    measured = mouth_shape(track_video(outputs).landmarks)[:, 0]
    assert np.corrcoef(measured, driven.targets[:25, 0])[0, 1] > 0.6


def test_long_timeline_plans_quickly(driven: Driven) -> None:
    """An hour-long audio over a 3 s clip (looped) plans in bounded time and memory."""
    import time

    raw = track_video(driven.frames)
    renderer = MouthRenderer(360, 288, 25.0, quality="fast")
    for i, frame in enumerate(driven.frames):
        renderer.observe(i, frame, raw.landmarks[i])
    n = 25 * 600  # ten minutes of output
    targets = np.tile(driven.targets, (n // len(driven.targets) + 1, 1))[:n]
    src_index = np.arange(n) % len(driven.frames)
    began = time.perf_counter()
    renderer.prepare(smooth_track(raw, 25.0), targets, src_index, np.ones(n, bool))
    assert time.perf_counter() - began < 20
    out = renderer.render(n - 1, driven.frames[src_index[-1]])
    assert out.shape == driven.frames[0].shape
    renderer.close()


def test_closed_targets_are_not_warped_from_parted_samples(driven: Driven) -> None:
    """Lips warped shut from a parted sample keep a sliver that reads as open (grid_bbaf2n at
    1.04 s and 1.36 s): when the target is closed and the library has closed mouths, they win."""
    from openlipsync.engine.render import _allowed, _viterbi

    raw = track_video(driven.frames)
    renderer = MouthRenderer(360, 288, 25.0)
    for i, frame in enumerate(driven.frames):
        renderer.observe(i, frame, raw.landmarks[i])
    track = smooth_track(raw, 25.0)
    renderer.library.finalize(track.landmarks)
    lib = renderer.library
    closed = lib.shapes[:, 0] < 0.01
    assert closed.any() and (lib.shapes[:, 0] > 0.03).any()
    n = len(driven.frames)
    targets = np.tile(lib.shapes[closed].mean(axis=0), (n, 1)).astype(np.float32)
    shown = np.arange(n)
    poses = lib.poses[np.searchsorted(lib.src, shown).clip(0, lib.count - 1)]
    path = _viterbi(lib, targets, poses, _allowed(np.ones(lib.count, bool), None, None), shown)
    chosen = lib.shapes[path, 0]
    assert chosen.max() < 0.025 and chosen.mean() < 0.01, chosen
    renderer.close()


def test_lip_contrast_does_not_depend_on_resolution(driven: Driven) -> None:
    """The contrast is measured on a reduced patch for speed; a 4x upscaled frame must agree."""
    from openlipsync.engine.library import lip_contrast

    frame, landmarks = driven.frames[5], driven.track.landmarks[5]
    big = cv2.resize(frame, None, fx=4, fy=4, interpolation=cv2.INTER_CUBIC)
    small, large = lip_contrast(frame, landmarks), lip_contrast(big, landmarks * 4)
    for small_value, big_value in zip(small[:2], large[:2], strict=True):  # redness, darkness
        assert small_value > 2
        assert abs(big_value - small_value) < 0.25 * small_value
    assert abs(large.teeth - small.teeth) < 0.05


def test_large_face_renders_at_capped_resolution_and_follows_targets(driven: Driven) -> None:
    """A close-up (eye distance far above the library's scale) is warped at about the
    library's resolution and upscaled once: the opening must still follow the targets, and
    nothing above the lower face may change."""
    big = [
        cv2.resize(f, None, fx=3, fy=3, interpolation=cv2.INTER_CUBIC) for f in driven.frames[:25]
    ]
    raw = track_video(big)
    assert raw.present.all()
    assert float(face_scale(raw.landmarks[0])) > 1.3 * 140  # past the standard work scale
    outputs = render_all(big, raw, driven.targets[:25], np.arange(25))
    measured = mouth_shape(track_video(outputs).landmarks)[:, 0]
    assert np.corrcoef(measured, driven.targets[:25, 0])[0, 1] > 0.6
    track = smooth_track(raw, 25.0)
    for i in (0, 12, 24):
        inside = lower_face_mask(track.landmarks[i], big[i].shape[:2])
        assert psnr(big[i][~inside], outputs[i][~inside]) >= 40.0


def test_unusually_thick_lips_cost_more() -> None:
    """Pressed or pouted lips (thick for their gap) read as open: they are picked last."""
    from types import SimpleNamespace

    from openlipsync.engine.render import _thickness_cost

    shapes = np.array([[0.0, 0.9, 0.8], [0.1, 0.95, 0.8], [0.0, 0.9, 0.8], [0.0, 0.9, 0.7]])
    outer = np.array([0.20, 0.30, 0.27, np.nan])
    lib = SimpleNamespace(shapes=shapes.astype(np.float32), outer=outer, count=4)
    cost = _thickness_cost(lib)
    assert cost[2] > 5 * max(cost[0], cost[1]) and cost[3] == 0
    assert np.isfinite(cost).all()


def test_a_grin_is_not_narrowed_into_a_speaking_mouth() -> None:
    """The measured shapes of pyfeat_single_face's closed mouth and grin: a neutral-width open
    target picks the closed mouth (opened over a painted interior), since the warp narrows a
    grin by 15 % at most and a grin on a neutral face flashes a smile on every syllable; a
    grin-width target (a smiling frame, see motion.held_expression) picks the grin."""
    from types import SimpleNamespace

    from openlipsync.engine.render import _unary_costs

    shapes = np.array([[0.001, 0.754, 0.50], [0.16, 0.80, 0.785]], np.float32)  # closed, grin
    lib = SimpleNamespace(
        shapes=shapes,
        outer=np.array([0.2, 0.36], np.float32),
        count=2,
        poses=np.zeros((2, 2), np.float32),
        src=np.array([0, 1]),
    )
    targets = np.array([[0.13, 0.78, 0.50], [0.13, 0.78, 0.72]], np.float32)
    cost = _unary_costs(lib, targets, np.zeros((2, 2), np.float32), np.ones(2, bool), -np.ones(2))
    assert cost[0, 0] < cost[0, 1] and cost[1, 1] < cost[1, 0]


def test_patches_of_4_2_0_pictures_are_the_rendered_frames(driven: Driven) -> None:
    """render_patch reads only the mouth's box of a picture: on the decoder's planes it draws
    what render draws on the whole converted frame, and the patch is all that changes."""
    pictures = []
    for frame in driven.frames:
        i420 = cv2.cvtColor(frame, cv2.COLOR_RGB2YUV_I420)
        height, width = frame.shape[:2]
        chroma = i420[height:].reshape(2, height // 2, width // 2)
        pictures.append(YuvPicture(i420[:height], chroma[0], chroma[1]))
    rgb = [picture.fresh_rgb() for picture in pictures]
    renderer = MouthRenderer(rgb[0].shape[1], rgb[0].shape[0], 25.0)
    for i, frame in enumerate(rgb):
        renderer.observe(i, frame, driven.track.landmarks[i] if driven.track.present[i] else None)
    n = len(rgb)
    renderer.prepare(driven.track, driven.targets, np.arange(n), np.ones(n, bool))
    patched = 0
    for i, (frame, picture) in enumerate(zip(rgb, pictures, strict=True)):
        whole = renderer.render(i, frame)
        patch = renderer.render_patch(i, picture)
        if patch is None:
            assert whole is frame
            continue
        patched += 1
        assert np.array_equal(patch.onto(frame), whole), i
        x0, y0, x1, y1 = patch.box
        outside = whole.copy()
        outside[y0:y1, x0:x1] = frame[y0:y1, x0:x1]
        assert np.array_equal(outside, frame)
    assert patched > n * 0.8
    renderer.close()


def _grain_below_the_lip(frames: list[np.ndarray], track: FaceTrack) -> float:
    """Median over frames of the high-pass luma's robust std on the skin between lower lip
    (landmark 17) and chin (152): inside the pasted region, outside the lips."""
    values = []
    for frame, points in zip(frames, track.landmarks, strict=False):
        centre = (points[17] + points[152]) / 2
        half = max(3, int(0.12 * face_scale(points)))
        x, y = centre.astype(int)
        grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY).astype(np.float32)
        detail = (grey - cv2.GaussianBlur(grey, (0, 0), 1.0))[y - half : y + half][
            :, x - half : x + half
        ]
        values.append(1.4826 * np.median(np.abs(detail - np.median(detail))))
    return float(np.median(values))


def test_grainy_footage_keeps_its_grain_where_the_mouth_is_pasted(driven: Driven) -> None:
    """Resampling smooths the library's grain away; a clean oval on a noisy picture shows."""
    rng = np.random.default_rng(7)
    noisy = [
        np.clip(frame + rng.normal(0, 6, frame.shape[:2])[..., None], 0, 255).astype(np.uint8)
        for frame in driven.frames
    ]
    raw = track_video(noisy)
    count = len(driven.targets)
    outputs = render_all(noisy, raw, driven.targets, np.arange(count))
    track = smooth_track(raw, 25.0)
    before, after = _grain_below_the_lip(noisy, track), _grain_below_the_lip(outputs, track)
    assert before > 4
    assert 0.8 * before < after < 1.25 * before
    # Clean footage gets next to none.
    clean = _grain_below_the_lip(driven.frames, driven.track)
    assert _grain_below_the_lip(driven.outputs, driven.track) < max(1.25 * clean, clean + 0.5)


@pytest.mark.parametrize("inward", [0.01, 0.3], ids=["flat", "nearly-flat"])
def test_a_warp_triangle_squashed_flat_or_turned_over_fetches_nothing_from_afar(
    inward: float,
) -> None:
    """A mouth corner pulled onto the line of two cheek points squashes the triangle between
    them: its affine must not fetch pixels from outside the sample (a streak on the cheek)."""
    from scipy.spatial import Delaunay

    from openlipsync.engine.render import _piecewise_affine

    src = np.array([[2, 2], [38, 10], [30, 38], [5, 35], [19, 21]], np.float64)
    triangles = Delaunay(src).simplices.astype(np.int64)
    b, c = src[1], src[2]
    normal = np.array([-(c - b)[1], (c - b)[0]]) / np.linalg.norm(c - b)  # towards the inside
    dst = src.copy()
    dst[4] = (b + c) / 2 + inward * normal
    identity = np.array([[1.0, 0, 0], [0, 1.0, 0]])
    map_x, map_y = _piecewise_affine(src, dst, triangles, (41, 41), identity)
    assert map_x.min() > -2 and map_x.max() < 42 and map_y.min() > -2 and map_y.max() < 42


def test_skin_pushed_across_a_cheek_point_is_pulled_back_and_the_lips_stay() -> None:
    """Skin beside the mouth pushed past a fixed cheek point folds the warp (a seam on the
    cheek): _unfolded pulls the skin back until no triangle is turned over; the lips keep
    their target."""
    from scipy.spatial import Delaunay

    from openlipsync.engine.mouth import LIPS_OUTER
    from openlipsync.engine.render import (
        CONTROL,
        LOWER_SKIN,
        MOVING,
        UPPER_SKIN,
        _signed_areas,
        _unfolded,
    )

    frame = read_video(media_path("video/grid_bbaf2n.mpg"))[0]
    sample = track_video([frame]).landmarks[0].astype(np.float64)
    src = sample[CONTROL]
    triangles = Delaunay(src).simplices
    iod = float(face_scale(sample))
    dst = src.copy()
    for point in (410, 322):  # upper skin right of the mouth, pushed out past the cheek
        dst[CONTROL.index(point)] += [0.35 * iod, 0.05 * iod]
    lips = [CONTROL.index(k) for k in LIPS_OUTER]
    dst[lips] += [0.0, 0.02 * iod]

    skin = np.isin(triangles, [CONTROL.index(k) for k in UPPER_SKIN + LOWER_SKIN]).any(axis=1)

    def turned(points: np.ndarray) -> int:
        flips = _signed_areas(points[triangles]) * _signed_areas(src[triangles]) < 0
        return int((flips & skin).sum())

    assert turned(dst) > 0
    fixed = _unfolded(dst, src, triangles, src[: len(MOVING)])
    assert turned(fixed) == 0
    np.testing.assert_array_equal(fixed[lips], dst[lips])
