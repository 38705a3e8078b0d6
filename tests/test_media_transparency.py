"""Transparent photos and videos are read over a plain background (media/transparency.py),
not with whatever colour the program that saved them left under their transparent pixels.

Each file is a real picture with a transparent strip over magenta (what shows through when
transparency is ignored) and a half-transparent band; the expectation is computed here from
the file's own pixels, not by the code under test.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from openlipsync.engine import GenerateRequest, generate
from openlipsync.media.video import VideoReader
from tests.conftest import media_path
from tests.media_helpers import psnr, write_frames

MAGENTA = (255, 0, 255)


def cut_out(rgb: np.ndarray) -> np.ndarray:
    """RGBA: the left fifth transparent over magenta, the next tenth half transparent."""
    height, width = rgb.shape[:2]
    rgba = np.dstack([rgb, np.full((height, width), 255, np.uint8)])
    rgba[:, : width // 5, :3] = MAGENTA
    rgba[:, : width // 5, 3] = 0
    rgba[:, width // 5 : 3 * width // 10, 3] = 128
    return rgba


def expected(rgba: np.ndarray, background: float) -> np.ndarray:
    alpha = rgba[..., 3:].astype(np.float64) / 255
    return rgba[..., :3] * alpha + background * (1 - alpha)


def photo() -> np.ndarray:
    return np.asarray(Image.open(media_path("photo/astronaut.png")).convert("RGB"))


def read(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The first frame as the reader's RGB frames and as its Pictures give it."""
    with VideoReader(path) as reader:
        rgb = next(iter(reader))
        picture = next(reader.pictures()).fresh_rgb()
    return rgb, picture


@pytest.mark.parametrize("suffix", ["png", "webp", "heic"])
def test_a_cut_out_photo_is_shown_over_white(tmp_path: Path, suffix: str) -> None:
    rgba = cut_out(photo())
    path = tmp_path / f"avatar.{suffix}"
    if suffix == "heic":
        import pillow_heif

        pillow_heif.from_bytes("RGBA", (rgba.shape[1], rgba.shape[0]), rgba.tobytes()).save(
            path, quality=-1
        )
    else:
        Image.fromarray(rgba).save(path, lossless=True)
    want = expected(rgba, 255)
    for got in read(path):
        assert got.shape == want.shape
        assert np.abs(got[:, :90].astype(float) - want[:, :90]).max() <= 2  # white, not magenta
        assert psnr(got, want.round().astype(np.uint8)) > (30 if suffix == "heic" else 45)


def test_gifs_with_a_transparent_colour(tmp_path: Path) -> None:
    """A GIF that does not move is a photo (over white), one that moves a video (over black)."""
    rgba = cut_out(photo())
    rgba[..., 3] = np.where(rgba[..., 3] == 255, 255, 0)  # a GIF's colours are or are not
    frames = [Image.fromarray(np.roll(rgba, shift, axis=0)) for shift in (0, 8, 16)]
    still, moving = tmp_path / "still.gif", tmp_path / "moving.gif"
    frames[0].save(still)
    frames[0].save(moving, save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert (read(still)[0][:, :100] == 255).all()
    with VideoReader(moving) as reader:
        first = next(iter(reader))
    assert (first[:, :100] == 0).all()


def test_a_prores_4444_video_with_alpha_is_shown_over_black(tmp_path: Path) -> None:
    with VideoReader(media_path("video/grid_bbaf2n.mpg")) as reader:
        frames = [frame for _, frame in zip(range(5), reader, strict=False)]
    rgba = [cut_out(frame) for frame in frames]
    path = write_frames(tmp_path / "keyed.mov", rgba, codec="prores_ks", pix_fmt="yuva444p10le")
    with av.open(str(path)) as container:  # the file's own pixels, as FFmpeg decodes them
        decoded = [frame.to_ndarray(format="rgba") for frame in container.decode(video=0)]
    assert decoded[0][:, :70, 3].max() < 255 and (decoded[0][:, :70, :3] == MAGENTA).any()
    with VideoReader(path) as reader:
        shown = list(reader)
    assert len(shown) == 5
    for got, source, frame in zip(shown, decoded, frames, strict=True):
        want = expected(source, 0)
        assert np.abs(got.astype(float) - want).max() <= 2
        assert (got[:, :70] <= 70).all()  # black, with the encoder's odd half-transparent row
        assert psnr(got[:, 110:], frame[:, 110:]) > 35  # the opaque picture as it was


def test_an_alpha_channel_that_hides_nothing_changes_nothing(tmp_path: Path) -> None:
    with VideoReader(media_path("video/grid_bbaf2n.mpg")) as reader:
        frames = [frame for _, frame in zip(range(3), reader, strict=False)]
    opaque = [np.dstack([f, np.full(f.shape[:2], 255, np.uint8)]) for f in frames]
    lossless = {"lossless": "1"}
    with_alpha, plain = (
        write_frames(tmp_path / name, opaque, lossless, codec="libvpx-vp9", pix_fmt=pix_fmt)
        for name, pix_fmt in (("a.webm", "yuva420p"), ("b.webm", "yuv420p"))
    )
    with VideoReader(with_alpha) as a, VideoReader(plain) as b:
        for x, y in zip(a, b, strict=True):
            assert np.array_equal(x, y)


def test_a_cut_out_photo_lip_synced_keeps_its_white_background(tmp_path: Path) -> None:
    rgba = cut_out(photo())
    path = tmp_path / "avatar.png"
    Image.fromarray(rgba).save(path)
    out = tmp_path / "out.mp4"
    generate(GenerateRequest(path, media_path("speech/arctic_a0009.wav"), out, model="sync-3"))
    with VideoReader(out) as reader:
        for number, frame in enumerate(reader):
            if number % 20 == 0:
                assert frame[:, 5:95].min() >= 245, number  # white after H.264, no magenta
