"""Phone photos in HEIF files (HEIC, AVIF) are photos: one upright picture, the whole of it.

FFmpeg reads these files as MP4: a HEIC photo came out as a 1 fps video whose mouth moved once
a second, and a phone's photo, a grid of 512-pixel tiles, as its top-left tile.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from openlipsync.api.probe import NotMediaError
from openlipsync.api.probe import probe as api_probe
from openlipsync.engine import EngineError, GenerateRequest, generate
from openlipsync.engine.errors import MediaUnreadable, UnsupportedSize
from openlipsync.media.heif import photo_kind
from openlipsync.media.probe import probe
from openlipsync.media.video import VideoReader
from tests.conftest import media_path
from tests.media_helpers import avif_photo, heic_photo, psnr

PHOTO = media_path("photo/obama.jpg")  # 910x1137: odd, and not a multiple of any tile
SPEECH = media_path("speech/arctic_a0009.wav")


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("heif")
    return {
        "tiled.heic": heic_photo(PHOTO, folder / "tiled.heic", tile=512),
        "plain.heic": heic_photo(PHOTO, folder / "plain.heic"),
        "photo.avif": avif_photo(PHOTO, folder / "photo.avif"),
    }


def _original(size: tuple[int, int]) -> np.ndarray:
    width, height = size
    return np.asarray(Image.open(PHOTO).convert("RGB"))[:height, :width]


def test_ffmpeg_alone_sees_a_phone_photo_as_one_tile(photos: dict[str, Path]) -> None:
    with av.open(str(photos["tiled.heic"])) as container:
        sizes = {(s.codec_context.width, s.codec_context.height) for s in container.streams.video}
    assert sizes == {(512, 512)}  # why media/heif.py reads HEIC with libheif


@pytest.mark.parametrize("name", ["tiled.heic", "plain.heic", "photo.avif"])
def test_a_heif_photo_is_one_whole_picture(photos: dict[str, Path], name: str) -> None:
    assert photo_kind(photos[name]) == name.rsplit(".", 1)[1].replace("heic", "heif")
    video = probe(photos[name]).video
    expected = (910, 1136) if name.endswith("avif") else (910, 1137)
    assert video is not None and video.is_still
    assert (video.width, video.height, video.fps, video.frame_count) == (*expected, 25.0, 1)
    with VideoReader(photos[name], fps=25.0) as reader:
        (frame,) = list(reader)
    assert psnr(frame, _original(expected)) > 33


def test_a_phone_photo_is_lip_synced_at_25_fps(photos: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    result = generate(GenerateRequest(photos["tiled.heic"], SPEECH, out, model="sync-3"))
    video = probe(out).video
    assert video is not None and (video.width, video.fps) == (910, 25.0)
    assert result.frame_count == video.frame_count > 25 * 2


def test_the_api_files_heif_photos_as_images(photos: dict[str, Path]) -> None:
    heic, avif = api_probe(photos["tiled.heic"]), api_probe(photos["photo.avif"])
    assert (heic.kind, heic.container, heic.width, heic.height) == ("IMAGE", "heic", 910, 1137)
    assert (avif.kind, avif.container, avif.width, avif.height) == ("IMAGE", "avif", 910, 1136)
    assert heic.duration is None and avif.duration is None


def test_broken_and_hostile_heif_files_fail_cleanly(
    photos: dict[str, Path], tmp_path: Path
) -> None:
    data = photos["tiled.heic"].read_bytes()
    fake = tmp_path / "fake.heic"
    fake.write_bytes(data[:32] + b"not a photo at all " * 100)
    cut = tmp_path / "cut.heic"
    cut.write_bytes(data[: len(data) // 2])
    for broken in (fake, cut):
        with pytest.raises(MediaUnreadable):
            probe(broken)
            with VideoReader(broken) as reader:
                list(reader)
        with pytest.raises(NotMediaError):
            api_probe(broken)
    wide = tmp_path / "wide.heic"
    Image.fromarray(np.zeros((64, 8200, 3), np.uint8)).save(tmp_path / "wide.png")
    heic_photo(tmp_path / "wide.png", wide, tile=512)  # x265 alone makes no picture this wide
    with pytest.raises(UnsupportedSize):
        probe(wide)  # from the headers, before anything is decoded
    out = tmp_path / "out.mp4"
    with pytest.raises(EngineError) as failed:
        generate(GenerateRequest(fake, SPEECH, out, model="sync-3"))
    assert failed.value.code == "generation_media_unreadable" and not out.exists()
