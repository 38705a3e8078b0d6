"""Join video-only H.264 chunk files into one MP4 without re-encoding the picture.

Every chunk was encoded by its own encoder with the same settings, so it starts on a keyframe
and carries the same parameter sets (SPS/PPS): its packets are copied as they are, shifted in
time to where the chunk starts. The audio is encoded once, for the whole clip, and interleaved
with the picture the way `VideoWriter` does, so a player never notices a border.
"""

from __future__ import annotations

import contextlib
from fractions import Fraction
from pathlib import Path

import av

from openlipsync.engine.errors import EngineError
from openlipsync.media.audio import AudioClip
from openlipsync.media.encode import _audio_for_aac, aac_frame, add_aac_stream, frame_rate
from openlipsync.media.probe import round_half_up


class JoinError(EngineError):
    code = "generation_pipeline_failed"


def join_streams(chunks: list[Path], audio: AudioClip | None, fps: float, output: Path) -> int:
    """Write `output` from the chunks in order plus `audio`; returns the frames written."""
    if not chunks:
        raise JoinError("nothing to join: no chunk files")
    rate = frame_rate(fps)
    container = av.open(str(output), "w", options={"movflags": "+faststart"})
    try:
        frames = _copy_chunks(container, chunks, rate, audio)
        container.close()
    except BaseException:
        with contextlib.suppress(av.error.FFmpegError):
            container.close()
        output.unlink(missing_ok=True)
        raise
    return frames


def _copy_chunks(container, chunks: list[Path], rate: Fraction, audio: AudioClip | None) -> int:
    video = None
    sound = _AudioTrack(container, audio) if audio is not None else None
    extradata = None
    frames = 0
    last_dts: Fraction | None = None
    for path in chunks:
        with av.open(str(path)) as chunk:
            if not chunk.streams.video:
                raise JoinError(f"{path.name} has no video stream")
            source = chunk.streams.video[0]
            if video is None:
                video = container.add_stream_from_template(source)
                video.time_base = source.time_base
                extradata = source.codec_context.extradata
                if sound is not None:
                    sound.add()
            elif source.codec_context.extradata != extradata:
                raise JoinError(f"{path.name} was encoded with different settings")
            count = source.frames or 0
            origin = _first_pts(path)
            shift = Fraction(frames) / rate  # seconds: where this chunk starts
            written = 0
            for packet in chunk.demux(source):
                if packet.dts is None or packet.size == 0:
                    continue
                tb = packet.time_base
                pts = (packet.pts - origin) * tb + shift
                dts = (packet.dts - origin) * tb + shift
                if last_dts is not None and dts <= last_dts:
                    raise JoinError(f"{path.name}: decode times overlap the previous chunk")
                last_dts = dts
                packet.pts = round(pts / tb)
                packet.dts = round(dts / tb)
                packet.stream = video
                container.mux(packet)
                written += 1
                if sound is not None:
                    sound.send_until(dts + 1 / rate)
            frames += count or written
    if sound is not None:
        sound.finish(Fraction(frames) / rate)
    return frames


def _first_pts(path: Path) -> int:
    """The smallest presentation time in the chunk's stream: its frame 0."""
    with av.open(str(path)) as chunk:
        stream = chunk.streams.video[0]
        return min((p.pts for p in chunk.demux(stream) if p.pts is not None and p.size), default=0)


class _AudioTrack:
    """The clip's audio as AAC, encoded once and sent along with the picture."""

    def __init__(self, container, audio: AudioClip) -> None:
        self.container = container
        self.clip = _audio_for_aac(audio)
        self.stream = None
        self.sent = 0

    def add(self) -> None:
        self.stream = add_aac_stream(self.container, self.clip)

    def send_until(self, seconds: Fraction, final: bool = False) -> None:
        assert self.stream is not None
        rate = self.clip.sample_rate
        target = round_half_up(float(seconds) * rate)
        size = self.stream.codec_context.frame_size or 1024
        while target - self.sent >= size or (final and target > self.sent):
            count = min(size, target - self.sent)
            frame = aac_frame(self.clip.window(self.sent, count), rate, self.sent)
            for packet in self.stream.encode(frame):
                self.container.mux(packet)
            self.sent += count

    def finish(self, seconds: Fraction) -> None:
        """Cut or pad to exactly the picture's length, then flush the encoder."""
        assert self.stream is not None
        self.send_until(seconds, final=True)
        for packet in self.stream.encode(None):
            self.container.mux(packet)
