"""Audio as one mono float32 array: the form both the lip model and the encoder want.

Every container FFmpeg reads works, including the audio track of a video. Channels are averaged
to mono here (FFmpeg's own downmix adds +3 dB when channels agree, clipping loud speech); FFmpeg's
resampler converts the rate. Sample counts follow
``round(seconds * sample_rate)`` everywhere so that durations derived from frame counts map
onto whole samples the same way in every module.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from openlipsync.engine.errors import AudioMissing, InputTooLong, MediaUnreadable
from openlipsync.media.probe import open_container, probe, round_half_up

MAX_DECODE_SECONDS = 3 * 3600.0  # the engine's own ceiling (GenerateRequest.max_seconds)


@dataclass
class AudioClip:
    samples: np.ndarray  # float32 mono in [-1, 1]
    sample_rate: int

    @property
    def duration(self) -> float:
        return len(self.samples) / self.sample_rate

    def _index(self, seconds: float) -> int:
        return round_half_up(seconds * self.sample_rate)

    def slice(self, start_s: float, end_s: float) -> AudioClip:
        """Samples in [start_s, end_s), clamped to the clip (never padded)."""
        start = min(max(self._index(start_s), 0), len(self.samples))
        end = min(max(self._index(end_s), start), len(self.samples))
        return AudioClip(self.samples[start:end].copy(), self.sample_rate)

    def padded_to(self, seconds: float) -> AudioClip:
        """Exactly round(seconds * sample_rate) samples: cut, or extended with silence."""
        count = max(0, self._index(seconds))
        if count <= len(self.samples):
            return AudioClip(self.samples[:count].copy(), self.sample_rate)
        out = np.zeros(count, dtype=np.float32)
        out[: len(self.samples)] = self.samples
        return AudioClip(out, self.sample_rate)

    @classmethod
    def silence(cls, seconds: float, sample_rate: int = 16000) -> AudioClip:
        return cls(np.zeros(round_half_up(seconds * sample_rate), np.float32), sample_rate)


def load_audio(
    path: str | Path, sample_rate: int = 16000, max_seconds: float = MAX_DECODE_SECONDS
) -> AudioClip:
    """Decode the first audio stream of `path` to mono float32 at `sample_rate`.

    The declared length is checked before decoding: a few kilobytes of 1 Hz PCM claim hours,
    and resampling them to 48 kHz would allocate gigabytes before any later check ran.
    """
    path = Path(path)
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    info = probe(path).audio  # also rejects truncated and non-media files
    if info is None:
        raise AudioMissing(f"{path.name}: no audio stream")
    if info.duration > max_seconds:
        raise InputTooLong(
            f"the input lasts {info.duration:.0f} s; the limit is {max_seconds:.0f} s"
        )
    with open_container(path) as container:
        stream = container.streams.audio[0]
        stream.thread_type = "AUTO"
        # Packed, not planar: PyAV 18 segfaults reading a planar frame of 8 or more channels
        # (a real crash from a 64-channel WAV), and one interleaved plane has no such limit.
        resampler = av.AudioResampler(format="flt", rate=sample_rate)
        chunks: list[np.ndarray] = []
        try:
            for frame in container.decode(stream):
                frame.pts = None  # let the resampler run on sample counts, not jittery stamps
                chunks.extend(_mono(f) for f in resampler.resample(frame))
            chunks.extend(_mono(f) for f in resampler.resample(None))
        except av.error.FFmpegError as exc:
            raise MediaUnreadable(f"{path.name}: audio cannot be decoded ({exc})") from exc
    if not chunks:
        raise AudioMissing(f"{path.name}: audio stream holds no samples")
    samples = np.concatenate(chunks).astype(np.float32, copy=False)
    np.clip(samples, -1.0, 1.0, out=samples)
    return AudioClip(np.ascontiguousarray(samples), sample_rate)


def _mono(frame: av.AudioFrame) -> np.ndarray:
    channels = len(frame.layout.channels)
    interleaved = frame.to_ndarray().reshape(-1, channels)  # (samples, channels) for packed float
    if channels == 1:
        return interleaved[:, 0]
    return interleaved.mean(axis=1, dtype=np.float32)
