"""Builders for the media variants the media tests decode (all made from real recordings)."""

from __future__ import annotations

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
) -> Path:
    """RGB frames (all one size) as an H.264 4:2:0 MP4 at 25 fps (x264 `options`, crf 12 by
    default: the tests' clips spliced or composed from real footage); `configure` sets the
    stream up further (pixel aspect, rotation) first."""
    with av.open(str(dst), "w") as out:
        stream = None
        for index, frame in enumerate(frames):
            if stream is None:
                stream = out.add_stream("libx264", rate=25)
                stream.width, stream.height, stream.pix_fmt = (
                    frame.shape[1],
                    frame.shape[0],
                    "yuv420p",
                )
                stream.options = {"crf": "12"} if options is None else options
                if configure is not None:
                    configure(stream)
            picture = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            picture.pts, picture.time_base = index, Fraction(1, 25)
            out.mux(stream.encode(picture))
        if stream is not None:
            out.mux(stream.encode(None))
    return dst


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
