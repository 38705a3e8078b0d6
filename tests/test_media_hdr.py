"""HDR video (phones record HLG by default) comes out as SDR that looks like the scene.

The output is 8-bit H.264: HDR tags on it made players that ignore them, or SDR screens,
show a grey washed-out picture, and 8 bits of PQ band. The reader tone-maps as it decodes
(media/hdr.py). The HDR clips here are made from real SDR footage by `hdr_from_sdr`, the
standards' SDR-in-HDR placement written independently of the product, so the SDR original is
what a correct tone-mapping gives back (up to the highlights' roll-off).
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from openlipsync.engine import GenerateRequest, generate
from openlipsync.media import hdr
from openlipsync.media.probe import probe
from openlipsync.media.seek import SeekingSource
from openlipsync.media.video import VideoReader
from tests.conftest import media_path
from tests.media_helpers import hdr_variant, psnr

FACE = media_path("video/pexels_woman_expressions.mp4")
GRID = media_path("video/grid_bbaf2n.mpg")


def _decoded(path: Path, count: int) -> list[np.ndarray]:
    """Frames as PyAV shows them by the file's tags (no transfer function applied)."""
    with av.open(str(path)) as container:
        frames = (f.to_ndarray(format="rgb24") for f in container.decode(video=0))
        return [frame for _, frame in zip(range(count), frames, strict=False)]


def _mean_psnr(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    assert len(a) == len(b)
    return float(np.mean([psnr(x, y) for x, y in zip(a, b, strict=True)]))


@pytest.mark.parametrize("transfer", ["hlg", "pq"])
def test_hdr_pictures_are_the_sdr_scene(tmp_path: Path, transfer: str) -> None:
    clip = hdr_variant(FACE, tmp_path / f"{transfer}.mp4", transfer, 20)
    assert probe(clip).video.colour.transfer == {"hlg": 18, "pq": 16}[transfer]
    scene = _decoded(FACE, 20)
    assert _mean_psnr(_decoded(clip, 20), scene) < 28  # the clip really is HDR-coded
    with VideoReader(clip) as reader:
        frames = list(reader)
        pictures = list(reader.pictures())
    assert _mean_psnr(frames, scene) > 36
    assert all(p.planes() is not None for p in pictures)  # 4:2:0 planes, copied downstream
    assert all(np.array_equal(p.fresh_rgb(), f) for p, f in zip(pictures, frames, strict=True))


def test_a_seek_shows_the_same_sdr_pictures(tmp_path: Path) -> None:
    clip = hdr_variant(FACE, tmp_path / "hlg.mp4", "hlg", 60)
    with VideoReader(clip) as reader:
        frames = list(reader)
    with SeekingSource(clip, 25.0) as source:
        for index in (50, 51, 5):
            assert np.array_equal(source.get(index), frames[index])


def test_a_phone_held_upright(tmp_path: Path) -> None:
    clip = hdr_variant(FACE, tmp_path / "portrait.mp4", "hlg", 10, rotation=90)
    video = probe(clip).video
    assert (video.width, video.height, video.rotation) == (360, 640, 90)
    upright = [np.rot90(frame) for frame in _decoded(FACE, 10)]
    with VideoReader(clip) as reader:
        assert _mean_psnr(list(reader), upright) > 36


def test_ten_bit_422_prores_hlg(tmp_path: Path) -> None:
    clip = hdr_variant(FACE, tmp_path / "hlg.mov", "hlg", 10, "prores_ks", "yuv422p10le")
    with VideoReader(clip) as reader:
        assert _mean_psnr(list(reader), _decoded(FACE, 10)) > 36


def test_roll_off_keeps_what_sdr_can_show_and_rolls_highlights_to_white() -> None:
    levels = np.linspace(0, 50, 20001)
    mapped = hdr.roll_off(levels)
    below = levels <= hdr.KNEE
    assert np.array_equal(mapped[below], levels[below])
    assert np.all(np.diff(mapped) >= 0) and mapped.max() <= 1.0
    slope = np.diff(mapped) / np.diff(levels)
    assert np.abs(np.diff(slope)).max() < 0.02  # no kink at the knee (a visible contour)
    assert 0.88 < float(hdr.roll_off(np.array(1.0))) < 0.95  # reference white: nearly white
    assert float(hdr.roll_off(np.array(4.93))) > 0.999  # an HLG display's peak: white


def test_colours_outside_bt709_keep_their_hue() -> None:
    light = np.array([[0.0, 0.3, 0.0], [0.3, 0.0, 0.0], [0.0, 0.0, 0.3]])  # BT.2020 primaries
    primaries = np.clip(light, 0, 1)
    for transfer in (hdr.HLG, hdr.PQ):
        sdr = hdr.to_sdr(primaries, transfer)
        assert np.all((sdr >= 0) & (sdr <= 1))
        assert list(sdr.argmax(axis=1)) == [1, 0, 2]  # green stays green, red red, blue blue


@pytest.mark.parametrize("transfer", [hdr.HLG, hdr.PQ])
def test_the_table_follows_the_formula(tmp_path: Path, transfer: int) -> None:
    name = {hdr.HLG: "hlg", hdr.PQ: "pq"}[transfer]
    clip = hdr_variant(FACE, tmp_path / f"{name}.mp4", name, 3)
    mapper = hdr.ToneMapper(transfer)
    with av.open(str(clip)) as container:
        for frame in container.decode(video=0):
            signal = frame.to_ndarray(format="rgb48le") / 65535.0
            exact = hdr.to_sdr(signal, transfer) @ np.array([0.2126, 0.7152, 0.0722])
            out = mapper(frame)
            assert (out.format.name, int(out.colorspace), int(out.color_range)) == ("yuv420p", 1, 1)
            luma = out.to_ndarray()[: out.height].astype(float)
            error = np.abs(luma - (16 + 219 * exact))
            assert error.mean() < 0.8 and np.percentile(error, 99.9) < 4


def test_an_hdr_source_is_lip_synced_into_sdr(tmp_path: Path) -> None:
    clip = hdr_variant(GRID, tmp_path / "hlg.mp4", "hlg", 50)
    out = tmp_path / "out.mp4"
    generate(GenerateRequest(clip, GRID, out, sync_mode="cut_off"))
    with av.open(str(out)) as container:
        ctx = container.streams.video[0].codec_context
        assert ctx.pix_fmt == "yuv420p"
        assert (ctx.colorspace, ctx.color_primaries, ctx.color_trc) == (1, 1, 1)
    shown = _decoded(out, 50)
    scene = _decoded(GRID, 50)
    # Above the mouth: untouched but for the tone-mapping and three encoders. GRID's backdrop
    # is near-white cyan, which the roll-off darkens (35 dB with no encoder at all); the HDR
    # planes shown as they are give 15.5 dB.
    upper = slice(0, 130)
    assert _mean_psnr([f[upper] for f in shown], [f[upper] for f in scene]) > 27
    lower = (slice(180, 240), slice(140, 220))
    assert (
        max(
            np.abs(a[lower].astype(int) - b[lower]).mean()
            for a, b in zip(shown, scene, strict=True)
        )
        > 3
    )


def test_the_table_file_is_shared_and_mended_when_damaged() -> None:
    path = hdr._write_table(hdr.HLG)
    assert path == hdr._write_table(hdr.HLG) != hdr._write_table(hdr.PQ)
    text = path.read_text()
    path.write_text(text[: len(text) // 2])  # a disk that filled up, an editor, ...
    assert hdr._write_table(hdr.HLG) == path and path.read_text() == text
