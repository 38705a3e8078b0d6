"""Still occluders on real footage: a microphone on a stand in front of a swaying head.

bench/occluders.py makes the clips: the GRID speaker moved by a slow sway (as a seated speaker
leans and turns, +-12 px at 360x288) and a dark foam microphone drawn, still, over his chin and
lower lip. Before, the renderer bent the microphone's edge with the chin and pasted it a second
time wherever it sat in the frame the mouth was taken from (a dark ghost beside it).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench.occluders import MEDIA, damage, found, write_clip
from openlipsync.engine import generate, occluders
from openlipsync.engine.chunks import load_plan, write_plan
from openlipsync.engine.pipeline import planned
from openlipsync.engine.request import GenerateRequest
from openlipsync.engine.run_state import RunState
from openlipsync.media.video import VideoReader
from tests.conftest import media_path


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("occluders")
    return {
        "microphone": write_clip(folder / "microphone.mp4", 12.0, True),
        "no_microphone": write_clip(folder / "sway.mp4", 12.0, False),
        "still_head": write_clip(folder / "still.mp4", 0.0, True),
        "two_shots": write_clip(
            folder / "two.mp4", 12.0, True, then=MEDIA / "video" / "grid_lbax4n.mpg"
        ),
    }


def _request(video: Path, out: Path | None = None) -> GenerateRequest:
    speech = media_path("speech/arctic_a0009.wav")
    return GenerateRequest(video, speech, out or video.with_suffix(".out.mp4"))


def _decoded(path: Path) -> list[np.ndarray]:
    with VideoReader(path) as reader:
        return list(reader)


def test_a_microphone_before_a_swaying_head_is_found_where_it_is(clips: dict[str, Path]) -> None:
    share, beside = found(clips["microphone"])
    assert share > 0.8, share  # of its head (its stand is under the chin, beside the face)
    assert beside == 0  # nothing beyond a grid pixel and a half (1/24 eye distance each)


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
    clips: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    video = clips["microphone"]
    seen = damage(_decoded(video), _decoded(generate(_request(video, tmp_path / "a.mp4")).output))
    monkeypatch.setattr(occluders, "MIN_ENTRIES", 1 << 30)  # the search off: as before
    blind = damage(_decoded(video), _decoded(generate(_request(video, tmp_path / "b.mp4")).output))
    assert seen["redrawn"] >= 20  # the mouth speaks the new words (from about 1 s on)
    assert seen["mic"] < 4.0 < 20.0 < blind["mic"], (seen, blind)  # x264 alone: about 1
    assert seen["ghost"] < 40 < 150 < blind["ghost"], (seen, blind)  # no microphone beside it


def test_a_chunked_render_keeps_the_occluders(clips: dict[str, Path], tmp_path: Path) -> None:
    """Long videos render in chunks, in other processes (engine/chunks.py): the plan file
    carries the occluders and the library mouths' frames, so the pixels are the same."""
    request = _request(clips["microphone"], tmp_path / "chunked.mp4")
    write_plan(request, tmp_path / "plan.npz")
    loaded = load_plan(tmp_path / "plan.npz")
    assert len(loaded.look.renderer.occluders.shots) == 1
    frames = _decoded(clips["microphone"])
    with planned(request, RunState()) as plan:
        for index in (10, 30, 50):
            frame = frames[int(plan.look.src_index[index])]
            expected = plan.look.frame(index, frame.copy())
            assert np.array_equal(loaded.look.frame(index, frame.copy()), expected), index


def test_each_shot_has_its_own(clips: dict[str, Path]) -> None:
    """A microphone in the first shot only: the second (another speaker, after a cut) is
    drawn as ever. Over both shots as one, the microphone would not have been still."""
    with planned(_request(clips["two_shots"]), RunState()) as plan:
        occluders_found = plan.look.renderer.occluders
    assert [(shot.start, shot.stop) for shot in occluders_found.shots] == [(0, 75)]


def test_a_face_crossing_a_wide_picture_is_not_searched() -> None:
    """A small face that walks across a 4K picture in one shot: the grid would be the whole
    picture (48 views of the face on it: gigabytes at full size). Such a shot is skipped."""
    import tracemalloc

    rng = np.random.default_rng(0)
    count, scale = 48, 24.0
    images = [rng.integers(0, 255, (36, 48, 3), np.uint8) for _ in range(count)]
    to_crop = np.array([[[1.0, 0, -80.0 * k], [0, 1.0, -1000.0]] for k in range(count)])
    landmarks = rng.uniform(0, 36, (count, 478, 2)).astype(np.float32)
    crops = occluders.Crops(images, to_crop, landmarks, scale)
    tracemalloc.start()
    try:
        found_here = occluders.find_still_occluders(crops, np.arange(count) * 2, [(0, 96)])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert not found_here and peak < 32 * 2**20, peak
