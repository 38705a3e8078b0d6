"""Builders for the media variants the media tests decode (all made from real recordings)."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def transcode(
    src: Path,
    dst: Path,
    vcodec: str | None,
    acodec: str | None,
    voptions: dict[str, str] | None = None,
    pix_fmt: str = "yuv420p",
    rotation: int = 0,
    container_format: str | None = None,
) -> Path:
    """Re-encode `src` into `dst` with PyAV (no ffmpeg binary on the machine)."""
    with av.open(str(src)) as inp, av.open(str(dst), "w", format=container_format) as out:
        vin = inp.streams.video[0] if vcodec and inp.streams.video else None
        ain = inp.streams.audio[0] if acodec and inp.streams.audio else None
        vout = aout = None
        if vin is not None:
            vout = out.add_stream(vcodec, rate=vin.average_rate or 25)
            vout.width, vout.height, vout.pix_fmt = vin.width, vin.height, pix_fmt
            vout.options = voptions or {}
            if rotation:
                vout.set_display_rotation(rotation)
        if ain is not None:
            rate = 48000 if acodec in ("libopus", "opus") else ain.codec_context.sample_rate
            aout = out.add_stream(acodec, rate=rate)
            if acodec == "libmp3lame":
                aout.layout = "stereo"
        resampler = None
        if aout is not None:
            fmt = aout.codec_context.codec.audio_formats[0].name
            resampler = av.AudioResampler(format=fmt, layout=aout.layout, rate=aout.rate)
        streams = [s for s in (vin, ain) if s is not None]
        shown = 0
        for frame in inp.decode(*streams):
            if isinstance(frame, av.VideoFrame) and vout is not None:
                frame = frame.reformat(format=pix_fmt)
                frame.pts, frame.time_base = shown, 1 / vout.codec_context.framerate
                shown += 1
                for packet in vout.encode(frame):
                    out.mux(packet)
            elif isinstance(frame, av.AudioFrame) and aout is not None and resampler:
                frame.pts = None
                for part in resampler.resample(frame):
                    for packet in aout.encode(part):
                        out.mux(packet)
        for stream in (vout, aout):
            if stream is not None:
                for packet in stream.encode(None):
                    out.mux(packet)
    return dst


def write_vfr(dst: Path, starts_ms: list[int], size: tuple[int, int] = (64, 48)) -> Path:
    """A lossless H.264 MP4 whose frame k is gray level 10 + 4k, shown at starts_ms[k]."""
    width, height = size
    with av.open(str(dst), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        stream.options = {"qp": "0", "preset": "ultrafast"}
        for k, start in enumerate(starts_ms):
            rgb = np.full((height, width, 3), 10 + 4 * k, np.uint8)
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
            frame.pts, frame.time_base = start, Fraction(1, 1000)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return dst


def write_frames(
    dst: Path,
    frames: Iterable[np.ndarray],
    options: dict[str, str] | None = None,
    configure: Callable[[av.video.stream.VideoStream], None] | None = None,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
) -> Path:
    """RGB (or RGBA) frames, all one size, as a video at 25 fps: H.264 4:2:0 by default (x264
    `options`, crf 12 by default: the tests' clips spliced or composed from real footage), or
    `codec` in `pix_fmt` (an alpha channel's ProRes 4444 or VP9); `configure` sets the stream
    up further (pixel aspect, rotation) first."""
    with av.open(str(dst), "w") as out:
        stream = None
        for index, frame in enumerate(frames):
            if stream is None:
                stream = out.add_stream(codec, rate=25)
                stream.width, stream.height, stream.pix_fmt = (
                    frame.shape[1],
                    frame.shape[0],
                    pix_fmt,
                )
                default = {"crf": "12"} if codec == "libx264" else {}
                stream.options = default if options is None else options
                if configure is not None:
                    configure(stream)
            layout = "rgba" if frame.shape[2] == 4 else "rgb24"
            picture = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format=layout)
            picture.pts, picture.time_base = index, Fraction(1, 25)
            out.mux(stream.encode(picture))
        if stream is not None:
            out.mux(stream.encode(None))
    return dst


def coded_packets(path: Path) -> dict[str, list[tuple[int | None, bytes]]]:
    """Each stream's packets (time, bytes) in order: what a file holds whatever the order
    its muxer laid them out in (the writer's audio thread hands its packets over when it
    gets to them, so two runs may interleave the same packets differently)."""
    with av.open(str(path)) as container:
        packets: dict[str, list[tuple[int | None, bytes]]] = {}
        for packet in container.demux():
            if packet.size:
                packets.setdefault(packet.stream.type, []).append((packet.pts, bytes(packet)))
    return packets


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else 10 * np.log10(255.0**2 / mse)


def scaled_copy(
    src: Path,
    dst: Path,
    size: tuple[int, int],
    count: int,
    options: dict[str, str],
    configure: Callable[[av.video.stream.VideoStream], None] | None = None,
) -> Path:
    """The first `count` frames of `src` scaled to `size`, as H.264 4:2:0 at 25 fps with x264
    `options`; `configure` sets the stream up further (colour tags, pixel aspect) first."""
    width, height = size
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = options
        if configure is not None:
            configure(stream)
        for index, frame in enumerate(inp.decode(video=0)):
            if index == count:
                break
            scaled = frame.reformat(width=width, height=height, format="yuv420p")
            scaled.pts, scaled.time_base = index, Fraction(1, 25)
            for packet in stream.encode(scaled):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return dst


_BT709_TO_BT2020 = np.array(
    [[0.6274, 0.3293, 0.0433], [0.0691, 0.9195, 0.0114], [0.0164, 0.0880, 0.8956]]
)


def hdr_from_sdr(rgb: np.ndarray, transfer: str) -> np.ndarray:
    """An SDR picture (uint8 RGB, BT.709, display gamma 2.4) as the HDR signal a camera would
    give for the same scene (float R'G'B' 0..1, BT.2020), at BT.2408's levels: SDR white is
    HDR reference white, 203 cd/m2. `transfer` is "pq" or "hlg" (1000 cd/m2, system gamma 1.2).
    Written from the standards independently of media/hdr.py, which it is the test of."""
    nits = 203.0 * (rgb.astype(np.float64) / 255) ** 2.4 @ _BT709_TO_BT2020.T
    if transfer == "pq":
        m1, m2, c1, c2, c3 = 0.1593017578125, 78.84375, 0.8359375, 18.8515625, 18.6875
        y = np.clip(nits / 10000, 0, 1) ** m1
        return ((c1 + c2 * y) / (1 + c3 * y)) ** m2
    display = np.maximum(nits / 1000, 0)  # HLG: undo the OOTF, then the OETF
    luminance = display @ np.array([0.2627, 0.6780, 0.0593])
    scene_luminance = np.maximum(luminance, 1e-12) ** (1 / 1.2)
    scene = display / np.maximum(scene_luminance, 1e-12)[..., None] ** 0.2
    a, b, c = 0.17883277, 0.28466892, 0.55991073
    log = a * np.log(np.maximum(12 * scene - b, 1e-12)) + c
    return np.where(scene <= 1 / 12, np.sqrt(3 * scene), log)


def hdr_variant(
    src: Path,
    dst: Path,
    transfer: str,
    count: int,
    codec: str = "libx265",
    pix_fmt: str = "yuv420p10le",
    rotation: int = 0,
) -> Path:
    """The first `count` frames of `src` as a 10-bit HDR clip (`hdr_from_sdr`): HEVC tagged
    BT.2020 / PQ or HLG the way phones tag theirs (or `codec`, e.g. prores_ks), at 25 fps,
    with a display `rotation` as a phone held upright writes it."""
    trc = {"pq": 16, "hlg": 18}[transfer]
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        stream = out.add_stream(codec, rate=25)
        stream.width, stream.height = inp.streams.video[0].width, inp.streams.video[0].height
        stream.pix_fmt = pix_fmt
        name = {"pq": "smpte2084", "hlg": "arib-std-b67"}[transfer]
        if codec == "libx265":
            stream.options = {
                "crf": "12",
                "preset": "ultrafast",
                "x265-params": f"log-level=error:colorprim=bt2020:transfer={name}"
                ":colormatrix=bt2020nc",
            }
        ctx = stream.codec_context
        ctx.color_primaries, ctx.color_trc, ctx.colorspace, ctx.color_range = 9, trc, 9, 1
        if rotation:
            stream.set_display_rotation(rotation)
        for index, frame in enumerate(inp.decode(video=0)):
            if index == count:
                break
            signal = hdr_from_sdr(frame.to_ndarray(format="rgb24"), transfer)
            rgb48 = np.round(np.clip(signal, 0, 1) * 65535).astype(np.uint16)
            picture = av.VideoFrame.from_ndarray(rgb48, format="rgb48le").reformat(
                format=pix_fmt, dst_colorspace="BT2020", dst_color_range="MPEG"
            )
            picture.colorspace, picture.color_range = 9, 1
            picture.color_primaries, picture.color_trc = 9, trc
            picture.pts, picture.time_base = index, Fraction(1, 25)
            out.mux(stream.encode(picture))
        out.mux(stream.encode(None))
    return dst


def heic_photo(src: Path, dst: Path, tile: int = 0) -> Path:
    """`src` (a photo) as HEIC, lossy HEVC like a phone's; `tile` > 0 writes it as a grid of
    tiles that size, as phones do (iPhones: 512)."""
    import pillow_heif
    from PIL import Image

    previous = pillow_heif.options.GRID_TILE_SIZE
    pillow_heif.options.GRID_TILE_SIZE = tile
    try:
        heif = pillow_heif.from_pillow(Image.open(src).convert("RGB"))
        heif.save(dst, quality=90)
    finally:
        pillow_heif.options.GRID_TILE_SIZE = previous
    return dst


def avif_photo(src: Path, dst: Path) -> Path:
    """`src` (a photo; even sides kept) as an AVIF file: one AV1 frame, by FFmpeg's muxer."""
    from PIL import Image

    rgb = np.asarray(Image.open(src).convert("RGB"))
    rgb = np.ascontiguousarray(rgb[: rgb.shape[0] // 2 * 2, : rgb.shape[1] // 2 * 2])
    with av.open(str(dst), "w", format="avif") as out:
        stream = out.add_stream("libsvtav1", rate=1)
        stream.width, stream.height, stream.pix_fmt = rgb.shape[1], rgb.shape[0], "yuv420p"
        stream.options = {"svtav1-params": "log-level=0"}
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
        frame.pts = 0
        out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return dst


def display_p3_profile() -> bytes:
    """An ICC v2 display profile of Display P3 (Apple's colorants, D50-adapted; a 2.2 gamma
    for its tone curves), built by hand: the shared media carries no wide-gamut photo and the
    machine no profile file, and phones embed exactly this kind of profile in their photos."""
    import struct

    def fixed(value: float) -> bytes:
        return struct.pack(">i", round(value * 65536))

    def xyz(x: float, y: float, z: float) -> bytes:
        return b"XYZ \0\0\0\0" + fixed(x) + fixed(y) + fixed(z)

    gamma = b"curv\0\0\0\0" + struct.pack(">IH", 1, round(2.2 * 256)) + b"\0\0"
    text = b"Display P3 (test)"
    desc = (
        b"desc\0\0\0\0"
        + struct.pack(">I", len(text) + 1)
        + text
        + b"\0"
        + bytes(4 + 4 + 2 + 1 + 67)
    )
    tags = [
        (b"desc", desc),
        (b"wtpt", xyz(0.964203, 1.0, 0.824905)),
        (b"rXYZ", xyz(0.515102, 0.241182, -0.001050)),
        (b"gXYZ", xyz(0.291965, 0.692236, 0.041882)),
        (b"bXYZ", xyz(0.157153, 0.066582, 0.784378)),
        (b"rTRC", gamma),
        (b"gTRC", gamma),
        (b"bTRC", gamma),
    ]
    offset, table, data = 128 + 4 + 12 * len(tags), b"", b""
    for signature, body in tags:
        body += bytes(-len(body) % 4)
        table += signature + struct.pack(">II", offset + len(data), len(body))
        data += body
    size = offset + len(data)
    header = (
        struct.pack(">I", size)
        + b"lcms"
        + bytes([2, 0x10, 0, 0])
        + b"mntrRGB XYZ "
        + bytes(12)
        + b"acsp"
        + b"APPL"
        + bytes(4 + 4 + 4 + 8 + 4)
        + fixed(0.9642)
        + fixed(1.0)
        + fixed(0.8249)
        + b"lcms"
        + bytes(16 + 28)
    )
    assert len(header) == 128
    return header + struct.pack(">I", len(tags)) + table + data


def _mux_pictures(out, stream, frames: Iterable[av.VideoFrame], skip: int = 0) -> None:  # type: ignore[no-untyped-def]
    """`frames` from number `skip` on, as yuv420p at 25 fps keeping their numbers, then the
    encoder's tail."""
    for number, frame in enumerate(frames):
        if number < skip:
            continue
        frame = frame.reformat(format="yuv420p")
        frame.pts, frame.time_base = number, Fraction(1, 25)
        for packet in stream.encode(frame):
            out.mux(packet)
    for packet in stream.encode(None):
        out.mux(packet)


def offset_sound(src: Path, dst: Path, delay: float) -> Path:
    """`src` as an MP4 whose sound starts `delay` s after its picture (before it, when
    negative), each stream cut so that a player honouring the start times plays them in sync:
    a broadcast capture's or a browser recording's offset streams."""
    from openlipsync.media.audio import load_audio

    rate = 48000
    sound = load_audio(src, rate).samples
    skip_frames = max(0, round(-delay * 25))  # the picture starts later: its first frames go
    skip_samples = max(0, round(delay * rate))  # the sound starts later: its first samples go
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        video = out.add_stream("libx264", rate=25)
        video.width, video.height, video.pix_fmt = 360, 288, "yuv420p"
        audio = out.add_stream("aac", rate=rate)
        audio.layout = "mono"
        _mux_pictures(out, video, inp.decode(video=0), skip_frames)
        for start in range(skip_samples, sound.size, 1024):
            part = sound[start : start + 1024][None, :].astype(np.float32)
            frame = av.AudioFrame.from_ndarray(part, format="fltp", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = rate, start, Fraction(1, rate)
            for packet in audio.encode(frame):
                out.mux(packet)
        for packet in audio.encode(None):
            out.mux(packet)
    return dst


def with_cover_art(src: Path, dst: Path) -> Path:
    """`src`'s sound as an MP3 with an embedded album picture, as music players and podcast
    tools write them: FFmpeg lists the picture as a one-packet video stream (attached_pic)."""
    from openlipsync.media.audio import load_audio

    speech = load_audio(src)
    with av.open(str(dst), "w") as out:
        sound = out.add_stream("libmp3lame", rate=16000, layout="mono")
        cover = out.add_stream("mjpeg")
        cover.width, cover.height, cover.pix_fmt = 64, 64, "yuvj420p"
        cover.disposition = av.stream.Disposition.attached_pic
        picture = av.VideoFrame.from_ndarray(np.full((64, 64, 3), 128, np.uint8), format="rgb24")
        for packet in [*cover.encode(picture.reformat(format="yuvj420p")), *cover.encode(None)]:
            out.mux(packet)
        _mux_mp3_sound(out, sound, speech.samples, 16000)
    return dst


def damaged(
    src: Path, dst: Path, kind: str, count: int = 3, every: bool = False, at: float = 0.5
) -> Path:
    """`src` with the payloads of `count` packets of its `kind` ("audio", "video") stream
    from `at` (a share of its packets: 0 the first) overwritten with noise (all of them with
    `every`), the container intact:
    a scratched disc, a bad sector, a lossy link. The first 8 bytes of each are kept (AVI
    counts its chunk header in the packet's position; other containers lose nothing by it)."""
    data = bytearray(src.read_bytes())
    with av.open(str(src)) as container:
        spans = [
            (packet.pos, packet.size)
            for packet in container.demux()
            if packet.stream.type == kind and packet.size > 16 and (packet.pos or -1) >= 0
        ]
    first = int(len(spans) * at)
    chosen = spans if every else spans[first : first + count]
    noise = np.random.default_rng(7)
    for pos, size in chosen:
        data[pos + 8 : pos + size] = noise.integers(0, 256, size - 8, dtype=np.uint8).tobytes()
    dst.write_bytes(bytes(data))
    return dst


def with_audio_tracks(src: Path, tracks: list[tuple[Path, int]], dst: Path) -> Path:
    """`src`'s picture with several audio tracks, as a film's master or a dub's delivery
    file has them: each (file whose sound it holds, its disposition flags), in that order,
    as 16 kHz mono FLAC in Matroska (or `dst`'s container)."""
    from openlipsync.media.audio import load_audio

    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        video = out.add_stream("libx264", rate=25)
        source = inp.streams.video[0]
        video.width, video.height, video.pix_fmt = source.width, source.height, "yuv420p"
        sounds = []
        for path, disposition in tracks:
            stream = out.add_stream("flac", rate=16000, layout="mono")
            stream.disposition = disposition
            sounds.append((stream, load_audio(path).samples))
        _mux_pictures(out, video, inp.decode(video=0))
        for stream, samples in sounds:
            pcm = (samples * 32767).astype(np.int16)[None, :]
            frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
            frame.sample_rate, frame.pts = 16000, 0
            out.mux([*stream.encode(frame), *stream.encode(None)])
    return dst


def _mux_mp3_sound(out, stream, samples: np.ndarray, rate: int) -> None:  # type: ignore[no-untyped-def]
    """Mono float `samples` through an MP3 `stream`, one MP3 frame (1152 samples) at a time."""
    pcm = (samples * 32767).astype(np.int16)[None, :]
    for start in range(0, pcm.shape[1], 1152):
        part = np.ascontiguousarray(pcm[:, start : start + 1152])
        frame = av.AudioFrame.from_ndarray(part, format="s16", layout="mono")
        frame.sample_rate, frame.pts = rate, start
        for packet in stream.encode(frame):
            out.mux(packet)
    for packet in stream.encode(None):
        out.mux(packet)


class _Pipe(io.RawIOBase):
    """A write-only, unseekable stream: what a muxer writing live sees."""

    def __init__(self) -> None:
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def write(self, chunk) -> int:  # type: ignore[no-untyped-def, override]
        self.data += bytes(chunk)
        return len(chunk)


def recorded_webm(src: Path, dst: Path, picture: bool = True) -> Path:
    """`src` as a browser's MediaRecorder writes it (VP8 + Opus, or Opus alone): streamed, so
    the WebM has no duration in its header and no index, and times in milliseconds."""
    pipe = _Pipe()
    with av.open(str(src)) as inp, av.open(pipe, "w", format="webm") as out:
        sound = out.add_stream("libopus", rate=48000)
        sound.layout = "mono"
        if picture:
            video = out.add_stream("libvpx", rate=25, options={"deadline": "realtime"})
            video.width, video.height, video.pix_fmt = 360, 288, "yuv420p"
            _mux_pictures(out, video, inp.decode(video=0))
            inp.seek(0)
        resampler = av.AudioResampler("s16", "mono", 48000)
        for frame in inp.decode(audio=0):
            for part in resampler.resample(frame):
                part.pts = None
                for packet in sound.encode(part):
                    out.mux(packet)
        for packet in sound.encode(None):
            out.mux(packet)
    dst.write_bytes(bytes(pipe.data))
    return dst


def vbr_mp3(src: Path, dst: Path, vbr_header: bool = True) -> Path:
    """`src`'s sound as a variable-bitrate MP3, with or without the header (Xing) that says how
    long it is: some encoders and streamed rips leave it out."""
    from openlipsync.media.audio import load_audio

    with av.open(str(dst), "w", options={"write_xing": "1" if vbr_header else "0"}) as out:
        sound = out.add_stream("libmp3lame", rate=44100, layout="mono")
        sound.codec_context.qscale = 4  # LAME's -V 4: a bitrate per frame
        _mux_mp3_sound(out, sound, load_audio(src, 44100).samples, 44100)
    return dst


def camera_y4m(src: Path, dst: Path) -> Path:
    """`src`'s pictures as raw Y4M (360 x 288, 25 fps), what Chromium's fake camera shows."""
    with av.open(str(src)) as inp, av.open(str(dst), "w", format="yuv4mpegpipe") as out:
        stream = out.add_stream("rawvideo", rate=25)
        stream.width, stream.height, stream.pix_fmt = 360, 288, "yuv420p"
        _mux_pictures(out, stream, inp.decode(video=0))
    return dst


def with_sound_gap(src: Path, dst: Path, codec: str, at: float, gap: float) -> Path:
    """`src`'s sound (48 kHz mono) encoded with `codec` into `dst`, its packets from `at`
    seconds on stamped `gap` seconds later: a recording that dropped sound there (a capture
    card's or a screen recorder's hiccup), as its container keeps it."""
    from openlipsync.media.audio import load_audio

    samples = load_audio(src, 48_000).samples
    with av.open(str(dst), "w") as out:
        stream = out.add_stream(codec, rate=48_000, layout="mono")
        size = 960 if codec == "libopus" else 1024
        frames = []
        for start in range(0, len(samples) - size, size):
            frame = av.AudioFrame.from_ndarray(
                samples[None, start : start + size], format="flt", layout="mono"
            )
            frame.sample_rate, frame.pts = 48_000, start
            frame.time_base = Fraction(1, 48_000)
            frames.append(frame)
        for frame in [*frames, None]:
            for packet in stream.encode(frame):
                if frame is None or packet.pts * packet.time_base >= at:
                    shift = round(gap / packet.time_base)
                    packet.pts, packet.dts = packet.pts + shift, packet.dts + shift
                out.mux(packet)
    return dst
