"""Frames kept from the analysis pass: the same pixels as a second decode, within a budget,
and a render pass that reads them gives the very same video as one that decodes again."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import test_media_decode as decoding
from conftest import media_path

import openlipsync.media.kept as kept_module
from openlipsync.engine import GenerateRequest, generate
from openlipsync.media.kept import KeptFrames, KeptSource
from openlipsync.media.picture import RgbPicture
from openlipsync.media.video import VideoReader

grid = decoding.grid  # fixture: the GRID clip
variants = decoding.variants  # fixture: it in every format, rotated, 10-bit


def _kept(path: Path, budget: int = 1 << 30, touch_rgb: bool = False) -> KeptFrames:
    kept = KeptFrames(budget)
    with VideoReader(path, fps=25.0) as reader:
        for index, picture in enumerate(reader.pictures()):
            if touch_rgb:
                picture.rgb()  # as the face detector does: the picture caches its RGB
            kept.keep(index, picture)
    return kept


@pytest.mark.parametrize("name", ["grid", "rot90.mp4", "prores.mov"])
def test_kept_frames_are_the_pixels_of_a_second_decode(
    name: str, grid: Path, variants: dict[str, Path]
) -> None:
    """Planes kept as decoded, rotated planes, and a 10-bit 4:2:2 clip's RGB pictures."""
    path = grid if name == "grid" else variants[name]
    with VideoReader(path, fps=25.0) as reader:
        decoded = list(reader)
    kept = _kept(path, touch_rgb=True)
    assert len(kept) == len(decoded) == 75
    for index in (0, 1, 37, 74):
        frame = kept.rgb(index)
        assert frame.flags.c_contiguous and frame.dtype == np.uint8
        assert np.array_equal(frame, decoded[index]), index
    first = kept.rgb(0)
    first[:] = 0  # the caller may paint on what it gets
    assert np.array_equal(kept.rgb(0), decoded[0])


def test_keeping_stops_at_the_budget_and_at_a_gap(grid: Path) -> None:
    one = 360 * 288 * 3 // 2  # bytes of one 4:2:0 picture of the clip
    assert len(_kept(grid, budget=10 * one)) == 10
    assert len(_kept(grid, budget=one - 1)) == 0
    kept = KeptFrames()
    with VideoReader(grid) as reader:
        pictures = reader.pictures()
        kept.keep(0, next(pictures))
        next(pictures)
        kept.keep(2, next(pictures))  # frame 1 never came: nothing after it can be kept
        kept.keep(3, next(pictures))
        pictures.close()
    assert len(kept) == 1
    kept.clear()
    assert len(kept) == 0


def test_kept_source_decodes_only_beyond_the_kept_frames(grid: Path) -> None:
    made: list[int] = []

    class Beyond:  # a Source: get and picture serve the same frame
        def get(self, index: int) -> np.ndarray:
            return self.picture(index).fresh_rgb()

        def picture(self, index: int) -> RgbPicture:
            made.append(index)
            return RgbPicture(np.zeros((288, 360, 3), np.uint8))

        def close(self) -> None:
            made.append(-1)

    source = KeptSource(_kept(grid, budget=5 * 360 * 288 * 3 // 2), Beyond)
    assert source.get(4).any() and made == []
    assert not source.get(5).any() and made == [5]
    source.close()
    assert made == [5, -1]


def _frames(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="yuv420p") for f in container.decode(video=0)])


def test_only_a_clip_that_fits_whole_is_kept() -> None:
    kept = KeptFrames(budget=100 * 1280 * 720 * 3 // 2)
    assert kept.would_hold(100, 1280, 720) and not kept.would_hold(101, 1280, 720)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["loop", "bounce"])
def test_generation_is_identical_with_frames_kept_whole_in_part_or_not_at_all(
    mode: str, grid: Path, variants: dict[str, Path], tmp_path: Path, monkeypatch
) -> None:
    """The 3 s clip driven by 5 s of speech, so loop restarts and bounce turns back. The 10-bit
    clip decodes to RGB pictures, twice the 4:2:0 size the budget was judged by: half of it is
    kept and the render pass seeks past that half (loop) or decodes it all again (bounce)."""
    audio = media_path("speech/librivox_austen_0890.wav")
    whole = 75 * 360 * 288 * 3 // 2
    for name, budgets in (("grid", (0, whole)), ("prores.mov", (0, whole))):
        outputs = []
        for budget in budgets:
            monkeypatch.setattr(kept_module, "KEPT_BYTES", budget)
            source = grid if name == "grid" else variants[name]
            out = tmp_path / f"{name}-{budget}.mp4"
            outputs.append(
                _frames(generate(GenerateRequest(source, audio, out, sync_mode=mode)).output)
            )
        assert len(outputs[0]) > 75  # longer than the clip: the mode really turned
        assert np.array_equal(outputs[0], outputs[1]), name
