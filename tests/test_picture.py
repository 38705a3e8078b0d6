"""Pictures: RGB only where the analysis pass looks, the same pixels and landmarks as the frame."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from openlipsync.engine.library import lip_contrast
from openlipsync.engine.mouth import LIPS_INNER, LIPS_OUTER, face_scale
from openlipsync.engine.occlusion import VisibilityModel
from openlipsync.engine.render import MouthRenderer
from openlipsync.engine.tracking import FaceTracker
from openlipsync.media.encode import VideoWriter
from openlipsync.media.picture import Patch, RgbPicture, YuvPicture, padded_square, shrink_square
from openlipsync.media.video import VideoReader
from tests.conftest import media_path
from tests.media_helpers import scaled_copy, transcode

PEXELS = "video/pexels_woman_expressions.mp4"


def _scaled(dst: Path, height: int, count: int) -> Path:
    """The Pexels face scaled to `height` (H.264, 4:2:0): a face whose mesh crop is shrunk."""
    width = round(16 / 9 * height / 2) * 2
    options = {"crf": "18", "preset": "ultrafast"}
    return scaled_copy(media_path(PEXELS), dst, (width, height), count, options)


@pytest.fixture(scope="module")
def hd_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _scaled(tmp_path_factory.mktemp("picture") / "hd.mp4", 720, 24)


def _pairs(path: Path, count: int) -> list[tuple[np.ndarray, object]]:
    reader = VideoReader(path)
    with reader:
        return list(zip(list(iter(reader))[:count], list(reader.pictures())[:count], strict=True))


def test_pictures_are_the_frames(hd_clip: Path) -> None:
    reader = VideoReader(hd_clip)
    with reader:
        frames, pictures = list(iter(reader)), list(reader.pictures())
    assert len(pictures) == len(frames) == reader.info.frame_count
    assert all(isinstance(p, YuvPicture) for p in pictures)
    assert all(np.array_equal(p.rgb(), f) for p, f in zip(pictures, frames, strict=True))


def test_regions_and_partial_frames_hold_the_exact_pixels(hd_clip: Path) -> None:
    frame, picture = _pairs(hd_clip, 3)[2]
    height, width = frame.shape[:2]
    boxes = [
        (0, 0, 10, 10),
        (3, 5, 101, 77),
        (-5, -7, 50, 51),
        (width - 7, height - 9, width + 5, height + 4),
    ]
    for x0, y0, x1, y1 in boxes:
        assert np.array_equal(
            picture.region((x0, y0, x1, y1)), frame[max(y0, 0) : y1, max(x0, 0) : x1]
        )
    out = np.zeros_like(frame)
    partial = picture.partial(boxes, out)
    assert partial is out
    for x0, y0, x1, y1 in boxes:
        x0, y0 = max(x0, 0), max(y0, 0)
        assert np.array_equal(partial[y0:y1, x0:x1], frame[y0:y1, x0:x1])
    with pytest.raises(ValueError):
        picture.partial(boxes, np.zeros((4, 4, 3), np.uint8))


def test_thumbnail_is_the_point_sample_up_to_chroma(hd_clip: Path) -> None:
    frame, picture = _pairs(hd_clip, 1)[0]
    thumb = picture.thumbnail(256, 144).astype(int)
    reference = cv2.resize(frame, (256, 144), interpolation=cv2.INTER_NEAREST).astype(int)
    assert np.abs(thumb - reference).mean() < 1.0
    # What the cut detector keeps of it (a 64 x 36 area average) is the same within a level.
    small = [
        cv2.resize(t.astype(np.uint8), (64, 36), interpolation=cv2.INTER_AREA)
        for t in (thumb, reference)
    ]
    assert np.abs(small[0].astype(int) - small[1]).max() <= 4
    assert np.abs(small[0].astype(int) - small[1]).mean() < 0.5


def test_square_crops_match_the_rgb_path(hd_clip: Path) -> None:
    frame, picture = _pairs(hd_clip, 1)[0]
    # Small crops take the exact RGB path; larger ones are reduced on the planes (halved,
    # then resampled): the same picture, at the same scale, within rounding.
    squares = [(10, 10, 200), (-40, 50, 400), (101, -301, 1047), (1000, 500, 900), (7, 3, 601)]
    squares += [(-1290, 5, 1300), (5, -700, 1400), (3, 5, 1281)]  # a sliver; 4x reductions
    for x0, y0, size in squares:
        for edge in (False, True):
            crop, factor = picture.square(x0, y0, size, 320, edge)
            reference, ref_factor = shrink_square(padded_square(frame, x0, y0, size, edge), 320)
            assert crop.shape == reference.shape == (min(size, 320), min(size, 320), 3)
            # (shrink_square rounds a 2x-or-more reduction to whole blocks: < 1 % off)
            assert factor == pytest.approx(ref_factor, rel=0.01)
            if size <= 320:
                assert np.array_equal(crop, reference)
            else:
                difference = np.abs(crop.astype(int) - reference.astype(int))
                assert difference.mean() < 2.0 and np.percentile(difference, 99) <= 16
    assert RgbPicture(frame).square(101, -301, 1047, 320)[1] == pytest.approx(320 / 1047, abs=1e-3)


def test_face_mesh_on_pictures_lands_where_it_lands_on_frames(hd_clip: Path) -> None:
    pairs = _pairs(hd_clip, 24)
    lips = LIPS_OUTER + LIPS_INNER
    with FaceTracker() as on_frames, FaceTracker() as on_pictures:
        errors = []
        for frame, picture in pairs:
            a, b = on_frames.process(frame), on_pictures.process(picture)
            assert (a is None) == (b is None)
            if a is not None:
                errors.append(np.linalg.norm(a[lips] - b[lips], axis=1).mean() / face_scale(a))
    assert errors
    # Within the mesh's own sensitivity to a one-pixel shift of its crop (about 0.003 here).
    assert np.median(errors) < 0.01 and max(errors) < 0.06


def test_observers_read_only_the_boxes_they_name(hd_clip: Path) -> None:
    pairs = _pairs(hd_clip, 24)
    with FaceTracker() as tracker:
        landmarks = [tracker.process(frame) for frame, _ in pairs]
    full, partial = (MouthRenderer(1280, 720, 25, "standard") for _ in range(2))
    visible_full, visible_partial = VisibilityModel(), VisibilityModel()
    buffer = np.empty((720, 1280, 3), np.uint8)
    for index, ((frame, picture), points) in enumerate(zip(pairs, landmarks, strict=True)):
        buffer[:] = 255 - frame  # stale, wrong pixels wherever a box is missing
        boxes = partial.source_boxes(index, points) + [visible_partial.source_box(points)]
        seen = picture.partial([b for b in boxes if b is not None], buffer)
        full.observe(index, frame, points)
        partial.observe(index, seen, points)
        visible_full.observe(frame, points)
        visible_partial.observe(seen, points)
        if points is not None:
            assert lip_contrast(seen, points) == lip_contrast(frame, points)
    lib_full, lib_partial = full.library, partial.library
    assert lib_full.count == lib_partial.count > 0
    assert np.array_equal(
        lib_full._crops[: lib_full.count], lib_partial._crops[: lib_partial.count]
    )
    assert full._contrast == partial._contrast
    assert full._hands.samples() == partial._hands.samples() and full._hands.samples()
    assert np.array_equal(visible_full.scores(), visible_partial.scores())
    full.close()
    partial.close()


def test_rotated_and_unusual_inputs(tmp_path: Path) -> None:
    grid = media_path("video/grid_bbaf2n.mpg")
    turned = transcode(grid, tmp_path / "turned.mp4", "libx264", None, rotation=90)
    ten_bit = transcode(grid, tmp_path / "ten.mkv", "libx264", None, pix_fmt="yuv420p10le")
    for path, kind in ((turned, YuvPicture), (ten_bit, YuvPicture)):  # 10-bit: as 8-bit 4:2:0
        reader = VideoReader(path)
        with reader:
            frames, pictures = list(iter(reader))[:5], list(reader.pictures())[:5]
        assert all(isinstance(p, kind) for p in pictures)
        for frame, picture in zip(frames, pictures, strict=True):
            assert (picture.height, picture.width) == frame.shape[:2]
            assert np.array_equal(picture.rgb(), frame)
            box = (7, 11, 61, 90)
            assert np.array_equal(picture.region(box), frame[11:90, 7:61])


def test_grey_thumbnails_are_those_of_the_rgb_frame(hd_clip: Path) -> None:
    frame, picture = _pairs(hd_clip, 1)[0]
    for box in [(500, 300, 800, 600), (-10, -10, 200, 150), (1100, 600, 1300, 740)]:
        grey = picture.grey_thumbnail(box, 24)
        assert grey.shape == (24, 24)
        assert np.array_equal(grey, RgbPicture(frame).grey_thumbnail(box, 24))


def _i420(planes: tuple[np.ndarray, ...]) -> np.ndarray:
    y, u, v = planes
    return np.concatenate([y.ravel(), u.ravel(), v.ravel()])


def test_pictures_are_views_of_the_decoded_planes(hd_clip: Path) -> None:
    """No copy on the decoding thread: the planes are the decoder's own buffers, kept alive
    (and never painted over) while a picture holds them (test_pictures_are_the_frames keeps
    every picture of the clip until the decoding has ended)."""
    reader = VideoReader(hd_clip)
    with reader:
        picture = next(reader.pictures())
    y, u, v = picture.planes()
    assert not y.flags.owndata and y.base is not None
    assert (y.shape, u.shape, v.shape) == ((720, 1280), (360, 640), (360, 640))


def test_encodable_changes_only_the_patch_box(hd_clip: Path, tmp_path: Path) -> None:
    """A patched 4:2:0 picture: the patch's box widened to even sides is what a whole-frame
    conversion of the patched RGB frame gives there; every other pixel is the decoder's own."""
    frame, picture = _pairs(hd_clip, 2)[1]
    rng = np.random.default_rng(7)
    box = (101, 203, 357, 401)  # odd corners: the chroma blocks they cut are widened
    pixels = rng.integers(0, 256, (401 - 203, 357 - 101, 3), dtype=np.uint8)
    patch = Patch(box, pixels)
    with VideoWriter(tmp_path / "out.mp4", 1280, 720, 25.0, None) as writer:
        plain = writer.encodable(picture).to_ndarray(format="yuv420p")
        patched = writer.encodable(picture, patch).to_ndarray(format="yuv420p")
        through_rgb = writer.encodable(RgbPicture(frame), patch).to_ndarray(format="yuv420p")
        expected_rgb = writer.picture(patch.onto(frame)).to_ndarray(format="yuv420p")
        writer.write_picture(writer.encodable(picture, patch))
    assert np.array_equal(plain.ravel(), _i420(picture.planes()))
    assert np.array_equal(through_rgb, expected_rgb)
    whole = cv2.cvtColor(patch.onto(frame), cv2.COLOR_RGB2YUV_I420)
    source = _i420(picture.planes()).reshape(whole.shape)
    inside = np.zeros((720, 1280), bool)
    inside[202:402, 100:358] = True  # (101, 203)-(357, 401) widened to even sides
    chroma_inside = inside[::2, ::2].ravel()
    for name, plane in (("y", slice(0, 720)), ("uv", slice(720, None))):
        got, want, kept = patched[plane], whole[plane], source[plane]
        mask = inside if name == "y" else np.tile(chroma_inside, 2).reshape(got.shape)
        assert np.array_equal(got[mask], want[mask]), name
        assert np.array_equal(got[~mask], kept[~mask]), name
    assert not np.array_equal(patched, plain)


def test_a_photo_held_as_planes_encodes_as_its_rgb_did(tmp_path: Path) -> None:
    """A photo shown in every output frame becomes 4:2:0 planes once (pipeline.in_order): the
    encoder copies them and converts only the patch, and the frame it gets is the one the
    whole-RGB conversion made, patch included."""
    from openlipsync.engine.pipeline import in_order

    with VideoReader(media_path("photo/astronaut.png")) as reader:  # 512 x 512
        photo = next(reader.pictures())
    held = list(in_order(_Still(photo), np.zeros(4, np.int64), is_still=True))
    assert all(picture is held[0] for picture in held)
    picture = held[0]
    assert isinstance(picture, YuvPicture) and picture.rgb() is photo.rgb()
    rgb = photo.rgb()
    patch = Patch((201, 301, 283, 347), np.full((46, 82, 3), (200, 40, 60), np.uint8))
    with VideoWriter(tmp_path / "o.mp4", 512, 512, 25.0, None) as writer:
        fast = writer.encodable(picture, patch)
        whole = writer.picture(patch.onto(rgb))
        assert np.array_equal(fast.to_ndarray(), whole.to_ndarray())
        writer.write_picture(fast)
    assert np.array_equal(picture.region((10, 20, 90, 70)), rgb[20:70, 10:90])


class _Still:
    """A frame source of one picture, as a photo's is."""

    def __init__(self, picture: RgbPicture) -> None:
        self.picture_ = picture

    def picture(self, index: int) -> RgbPicture:
        assert index == 0
        return self.picture_
