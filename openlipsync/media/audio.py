"""Audio as float32 arrays: mono for the lip model, mono or stereo for the output.

Every container FFmpeg reads works, including the audio track of a video. For analysis the
channels are averaged to mono here (FFmpeg's own downmix adds +3 dB when channels agree,
clipping loud speech), except that a surround mix's front centre, where films put their
dialogue, is taken alone when it carries sound. The output is stereo when the source has
several channels (a dub's music and effects are mixed wide; 5.1 is folded down by FFmpeg),
mono when it has one or FFmpeg cannot rematrix its layout (a 64-channel WAV). FFmpeg's
resampler converts the rate.
A video's own sound is read against its picture (`start_at`, the first frame's time): in a
broadcast capture, a browser recording or a clip cut without re-encoding, the sound may start
a fraction of a second after or before the picture, and a player keeps them apart by that much.
Sample counts follow ``round(seconds * sample_rate)`` everywhere so that durations derived
from frame counts map onto whole samples the same way in every module.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import BinaryIO

import av
import numpy as np

from openlipsync.engine.errors import AudioMissing, InputTooLong, MediaUnreadable
from openlipsync.media.damage import Lost, decoded
from openlipsync.media.probe import AudioInfo, open_container, probe, round_half_up, sound_stream

INVERTED = 0.5  # correlation of two channels below minus this: one side's polarity is flipped
MAX_DECODE_SECONDS = 3 * 3600.0  # the engine's own ceiling (GenerateRequest.max_seconds)
MAX_GAP_SECONDS = 10.0  # silence stamps may ask for, before or inside the sound; beyond, they lie
MIN_GAP_SECONDS = 0.05  # a later frame stamped further on than this follows dropped sound
NPY_HEADERS = {
    (1, 0): np.lib.format.read_array_header_1_0,
    (2, 0): np.lib.format.read_array_header_2_0,
}


@dataclass
class AudioClip:
    samples: np.ndarray  # float32 in [-1, 1]: (n,) mono, or (n, channels)
    sample_rate: int

    @property
    def duration(self) -> float:
        return len(self.samples) / self.sample_rate

    @property
    def channels(self) -> int:
        return 1 if self.samples.ndim == 1 else int(self.samples.shape[1])

    def _silence(self, count: int) -> np.ndarray:
        return np.zeros((count, *self.samples.shape[1:]), np.float32)

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
        out = self._silence(count)
        out[: len(self.samples)] = self.samples
        return AudioClip(out, self.sample_rate)

    def window(self, start: int, count: int) -> np.ndarray:
        """samples[start:start+count] as a new float32 array, silence beyond the end."""
        out = self._silence(count)
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
        cls,
        path: Path,
        sample_rate: int,
        count: int | None = None,
        offset: int = 0,
        channels: int = 1,
    ) -> FileAudioClip:
        """The first `count` samples (of every channel, interleaved in the file) after `offset`
        (all of them by default)."""
        shape: tuple[int, ...] = () if channels == 1 else (channels,)
        size = (path.stat().st_size - offset) // (4 * channels)
        count = size if count is None else count
        if count == 0:  # np.memmap cannot map nothing
            return cls(np.zeros((0, *shape), np.float32), sample_rate, path, offset)
        samples = np.memmap(path, np.float32, "r", offset=offset, shape=(count, *shape))
        return cls(samples, sample_rate, path, offset)

    @classmethod
    def open_npy(cls, path: Path, sample_rate: int) -> FileAudioClip:
        """The samples of a little-endian float32 .npy file, (n,) or (n, channels) in C order
        (ValueError for anything else)."""
        with open(path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            if version not in NPY_HEADERS:
                raise ValueError(f"{path.name}: unsupported .npy version {version}")
            shape, fortran, dtype = NPY_HEADERS[version](handle)
            offset = handle.tell()
        channels = shape[1] if len(shape) == 2 else 1
        if len(shape) not in (1, 2) or fortran or dtype != np.dtype("<f4") or channels < 1:
            raise ValueError(f"{path.name}: expected float32 samples, got {dtype} {shape}")
        if (path.stat().st_size - offset) // (4 * channels) < shape[0]:
            raise ValueError(f"{path.name}: the file is shorter than its header says")
        return cls.open(path, sample_rate, shape[0], offset, channels)

    def padded_to(self, seconds: float, copy: bool = True) -> AudioClip:
        """Cut by a shorter view of the same file; padded by appending silence to the file
        (never shortened: an earlier, longer view may still map it). `copy` does not apply:
        nothing writes into a file-backed clip's samples."""
        count = max(0, self._index(seconds))
        step = 4 * self.channels  # bytes per sample of every channel
        if count > (self.path.stat().st_size - self.offset) // step:
            with open(self.path, "r+b") as handle:
                handle.truncate(self.offset + count * step)  # the new tail reads as zeros
        return FileAudioClip.open(self.path, self.sample_rate, count, self.offset, self.channels)

    def window(self, start: int, count: int) -> np.ndarray:
        out = self._silence(count)
        stop = min(start + count, len(self.samples))
        if stop > start:
            step = 4 * self.channels
            with open(self.path, "rb") as handle:
                handle.seek(self.offset + start * step)
                read = np.frombuffer(handle.read((stop - start) * step), np.float32)
                out[: stop - start] = read.reshape(out[: stop - start].shape)
        return out


def load_audio(
    path: str | Path, sample_rate: int = 16000, max_seconds: float = MAX_DECODE_SECONDS
) -> AudioClip:
    """Decode the played audio track of `path` (media.probe.sound_stream) to mono float32 at
    `sample_rate`.

    The declared length is checked before decoding: a few kilobytes of 1 Hz PCM claim hours,
    and resampling them to 48 kHz would allocate gigabytes before any later check ran.
    """
    path = Path(path)
    chunks = list(_decoded(path, _audio_of(path, max_seconds), sample_rate))
    samples = np.concatenate(chunks).astype(np.float32, copy=False)
    if samples.ndim == 2:  # [front centre, mean] of a surround mix: see _mono
        centre, mean = samples[:, 0], samples[:, 1]
        samples = centre if _dialogue(centre @ centre, mean @ mean) else mean
    np.clip(samples, -1.0, 1.0, out=samples)
    return AudioClip(np.ascontiguousarray(samples), sample_rate)


def load_audio_to_file(
    path: str | Path,
    dest: Path,
    sample_rate: int,
    max_seconds: float = MAX_DECODE_SECONDS,
    stereo: bool = False,
    start_at: float | None = None,
) -> FileAudioClip:
    """load_audio's samples, written to `dest` as they are decoded instead of held in memory.

    With `stereo`, a source of several channels comes out stereo (interleaved in the file):
    FFmpeg's downmix puts a 5.1 mix's centre dialogue on both sides at -3 dB, where the mean
    of six channels left it at a sixth. A layout FFmpeg cannot rematrix falls back to mono.
    With `start_at` (a video's first frame's time, for its own sound), the first sample is the
    sound at that time: silence where the sound starts later, none of what came before.
    """
    path = Path(path)
    info = _audio_of(path, max_seconds)
    if stereo and info.channels >= 2:
        try:
            return _write(path, info, dest, sample_rate, 2, start_at)
        except MediaUnreadable:
            if info.channels == 2:
                raise
    return _write(path, info, dest, sample_rate, 1, start_at)


def _write(
    path: Path,
    info: AudioInfo,
    dest: Path,
    sample_rate: int,
    channels: int,
    start_at: float | None,
) -> FileAudioClip:
    centre = dest.with_name(dest.name + ".centre")  # a surround mix's front centre (_mono)
    energy = np.zeros(2)  # of the centre, of the mean
    try:
        with open(dest, "wb") as out, ExitStack() as files:
            side = None
            for chunk in _decoded(path, info, sample_rate, channels, start_at):
                if channels == 1 and chunk.ndim == 2:
                    if side is None:
                        side = files.enter_context(open(centre, "wb"))
                    energy += (chunk.astype(np.float64) ** 2).sum(axis=0)
                    _append(side, chunk[:, 0])
                    chunk = chunk[:, 1]
                _append(out, chunk)
        if centre.exists() and _dialogue(*energy):
            os.replace(centre, dest)
    finally:
        centre.unlink(missing_ok=True)
    return FileAudioClip.open(dest, sample_rate, channels=channels)


def _append(out: BinaryIO, chunk: np.ndarray) -> None:
    # file.write, not tofile: a full disk is then OSError(ENOSPC), with its message
    out.write(np.clip(chunk, -1.0, 1.0).astype(np.float32, copy=False).tobytes())


def _dialogue(centre_energy: float, mean_energy: float) -> bool:
    """Whether a surround mix's front centre carries its voice: at least as much sound as the
    mean of all its channels (a film's dialogue channel does, several times over; an unused
    centre is next to silent)."""
    return centre_energy >= mean_energy > 0


def _audio_of(path: Path, max_seconds: float) -> AudioInfo:
    """The played audio track's probe, once per load (probing reads every packet)."""
    info = probe(path).audio  # also rejects truncated and non-media files
    if info is None:
        raise AudioMissing(f"{path.name}: no audio stream")
    if info.duration > max_seconds:
        raise InputTooLong(
            f"the input lasts {info.duration:.0f} s; the limit is {max_seconds:.0f} s"
        )
    return info


def _decoded(
    path: Path,
    info: AudioInfo,
    sample_rate: int,
    channels: int = 1,
    start_at: float | None = None,
) -> Iterator[np.ndarray]:
    """Float32 chunks of the played audio track (`info`, its probe) at `sample_rate`, as FFmpeg
    decodes them: mono (n,), or (n, 2) with `channels` 2; from `start_at` when given."""
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    empty = True
    with open_container(path) as container:
        stream = sound_stream(container)
        stream.thread_type = "AUTO"
        # Packed, not planar: PyAV 18 segfaults reading a planar frame of 8 or more channels
        # (a real crash from a 64-channel WAV), and one interleaved plane has no such limit.
        layout = "stereo" if channels == 2 else None
        resampler = av.AudioResampler(format="flt", layout=layout, rate=sample_rate)
        shift: int | None = None if start_at is not None else 0  # samples to add (+) or drop
        clock = _Clock()
        try:
            for frame in chain(decoded(container, stream, path.name), [None]):  # None: flush
                if isinstance(frame, Lost):  # silence in its place keeps the rest in sync
                    clock.lost(frame.seconds)
                    if shift is not None:
                        shift += round_half_up(frame.seconds * sample_rate)
                    continue
                if frame is not None:
                    gap = round_half_up(clock.gap(frame) * sample_rate)
                    if shift is None:
                        shift = _start_gap(frame.time, start_at, sample_rate)
                    shift += gap
                    frame.pts = None  # let the resampler run on sample counts, not jittery stamps
                for resampled in resampler.resample(frame):
                    chunk = _mono(resampled) if channels == 1 else _interleaved(resampled)
                    if shift:
                        chunk, shift = _shifted(chunk, shift)
                    if chunk.size:
                        empty = False
                        yield chunk
        except av.error.FFmpegError as exc:
            raise MediaUnreadable(f"{path.name}: audio cannot be decoded ({exc})") from exc
    if empty:
        raise AudioMissing(f"{path.name}: audio stream holds no samples")


class _Clock:
    """Where the sound's next frame should start (seconds), by the frames and lost packets
    so far: a frame stamped later follows a gap. A recording that dropped sound (a capture
    card's or a screen recorder's hiccup, a lossy link) leaves one, and players play silence
    there; reading the frames back to back brought everything after it forward, the voice
    ahead of its picture (a 1 s gap in a 3 s clip: 3.1 s of sound where players give 4.1)."""

    def __init__(self) -> None:
        self.expected: float | None = None

    def gap(self, frame: av.AudioFrame) -> float:
        """Seconds of silence that belong before `frame`: 0 for the first, for stamps within
        MIN_GAP_SECONDS of the expected (jitter: Matroska rounds to milliseconds), for stamps
        that go back, and for jumps past MAX_GAP_SECONDS (a timestamp reset or wrap,
        not a pause)."""
        length = frame.samples / frame.sample_rate if frame.sample_rate else 0.0
        time = frame.time
        if time is None:  # unstamped: it follows on
            if self.expected is not None:
                self.expected += length
            return 0.0
        gap = 0.0 if self.expected is None else time - self.expected
        self.expected = time + length
        return gap if MIN_GAP_SECONDS < gap <= MAX_GAP_SECONDS else 0.0

    def lost(self, seconds: float) -> None:
        """A refused packet's `seconds` were filled with silence already."""
        if self.expected is not None:
            self.expected += seconds


def _start_gap(first: float | None, start_at: float | None, sample_rate: int) -> int:
    """Samples of silence to put before the sound (its first frame comes after `start_at`),
    or, negative, to drop from it; 0 where a stamp is missing or past belief."""
    if first is None or start_at is None or abs(first - start_at) > MAX_GAP_SECONDS:
        return 0
    return round_half_up((first - start_at) * sample_rate)


def _shifted(chunk: np.ndarray, shift: int) -> tuple[np.ndarray, int]:
    """`chunk` with `shift` samples of silence before it (> 0), or up to -`shift` of its first
    samples dropped (< 0); and what is left of the shift for the next chunk."""
    if shift > 0:
        silence = np.zeros((shift, *chunk.shape[1:]), np.float32)
        return np.concatenate([silence, chunk]), 0
    dropped = min(-shift, chunk.shape[0])
    return chunk[dropped:], shift + dropped


def _interleaved(frame: av.AudioFrame) -> np.ndarray:
    """(samples, channels) of a packed float frame."""
    return frame.to_ndarray().reshape(-1, len(frame.layout.channels))


def _mono(frame: av.AudioFrame) -> np.ndarray:
    """The channels' mean; a stereo pair with one side's polarity inverted (a miswired mic, a
    bad mix: L = -R) would cancel to silence, so there the difference is taken instead. A
    surround mix with a front centre gives (n, 2): the centre and the mean, for the caller to
    choose from once it has heard them all (_dialogue): films put their dialogue in the
    centre, and the mean of six channels is mostly music and effects."""
    interleaved = _interleaved(frame)
    if interleaved.shape[1] == 1:
        return interleaved[:, 0]
    names = [channel.name for channel in frame.layout.channels]
    if len(names) >= 3 and "FC" in names:
        mean = interleaved.mean(axis=1, dtype=np.float32)
        return np.column_stack([interleaved[:, names.index("FC")], mean])
    if interleaved.shape[1] == 2:
        left, right = interleaved[:, 0].astype(np.float64), interleaved[:, 1].astype(np.float64)
        if left @ right < -INVERTED * np.sqrt((left @ left) * (right @ right)):
            return ((left - right) / 2).astype(np.float32)
    return interleaved.mean(axis=1, dtype=np.float32)
