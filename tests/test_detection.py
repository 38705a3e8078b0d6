"""Small faces of wide shots: found on tiles where the whole-frame detector sees none."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import media_path
from media_helpers import write_frames

import openlipsync.engine.tracking as tracking
from openlipsync.engine import GenerateRequest, generate
from openlipsync.engine.detection import FaceBox, FaceDetector, _clear_of, _inner_edges, tiles
from openlipsync.engine.mouth import EYE_OUTER_LEFT, EYE_OUTER_RIGHT, NOSE_TIP
from openlipsync.engine.tracking import FaceTracker
from openlipsync.media.picture import RgbPicture
from openlipsync.media.video import VideoReader

WIDE = (720, 1280)
# Where the small GRID face goes: across the overlap of the first two tile columns of 1280 x
# 720 (tiles of 640 px, the second starting at 320), so tiling must not lose it.
AT = (330, 300)


def _grid_frames(count: int = 75) -> list[np.ndarray]:
    with VideoReader(media_path("video/grid_bbaf2n.mpg")) as reader:
        return [frame for _, frame in zip(range(count), reader, strict=False)]


def _wide_shot(frame: np.ndarray, scale: float, at: tuple[int, int] = AT) -> np.ndarray:
    """The GRID frame shrunk by `scale` on a grey 1280 x 720 wall (its face ~260*scale px)."""
    canvas = np.full((*WIDE, 3), 110, np.uint8)
    small = cv2.resize(frame, None, fx=2.5 * scale, fy=2.5 * scale, interpolation=cv2.INTER_AREA)
    x, y = at
    canvas[y : y + small.shape[0], x : x + small.shape[1]] = small
    return canvas


@pytest.mark.parametrize("size", [(1280, 720), (1920, 1080), (720, 1280), (640, 360), (3840, 2160)])
def test_tiles_cover_the_frame_with_overlap(size: tuple[int, int]) -> None:
    width, height = size
    boxes = tiles(width, height)
    covered = np.zeros((height, width), np.uint8)
    for x0, y0, x1, y1 in boxes:
        covered[y0:y1, x0:x1] += 1
        assert x1 - x0 == y1 - y0 or x1 == width or y1 == height  # square unless clipped
    assert covered.min() >= 1
    side = boxes[0][2] - boxes[0][0]
    assert side == -(-max(size) // 2)
    # Any face up to a fifth of a tile (more than the whole-frame detector's minimum, about
    # 1/28 of the long side) lies wholly inside some tile.
    face = side // 5
    rng = np.random.default_rng(0)
    corners = rng.integers(0, [width - face, height - face], (200, 2))
    for x, y in corners:
        assert any(
            x0 <= x and y0 <= y and x + face <= x1 and y + face <= y1 for x0, y0, x1, y1 in boxes
        )


def test_frames_too_small_to_magnify_have_no_tiles() -> None:
    assert tiles(360, 288) == []
    assert tiles(382, 200) == []
    assert len(tiles(384, 200)) == 6  # 192 px tiles: 3 across, 2 down


def test_boxes_cut_by_a_tile_edge_are_dropped_but_not_at_the_frame_edge() -> None:
    edges = _inner_edges((320, 0, 960, 640), 1280, 720)  # top edge is the frame's own
    assert _clear_of(FaceBox(600, 300, 40, 40), edges)
    assert not _clear_of(FaceBox(330, 300, 40, 40), edges)  # crosses the tile's left edge
    assert not _clear_of(FaceBox(600, 630, 40, 40), edges)  # crosses its bottom edge
    assert _clear_of(FaceBox(600, 15, 40, 40), edges)  # cut by the frame's top only


def test_a_small_face_is_found_on_tiles_and_tracked() -> None:
    frame = _grid_frames(1)[0]
    shot = _wide_shot(frame, 0.12)  # a face about 30 px wide
    detector = FaceDetector()
    try:
        assert detector.whole(RgbPicture(shot)) == [], "too small for the whole frame"
        faces = detector.tiled(RgbPicture(shot))
    finally:
        detector.close()
    assert len(faces) == 1
    x, y = AT
    assert x < faces[0].cx < x + 0.3 * 360 and y < faces[0].cy < y + 0.3 * 288
    with FaceTracker() as tracker:
        small = tracker.process(shot)
    with FaceTracker() as tracker:
        full = tracker.process(frame)
    assert small is not None and full is not None
    # The same face: its landmarks are the full-size frame's, scaled and moved.
    expected = full * (2.5 * 0.12) + AT
    eyes = float(np.linalg.norm(small[EYE_OUTER_LEFT] - small[EYE_OUTER_RIGHT]))
    assert 6 < eyes < 20
    assert np.abs(small - expected).mean() < 0.15 * eyes
    assert np.linalg.norm(small[NOSE_TIP] - expected[NOSE_TIP]) < 0.25 * eyes


def test_tiles_are_searched_on_the_first_miss_and_then_now_and_then(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A clip without a face pays for tiles on one frame in TILED_EVERY, not on all."""
    searched: list[int] = []
    real = FaceDetector.tiled
    wall = np.full((*WIDE, 3), 110, np.uint8)

    def counting(self: FaceDetector, picture: RgbPicture) -> list[FaceBox]:
        searched.append(len(seen))
        return real(self, picture)

    monkeypatch.setattr(FaceDetector, "tiled", counting)
    seen: list[None] = []
    with FaceTracker() as tracker:
        for _ in range(25):
            seen.append(tracker.process(wall))
        assert seen == [None] * 25
        every = tracking.TILED_EVERY
        assert searched == [0, every, 2 * every]
        tracker.forget()  # a new shot searches tiles on its first frame again
        tracker.process(wall)
    assert searched[-1] == 25


def test_a_wide_shot_with_a_small_face_is_lip_synced(tmp_path: Path) -> None:
    frames = _grid_frames(50)
    video = write_frames(tmp_path / "wide.mp4", (_wide_shot(frame, 0.12) for frame in frames))
    output = tmp_path / "out.mp4"
    speech = media_path("speech/librivox_austen_0890.wav")
    result = generate(GenerateRequest(video, speech, output, sync_mode="cut_off"))
    assert result.frame_count == 50
    with VideoReader(video) as before, VideoReader(output) as after:
        pairs = list(zip(before, after, strict=True))
    x, y = AT
    mouth = (slice(y + 45, y + 80), slice(x + 25, x + 85))  # the face's lower half
    changed = [np.abs(a[mouth].astype(int) - b[mouth].astype(int)).max() for a, b in pairs]
    assert sum(change > 30 for change in changed) > 10, "the mouth moves to the new speech"
    away = (slice(0, y - 20), slice(None))  # everything above the face
    worst = max(np.abs(a[away].astype(int) - b[away].astype(int)).max() for a, b in pairs)
    assert worst <= 3  # re-encoding only
