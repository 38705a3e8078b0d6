"""Interlaced sources come out progressive, without combing, at their own frame rate.

The interlaced clip is woven from real footage (pexels_woman_expressions.mp4, which moves):
even lines from one frame, odd lines from the next, coded interlaced (top field first) at 25
frames a second. Combing is measured as each line's distance from the mean of its neighbours.
"""

from __future__ import annotations

from fractions import Fraction
from itertools import islice
from pathlib import Path

import av
import numpy as np
import pytest

from openlipsync.engine import GenerateRequest, generate
from openlipsync.engine.chunks import chunk_bounds, join, load_plan, render_chunk, write_plan
from openlipsync.media.deinterlace import progressive
from tests.conftest import media_path

SPEECH = media_path("speech/arctic_a0009.wav")


@pytest.fixture(scope="module")
def interlaced(tmp_path_factory: pytest.TempPathFactory) -> Path:
    with av.open(str(media_path("video/pexels_woman_expressions.mp4"))) as container:
        decoded = islice(container.decode(video=0), 100)
        frames = [f.to_ndarray(format="rgb24") for f in decoded]
    path = tmp_path_factory.mktemp("interlaced") / "woven.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 640, 360, "yuv420p"
        stream.options = {"crf": "14", "flags": "+ilme+ildct", "x264-params": "interlaced=1:tff=1"}
        for index in range(0, len(frames) - 1, 2):
            woven = frames[index].copy()
            woven[1::2] = frames[index + 1][1::2]
            frame = av.VideoFrame.from_ndarray(woven, format="rgb24").reformat(format="yuv420p")
            frame.pts, frame.time_base = index // 2, Fraction(1, 25)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def _combing(path: Path) -> tuple[float, int]:
    """(mean combing of the frames, frame count)."""
    with av.open(str(path)) as container:
        grey = [f.to_ndarray(format="gray").astype(float) for f in container.decode(video=0)]
    comb = [np.abs(g[1:-1] - (g[:-2] + g[2:]) / 2).mean() for g in grey]
    return float(np.mean(comb)), len(grey)


def test_decoding_weaves_interlaced_frames_and_keeps_their_times(interlaced: Path) -> None:
    with av.open(str(interlaced)) as container:
        raw = [(f.time, f.interlaced_frame) for f in container.decode(video=0)]
    with av.open(str(interlaced)) as container:
        woven = [(f.time, f.interlaced_frame) for f in progressive(container.decode(video=0))]
    assert all(flag for _, flag in raw) and not any(flag for _, flag in woven)
    assert [t for t, _ in woven] == pytest.approx([t for t, _ in raw])


def test_progressive_frames_pass_untouched() -> None:
    grid = media_path("video/grid_bbaf2n.mpg")
    with av.open(str(grid)) as a, av.open(str(grid)) as b:
        plain = [f.to_ndarray() for f in a.decode(video=0)]
        passed = [f.to_ndarray() for f in progressive(b.decode(video=0))]
    assert len(plain) == len(passed) == 75
    assert all(np.array_equal(x, y) for x, y in zip(plain, passed, strict=True))


def test_an_interlaced_source_is_lip_synced_without_combing(
    interlaced: Path, tmp_path: Path
) -> None:
    before, count = _combing(interlaced)
    single = generate(
        GenerateRequest(interlaced, SPEECH, tmp_path / "out.mp4", sync_mode="cut_off")
    )
    after, frames = _combing(single.output)
    assert frames == single.frame_count == count  # 25 frames a second in, 25 out
    assert after < 0.4 * before, (before, after)  # 4.4 -> 1.2 measured

    request = GenerateRequest(interlaced, SPEECH, tmp_path / "unused.mp4", sync_mode="cut_off")
    summary = write_plan(request, tmp_path / "plan.npz")
    plan, parts = load_plan(tmp_path / "plan.npz"), []
    for index, (start, stop) in enumerate(chunk_bounds(summary.frame_count, summary.fps, 0.5)):
        parts.append(tmp_path / f"chunk-{index}.mp4")
        render_chunk(plan, interlaced, start, stop, parts[-1])  # chunks seek: their own decoder
    joined = join(load_plan(tmp_path / "plan.npz", sound=True), parts, tmp_path / "joined.mp4")
    assert _combing(joined.output)[0] < 0.4 * before


def test_a_stream_that_changes_size_is_deinterlaced_on_both_sides(interlaced: Path) -> None:
    """A broadcast can switch formats mid-stream; the filter is built for one size."""
    with av.open(str(interlaced)) as container:
        frames = list(container.decode(video=0))[:6]
    smaller = [f.reformat(width=320, height=180) for f in frames[3:]]  # flag not kept
    for frame, original in zip(smaller, frames[3:], strict=True):
        frame.pts, frame.time_base = original.pts, original.time_base
    out = list(progressive(frames[:3] + smaller))  # the filter, once started, sees them all
    assert [(f.width, f.height) for f in out] == [(640, 360)] * 3 + [(320, 180)] * 3
    assert [f.time for f in out] == pytest.approx([f.time for f in frames])
