"""Tiny but real inputs for the many-generation tests and bench/load.py (no tests here).

A one-second cut of a real GRID talking-head clip at a quarter of its area and one second of
real speech: the engine does all its real work (face tracking, mouth plan, render, encode) on
them, only on fewer pixels and frames, so fifty generations take seconds instead of minutes.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from tests.http_media import serve_directory

MEDIA = Path(__file__).resolve().parents[2] / "shared" / "media"
SOURCE_VIDEO = MEDIA / "video" / "grid_bbaf2n.mpg"
SOURCE_AUDIO = MEDIA / "speech" / "arctic_a0009.wav"
VIDEO_NAME = "tiny.mp4"
AUDIO_NAME = "tiny.wav"


def make_tiny_inputs(folder: Path, seconds: float = 1.0, width: int = 180) -> tuple[Path, Path]:
    """(video, audio) files in `folder`, cut from the shared media."""
    folder.mkdir(parents=True, exist_ok=True)
    video, audio = folder / VIDEO_NAME, folder / AUDIO_NAME
    if not video.exists():
        _cut_video(SOURCE_VIDEO, video, seconds, width)
    if not audio.exists():
        _cut_audio(SOURCE_AUDIO, audio, seconds)
    return video, audio


def _cut_video(source: Path, target: Path, seconds: float, width: int) -> None:
    with av.open(str(source)) as src, av.open(str(target), "w") as out:
        stream = src.streams.video[0]
        rate = Fraction(25, 1)
        height = round(stream.codec_context.height * width / stream.codec_context.width / 2) * 2
        encoded = out.add_stream("libx264", rate=rate)
        encoded.width, encoded.height, encoded.pix_fmt = width, height, "yuv420p"
        for index, frame in enumerate(src.decode(stream)):
            if index >= int(seconds * rate):
                break
            small = frame.reformat(width=width, height=height, format="yuv420p")
            small.pts, small.time_base = index, 1 / rate
            for packet in encoded.encode(small):
                out.mux(packet)
        for packet in encoded.encode():
            out.mux(packet)


def _cut_audio(source: Path, target: Path, seconds: float) -> None:
    with av.open(str(source)) as src:
        stream = src.streams.audio[0]
        rate = stream.codec_context.sample_rate
        chunks = [
            frame.to_ndarray().reshape(-1) for frame in src.decode(stream) if frame is not None
        ]
    samples = np.concatenate(chunks)[: int(seconds * rate)]
    if samples.dtype != np.int16:
        samples = (np.clip(samples, -1.0, 1.0) * 32767).astype(np.int16)
    with av.open(str(target), "w", format="wav") as out:
        encoded = out.add_stream("pcm_s16le", rate=rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = rate
        for packet in encoded.encode(frame):
            out.mux(packet)
        for packet in encoded.encode():
            out.mux(packet)


file_server = serve_directory  # `folder` over real HTTP on loopback (workers fetch by URL)
