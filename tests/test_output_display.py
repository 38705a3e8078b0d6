"""The output is shown as the source was: in its colours, and at its shape.

Most HD video is tagged BT.709. The engine copies a 4:2:0 source's planes into the output, so
the output must carry the source's tags: tagged BT.601 (as every output once was), players
decoded the same YUV values with the other matrix and every colour of the frame moved (GRID's
cyan backdrop by 15 levels of red, 8 of green). PyAV decodes by each file's own tags, as players
do, so comparing decoded RGB is comparing what a viewer sees. Anamorphic video (DV, HDV, DVD:
wide pictures stored in narrow pixels) lost its pixel shape and came out squeezed.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from openlipsync.engine import GenerateRequest, generate
from openlipsync.media.encode import VideoWriter
from openlipsync.media.probe import Colour, probe
from openlipsync.media.video import VideoReader
from tests.conftest import media_path
from tests.media_helpers import psnr, scaled_copy, transcode, write_frames

BT709 = Colour(1, 1, 1)
GRID = media_path("video/grid_bbaf2n.mpg")


def _tagged(
    path: Path,
    colour: Colour | None,
    size: tuple[int, int] = (1280, 720),
    aspect: Fraction | None = None,
) -> Path:
    """GRID's first second at `size`, tagged `colour` (None: untagged) and `aspect`."""

    def tag(stream: av.video.stream.VideoStream) -> None:
        if aspect is not None:
            stream.codec_context.sample_aspect_ratio = aspect
        if colour is not None:
            ctx = stream.codec_context
            ctx.colorspace, ctx.color_primaries, ctx.color_trc = colour

    return scaled_copy(GRID, path, size, 25, {"crf": "12", "preset": "veryfast"}, tag)


def _shown(path: Path) -> tuple[np.ndarray, int]:
    """(first frame as a player shows it, the stream's matrix tag)."""
    with av.open(str(path)) as container:
        frame = next(container.decode(video=0))
        return frame.to_ndarray(format="rgb24").astype(int), int(frame.colorspace)


BACKGROUND, SHIRT = (slice(40, 200), slice(40, 300)), (slice(650, 710), slice(300, 1000))


def test_a_bt709_source_is_lip_synced_in_its_own_colours(tmp_path: Path) -> None:
    source = _tagged(tmp_path / "hd.mp4", BT709)
    assert probe(source).video.colour == BT709
    out = tmp_path / "out.mp4"
    generate(GenerateRequest(source, GRID, out, sync_mode="cut_off"))
    before, _ = _shown(source)
    after, matrix = _shown(out)
    assert matrix == 1
    for region in (BACKGROUND, SHIRT):  # untouched by the mouth: only the encoder differs
        assert np.abs(after[region].mean(axis=(0, 1)) - before[region].mean(axis=(0, 1))).max() < 2


def test_a_ten_bit_422_master_is_lip_synced_in_its_own_colours(tmp_path: Path) -> None:
    """A ProRes master's 10-bit 4:2:2 frames become 8-bit 4:2:0 planes at decoding, in their
    own matrix, and are copied as an H.264 source's are (media/video.py `_as_420`)."""
    master = transcode(
        _tagged(tmp_path / "hd.mp4", BT709),
        tmp_path / "master.mov",
        "prores_ks",
        None,
        {},
        "yuv422p10le",
    )
    assert probe(master).video.colour == BT709
    with VideoReader(master) as reader:
        assert next(reader.pictures()).planes() is not None
    out = tmp_path / "out.mp4"
    generate(GenerateRequest(master, GRID, out, sync_mode="cut_off"))
    before, _ = _shown(master)
    after, matrix = _shown(out)
    assert matrix == 1
    for region in (BACKGROUND, SHIRT):
        assert np.abs(after[region].mean(axis=(0, 1)) - before[region].mean(axis=(0, 1))).max() < 2


def test_an_untagged_source_stays_untagged_and_rgb_pictures_say_bt601(tmp_path: Path) -> None:
    """Untagged, players guess by size for the output as they did for the source. Pictures
    given as RGB (a photo, a 10-bit source) are converted with BT.601 and tagged so, keeping
    the source's primaries and transfer."""
    source = _tagged(tmp_path / "untagged.mp4", None)
    assert probe(source).video.colour == Colour()
    for colour, copy, expected in ((Colour(), True, 2), (BT709, False, 6), (Colour(), False, 6)):
        out = tmp_path / f"{expected}-{copy}.mp4"
        with (
            VideoReader(source) as reader,
            VideoWriter(out, 1280, 720, 25, None, colour=colour) as writer,
        ):
            for picture in reader.pictures():
                frame = writer.encodable(picture) if copy else writer.picture(picture.rgb())
                writer.write_picture(frame)
        before, _ = _shown(source)
        after, matrix = _shown(out)
        assert matrix == expected, (colour, copy)
        with av.open(str(out)) as container:
            ctx = container.streams.video[0].codec_context
            assert (ctx.color_primaries, ctx.color_trc) == ((2, 2) if copy else (1, 1))
        if copy or expected == 6:
            for region in (BACKGROUND, SHIRT):
                diff = after[region].mean(axis=(0, 1)) - before[region].mean(axis=(0, 1))
                assert np.abs(diff).max() < 2, (colour, copy, diff)


@pytest.mark.parametrize("tagged", [True, False])
def test_the_chunked_path_tags_its_chunks_like_the_single_pass(
    tmp_path: Path, tagged: bool
) -> None:
    from openlipsync.engine.chunks import chunk_bounds, join, load_plan, render_chunk, write_plan

    wide = Fraction(4, 3)  # 270 stored pixels shown as 360
    source = _tagged(tmp_path / "in.mp4", BT709 if tagged else None, (270, 288), wide)
    request = GenerateRequest(source, GRID, tmp_path / "unused.mp4", sync_mode="cut_off")
    summary = write_plan(request, tmp_path / "plan.npz")
    plan, parts = load_plan(tmp_path / "plan.npz"), []
    for index, (start, stop) in enumerate(chunk_bounds(summary.frame_count, summary.fps, 0.5)):
        parts.append(tmp_path / f"chunk-{index}.mp4")
        render_chunk(plan, source, start, stop, parts[-1])
    joined = join(load_plan(tmp_path / "plan.npz", sound=True), parts, tmp_path / "joined.mp4")
    assert _shown(joined.output)[1] == (1 if tagged else 2)
    assert _aspect(joined.output) == wide


def _aspect(path: Path) -> Fraction | None:
    with av.open(str(path)) as container:
        return container.streams.video[0].sample_aspect_ratio


def test_anamorphic_pixels_keep_their_shape(tmp_path: Path) -> None:
    wide = Fraction(4, 3)
    source = _tagged(tmp_path / "dv.mp4", None, (270, 288), wide)
    assert probe(source).video.aspect == wide
    out = tmp_path / "out.mp4"
    generate(GenerateRequest(source, GRID, out, sync_mode="cut_off"))
    assert _aspect(out) == wide  # shown 360 wide, as the source; unset, 270 (squeezed)
    square = _tagged(tmp_path / "square.mp4", None, (360, 288))
    assert probe(square).video.aspect == 1
    generate(GenerateRequest(square, GRID, tmp_path / "sq.mp4", sync_mode="cut_off"))
    assert _aspect(tmp_path / "sq.mp4") in (None, 1)


def test_a_rotated_anamorphic_source_is_upright_and_keeps_its_shape(tmp_path: Path) -> None:
    """GRID (shown 360x288) stored as a turned camera stores it: on its side, 288 tall, its
    width squeezed into 216 pixels 4/3 as wide as tall. Upright, the picture is 360 pixels
    wide and 216 tall, each 3/4 as wide as tall: shown 360x288 again."""
    with VideoReader(GRID) as reader:
        upright = [frame for _, frame in zip(range(25), reader, strict=False)]
    stored = [
        cv2.resize(np.rot90(f, k=1), (216, 360), interpolation=cv2.INTER_AREA) for f in upright
    ]

    def turned(stream: av.video.stream.VideoStream) -> None:
        stream.codec_context.sample_aspect_ratio = Fraction(4, 3)
        stream.set_display_rotation(-90)

    source = write_frames(tmp_path / "turned.mp4", stored, configure=turned)
    info = probe(source).video
    assert (info.width, info.height, info.aspect) == (360, 216, Fraction(3, 4))
    out = tmp_path / "out.mp4"
    result = generate(GenerateRequest(source, GRID, out, sync_mode="cut_off"))
    assert (result.width, result.height, _aspect(out)) == (360, 216, Fraction(3, 4))


def test_the_segment_output_is_tagged_like_the_main_output(tmp_path: Path) -> None:
    """The segment output's frames are the main writer's (converted once for both)."""
    from openlipsync.engine.request import SegmentAudio

    source = _tagged(tmp_path / "in.mp4", BT709, (360, 288))
    request = GenerateRequest(
        source,
        GRID,
        tmp_path / "out.mp4",
        segments=[SegmentAudio(0.2, 0.8, GRID, 0.2, 0.8)],
        segment_output=tmp_path / "segments.mp4",
    )
    generate(request)
    assert _shown(tmp_path / "out.mp4")[1] == _shown(tmp_path / "segments.mp4")[1] == 1


def test_a_video_its_track_matrix_mirrors_is_lip_synced_as_shown(tmp_path: Path) -> None:
    """A selfie app stores the camera's picture and mirrors it by the track matrix. FFmpeg
    reads that matrix as a half turn: the face was upside down, and no face was found."""
    with VideoReader(GRID) as reader:
        upright = [frame for _, frame in zip(range(25), reader, strict=False)]
    mirror = [-1 << 16, 0, 0, 0, 1 << 16, 0, 360 << 16, 0, 1 << 30]
    source = write_frames(
        tmp_path / "selfie.mp4",
        [np.ascontiguousarray(f[:, ::-1]) for f in upright],
        configure=lambda stream: stream.set_display_matrix(mirror),
    )
    out = tmp_path / "out.mp4"
    result = generate(GenerateRequest(source, GRID, out, sync_mode="cut_off"))
    assert (result.width, result.height, result.frame_count) == (360, 288, 25)
    shown, _ = _shown(out)
    above_the_mouth = (slice(0, 150), slice(None))
    assert psnr(shown[above_the_mouth].astype(np.uint8), upright[0][above_the_mouth]) > 30
