"""Still occluders on real footage: a microphone on a stand in front of a swaying head.

The GRID speaker is moved by a slow sway (as a seated speaker leans and turns, +-12 px at
360x288) and a dark foam microphone is drawn, still, over his chin and lower lip. Before, the
renderer bent the microphone's edge with the chin and pasted it a second time wherever it sat
in the frame the mouth was taken from (a dark ghost beside it, moving with the head).
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from openlipsync.engine import generate
from openlipsync.engine.pipeline import planned
from openlipsync.engine.render import MouthRenderer
from openlipsync.engine.request import GenerateRequest
from openlipsync.engine.run_state import RunState
from openlipsync.media.video import VideoReader
from tests.conftest import media_path

FPS = 25
MIC_CENTRE, MIC_AXES = (178, 240), (34, 22)


def _microphone(size: tuple[int, int]) -> np.ndarray:
    """bool (h, w): where the drawn microphone is (its head and stand)."""
    mask = np.zeros(size, np.uint8)
    cx, cy = MIC_CENTRE
    cv2.ellipse(mask, MIC_CENTRE, MIC_AXES, 0, 0, 360, 1, -1)
    cv2.rectangle(mask, (cx - 5, cy + 20), (cx + 5, size[0]), 1, -1)
    return mask > 0


def _write_clip(out: Path, sway: float, microphone: bool, then: str | None = None) -> Path:
    """The swaying speaker; with `then` (a GRID clip), a cut to that speaker swaying without
    a microphone."""
    frames = list(VideoReader(media_path("video/grid_bbaf2n.mpg")))
    count = len(frames)
    if then is not None:
        frames += list(VideoReader(media_path(f"video/{then}.mpg")))
    height, width = frames[0].shape[:2]
    mic = _microphone((height, width))
    with av.open(str(out), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "16"}
        for index, frame in enumerate(frames):
            t = index / FPS
            shift = [sway * np.sin(2 * np.pi * 0.4 * t), 0.5 * sway * np.cos(2 * np.pi * 0.3 * t)]
            moved = cv2.warpAffine(
                frame,
                np.float32([[1, 0, shift[0]], [0, 1, shift[1]]]),
                (width, height),
                borderMode=cv2.BORDER_REPLICATE,
            )
            if microphone and index < count:
                moved[mic] = (45, 45, 48)
                cx, cy = MIC_CENTRE
                cv2.ellipse(moved, (cx - 10, cy - 8), (12, 6), -20, 0, 360, (70, 70, 75), -1)
            picture = av.VideoFrame.from_ndarray(moved, format="rgb24")
            picture.pts, picture.time_base = index, Fraction(1, FPS)
            for packet in stream.encode(picture):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return out


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("occluders")
    return {
        "microphone": _write_clip(folder / "microphone.mp4", 12.0, True),
        "no_microphone": _write_clip(folder / "sway.mp4", 12.0, False),
        "still_head": _write_clip(folder / "still.mp4", 0.0, True),
        "two_shots": _write_clip(folder / "two.mp4", 12.0, True, then="grid_lbax4n"),
    }


def _request(video: Path, out: Path | None = None) -> GenerateRequest:
    speech = media_path("speech/arctic_a0009.wav")
    return GenerateRequest(video, speech, out or video.with_suffix(".out.mp4"))


def _decoded(path: Path) -> list[np.ndarray]:
    with VideoReader(path) as reader:
        return list(reader)


def test_a_microphone_before_a_swaying_head_is_found_where_it_is(clips: dict[str, Path]) -> None:
    with planned(_request(clips["microphone"]), RunState()) as plan:
        occluders = plan.look.renderer.occluders
        height, width = plan.look.renderer.height, plan.look.renderer.width
    assert len(occluders.shots) == 1
    found = occluders.warped(0, np.array([[1.0, 0, 0], [0, 1.0, 0]]), (height, width)) > 0.5
    mic = _microphone((height, width))
    # Nothing beside it: its grid is 1/24 eye distance (2.6 px here), grown by one grid pixel.
    near = cv2.dilate(mic.astype(np.uint8), np.ones((13, 13), np.uint8)) > 0
    assert found[~near].sum() == 0
    head = mic.copy()
    head[MIC_CENTRE[1] + MIC_AXES[1] :] = False  # the stand is under the chin, not before it
    assert (found & head).sum() > 0.8 * head.sum(), (found & head).sum() / head.sum()


@pytest.mark.parametrize("clip", ["no_microphone", "still_head"])
def test_nothing_is_found_without_a_still_object_or_without_motion(
    clips: dict[str, Path], clip: str
) -> None:
    """The same sway with nothing in front: the face, the shirt and the wall are not still
    both ways. A still head behind the microphone gives no evidence (a still chin and a still
    object look the same), so nothing is marked and the renderer draws as it always did."""
    with planned(_request(clips[clip]), RunState()) as plan:
        assert not plan.look.renderer.occluders


def test_the_lip_sync_leaves_the_microphone_alone_and_pastes_no_other(
    clips: dict[str, Path], tmp_path: Path
) -> None:
    video = clips["microphone"]
    out = generate(_request(video, tmp_path / "out.mp4")).output
    before, after = _decoded(video), _decoded(out)
    height, width = before[0].shape[:2]
    mic = _microphone((height, width))
    inner = cv2.erode(mic.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    # A ring 1-6 px outside it: a pasted microphone darkens it (by 40 grey levels and more on
    # up to 234 px of a frame before); lips and chin moving there hardly do.
    ring = cv2.dilate(mic.astype(np.uint8), np.ones((13, 13), np.uint8)) > 0
    ring &= ~(cv2.dilate(mic.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0)
    changed = np.zeros(len(before))
    ghosts = np.zeros(len(before), np.int64)
    for index, (a, b) in enumerate(zip(before, after, strict=False)):
        changed[index] = np.abs(a.astype(np.int16) - b.astype(np.int16)).max(axis=2)[inner].mean()
        ghosts[index] = ((a.mean(axis=2) - b.mean(axis=2) > 40) & ring).sum()
    redrawn = [
        (np.abs(a.astype(np.int16) - b.astype(np.int16)).max(axis=2) > 20).sum() >= 100
        for a, b in zip(before, after, strict=False)
    ]
    assert sum(redrawn) >= 20  # the mouth speaks the new words (from about 1 s on)
    assert changed.max() < 4.0, changed.round(1)  # the microphone is as it was (x264 aside)
    assert ghosts.max() < 40, ghosts  # and no dark microphone beside it


def test_a_chunked_render_keeps_the_occluders(clips: dict[str, Path]) -> None:
    """Long videos render in chunks, in other processes (engine/chunks.py): the renderer's
    hand-over carries the occluders and the library's frames, so the pixels are the same."""
    frames = _decoded(clips["microphone"])
    with planned(_request(clips["microphone"]), RunState()) as plan:
        renderer = plan.look.renderer
        copy = MouthRenderer.from_state(*renderer.export_state())
        for index in (10, 30, 50):
            frame = frames[int(plan.timeline.src_index[index])]
            assert np.array_equal(renderer.render(index, frame), copy.render(index, frame))
    assert len(copy.occluders.shots) == 1


def test_each_shot_has_its_own(clips: dict[str, Path]) -> None:
    """A microphone in the first shot only: the second (another speaker, after a cut) is
    drawn as ever. Over both shots as one, the microphone would not have been still."""
    with planned(_request(clips["two_shots"]), RunState()) as plan:
        occluders = plan.look.renderer.occluders
    assert [(shot.start, shot.stop) for shot in occluders.shots] == [(0, 75)]
