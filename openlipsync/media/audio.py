"""Audio as one mono float32 array: the form both the lip model and the encoder want.

Every container FFmpeg reads works, including the audio track of a video. Channels are averaged
to mono here (FFmpeg's own downmix adds +3 dB when channels agree, clipping loud speech); FFmpeg's
resampler converts the rate. Sample counts follow
``round(seconds * sample_rate)`` everywhere so that durations derived from frame counts map
onto whole samples the same way in every module.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from itertools import chain
from pathlib import Path

import av
import numpy as np

from openlipsync.engine.errors import AudioMissing, InputTooLong, MediaUnreadable
from openlipsync.media.probe import open_container, probe, round_half_up

MAX_DECODE_SECONDS = 3 * 3600.0  # the engine's own ceiling (GenerateRequest.max_seconds)
NPY_HEADERS = {
    (1, 0): np.lib.format.read_array_header_1_0,
    (2, 0): np.lib.format.read_array_header_2_0,
}


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

    def padded_to(self, seconds: float, copy: bool = True) -> AudioClip:
        """Exactly round(seconds * sample_rate) samples: cut, or extended with silence.

        copy=False shares the samples when cutting is enough (for readers: an hour of audio
        is hundreds of MB per copy)."""
        count = max(0, self._index(seconds))
        if count <= len(self.samples):
            kept = self.samples[:count]
            return AudioClip(kept.copy() if copy else kept, self.sample_rate)
        out = np.zeros(count, dtype=np.float32)
        out[: len(self.samples)] = self.samples
        return AudioClip(out, self.sample_rate)

    def window(self, start: int, count: int) -> np.ndarray:
        """samples[start:start+count] as a new float32 array, silence beyond the end."""
        out = np.zeros(count, np.float32)
        available = self.samples[start : start + count]
        out[: len(available)] = available
        return out

    @classmethod
    def silence(cls, seconds: float, sample_rate: int = 16000) -> AudioClip:
        return cls(np.zeros(round_half_up(seconds * sample_rate), np.float32), sample_rate)


@dataclass
class FileAudioClip(AudioClip):
    """An AudioClip whose samples live in a raw float32 file (a scratch file the caller owns).

    Three hours at 48 kHz are 2 GB of float32: the output audio stays on disk, and the encoder
    reads it a window at a time (`window` reads the file, so no page of it stays in memory).
    `samples` is a read-only memory map of the file for anything else that wants the array.
    """

    path: Path = Path()
    offset: int = 0  # bytes before the first sample (a .npy header)

    @classmethod
    def open(
        cls, path: Path, sample_rate: int, count: int | None = None, offset: int = 0
    ) -> FileAudioClip:
        """The first `count` samples of the file after `offset` (all of them by default)."""
        size = (path.stat().st_size - offset) // 4
        count = size if count is None else count
        if count == 0:  # np.memmap cannot map nothing
            return cls(np.zeros(0, np.float32), sample_rate, path, offset)
        samples = np.memmap(path, np.float32, "r", offset=offset, shape=(count,))
        return cls(samples, sample_rate, path, offset)

    @classmethod
    def open_npy(cls, path: Path, sample_rate: int) -> FileAudioClip:
        """The samples of a 1-D little-endian float32 .npy file (ValueError for anything else)."""
        with open(path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            if version not in NPY_HEADERS:
                raise ValueError(f"{path.name}: unsupported .npy version {version}")
            shape, _, dtype = NPY_HEADERS[version](handle)
            offset = handle.tell()
        if len(shape) != 1 or dtype != np.dtype("<f4"):
            raise ValueError(f"{path.name}: expected 1-D float32 samples, got {dtype} {shape}")
        if (path.stat().st_size - offset) // 4 < shape[0]:
            raise ValueError(f"{path.name}: the file is shorter than its header says")
        return cls.open(path, sample_rate, shape[0], offset)

    def padded_to(self, seconds: float, copy: bool = True) -> AudioClip:
        """Cut by a shorter view of the same file; padded by appending silence to the file
        (never shortened: an earlier, longer view may still map it). `copy` does not apply:
        nothing writes into a file-backed clip's samples."""
        count = max(0, self._index(seconds))
        if count > (self.path.stat().st_size - self.offset) // 4:
            with open(self.path, "r+b") as handle:
                handle.truncate(self.offset + count * 4)  # the new tail reads as zeros
        return FileAudioClip.open(self.path, self.sample_rate, count, self.offset)

    def window(self, start: int, count: int) -> np.ndarray:
        out = np.zeros(count, np.float32)
        stop = min(start + count, len(self.samples))
        if stop > start:
            with open(self.path, "rb") as handle:
                handle.seek(self.offset + start * 4)
                out[: stop - start] = np.frombuffer(handle.read((stop - start) * 4), np.float32)
        return out


def load_audio(
    path: str | Path, sample_rate: int = 16000, max_seconds: float = MAX_DECODE_SECONDS
) -> AudioClip:
    """Decode the first audio stream of `path` to mono float32 at `sample_rate`.

    The declared length is checked before decoding: a few kilobytes of 1 Hz PCM claim hours,
    and resampling them to 48 kHz would allocate gigabytes before any later check ran.
    """
    chunks = list(_decoded(Path(path), sample_rate, max_seconds))
    samples = np.concatenate(chunks).astype(np.float32, copy=False)
    np.clip(samples, -1.0, 1.0, out=samples)
    return AudioClip(np.ascontiguousarray(samples), sample_rate)


def load_audio_to_file(
    path: str | Path, dest: Path, sample_rate: int, max_seconds: float = MAX_DECODE_SECONDS
) -> FileAudioClip:
    """load_audio's samples, written to `dest` as they are decoded instead of held in memory."""
    with open(dest, "wb") as out:
        for chunk in _decoded(Path(path), sample_rate, max_seconds):
            # file.write, not tofile: a full disk is then OSError(ENOSPC), with its message
            out.write(np.clip(chunk, -1.0, 1.0).astype(np.float32, copy=False).tobytes())
    return FileAudioClip.open(dest, sample_rate)


def _decoded(path: Path, sample_rate: int, max_seconds: float) -> Iterator[np.ndarray]:
    """Mono float32 chunks of the first audio stream at `sample_rate`, as FFmpeg decodes them."""
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    info = probe(path).audio  # also rejects truncated and non-media files
    if info is None:
        raise AudioMissing(f"{path.name}: no audio stream")
    if info.duration > max_seconds:
        raise InputTooLong(
            f"the input lasts {info.duration:.0f} s; the limit is {max_seconds:.0f} s"
        )
    empty = True
    with open_container(path) as container:
        stream = container.streams.audio[0]
        stream.thread_type = "AUTO"
        # Packed, not planar: PyAV 18 segfaults reading a planar frame of 8 or more channels
        # (a real crash from a 64-channel WAV), and one interleaved plane has no such limit.
        resampler = av.AudioResampler(format="flt", rate=sample_rate)
        try:
            for frame in chain(container.decode(stream), [None]):  # None: flush
                if frame is not None:
                    frame.pts = None  # let the resampler run on sample counts, not jittery stamps
                for resampled in resampler.resample(frame):
                    empty = False
                    yield _mono(resampled)
        except av.error.FFmpegError as exc:
            raise MediaUnreadable(f"{path.name}: audio cannot be decoded ({exc})") from exc
    if empty:
        raise AudioMissing(f"{path.name}: audio stream holds no samples")


def _mono(frame: av.AudioFrame) -> np.ndarray:
    channels = len(frame.layout.channels)
    interleaved = frame.to_ndarray().reshape(-1, channels)  # (samples, channels) for packed float
    if channels == 1:
        return interleaved[:, 0]
    return interleaved.mean(axis=1, dtype=np.float32)
