"""A phone's photo in Display P3 is shown in the output as the phone shows it.

Phones embed an ICC profile in their photos (HEIC and JPEG); its numbers read as sRGB, as
FFmpeg and libheif hand them over, made reds, lips and skin duller (media/icc.py). These
tests tag the shared portrait's pixels as Display P3 with a profile built by hand, and compare
with LittleCMS's own conversion of the same numbers.
"""

from __future__ import annotations

import io
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image, ImageCms

from openlipsync.engine import GenerateRequest, generate
from openlipsync.media.video import VideoReader
from tests.conftest import media_path
from tests.media_helpers import display_p3_profile, heic_photo

PHOTO = media_path("photo/obama.jpg")  # carries an sRGB profile (HP's): nothing to convert
P3 = display_p3_profile()


def _frame(path: Path) -> np.ndarray:
    with VideoReader(path) as reader:
        (frame,) = list(reader)
    return frame.astype(int)


def _as_srgb(rgb: np.ndarray) -> np.ndarray:
    """LittleCMS's conversion of P3 numbers, the reference."""
    source = ImageCms.ImageCmsProfile(io.BytesIO(P3))
    srgb = ImageCms.createProfile("sRGB")
    image = ImageCms.profileToProfile(Image.fromarray(rgb.astype(np.uint8)), source, srgb)
    return np.asarray(image).astype(int)


@pytest.fixture(scope="module")
def tagged(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The portrait's pixels, untagged and tagged Display P3, as PNG, JPEG and HEIC."""
    folder = tmp_path_factory.mktemp("p3")
    pixels = Image.open(PHOTO).convert("RGB")
    files = {"plain.png": folder / "plain.png", "p3.png": folder / "p3.png"}
    pixels.save(files["plain.png"])
    pixels.save(files["p3.png"], icc_profile=P3)
    files["p3.jpg"] = folder / "p3.jpg"
    pixels.save(files["p3.jpg"], quality=95, icc_profile=P3)
    files["plain.jpg"] = folder / "plain.jpg"
    pixels.save(files["plain.jpg"], quality=95)
    files["p3.heic"] = heic_photo(files["p3.png"], folder / "p3.heic", tile=512)
    return files


def test_an_srgb_profile_changes_nothing() -> None:
    assert ImageCms.getProfileDescription(
        ImageCms.ImageCmsProfile(io.BytesIO(Image.open(PHOTO).info["icc_profile"]))
    ).startswith("sRGB")
    with av.open(str(PHOTO)) as container:
        decoded = next(container.decode(video=0)).to_ndarray(format="rgb24")
    assert np.array_equal(_frame(PHOTO), decoded)


@pytest.mark.parametrize(("name", "plain"), [("p3.png", "plain.png"), ("p3.jpg", "plain.jpg")])
def test_display_p3_photos_are_converted(tagged: dict[str, Path], name: str, plain: str) -> None:
    numbers = _frame(tagged[plain])  # the same numbers without a profile: taken as sRGB
    shown = _frame(tagged[name])
    assert np.abs(shown - _as_srgb(numbers)).max() <= 1
    assert np.abs(shown - numbers).mean() > 3  # P3 numbers are not sRGB's
    red, blue = shown[..., 0] - shown[..., 2], numbers[..., 0] - numbers[..., 2]
    assert red.mean() > blue.mean() + 2  # warm skin gets warmer: the gamut is wider


def test_a_display_p3_heic_is_converted(tagged: dict[str, Path], tmp_path: Path) -> None:
    shown = _frame(tagged["p3.heic"])
    assert np.abs(shown - _as_srgb(_frame(tagged["plain.png"]))).mean() < 2  # HEVC's loss
    out = tmp_path / "out.mp4"
    speech = media_path("speech/arctic_a0009.wav")
    generate(GenerateRequest(tagged["p3.heic"], speech, out, model="sync-3"))
    with VideoReader(out) as reader:
        first = next(iter(reader)).astype(int)
    top = (slice(0, 150), slice(0, 910))  # background above the head
    assert np.abs(first[top].mean((0, 1)) - shown[top].mean((0, 1))).max() < 2.5


def test_a_broken_profile_leaves_the_numbers(tagged: dict[str, Path], tmp_path: Path) -> None:
    broken = tmp_path / "broken.png"
    Image.open(tagged["plain.png"]).save(broken, icc_profile=P3[:200] + bytes(300))
    assert np.array_equal(_frame(broken), _frame(tagged["plain.png"]))
