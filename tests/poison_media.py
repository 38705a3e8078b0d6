"""Crafted inputs that used to crash or exhaust a worker for real (no tests here).

- `many_channels_wav`: valid 16-bit PCM with 64 channels. PyAV 18 segfaults when it converts a
  planar audio frame of 8 or more channels to numpy, so decoding it killed the engine process
  on every attempt.
- `one_hertz_wav`: a few kilobytes of PCM declaring a 1 Hz sample rate, i.e. hours of sound.
  Resampled to 48 kHz it allocated gigabytes before the length limit was checked.
- `corrupt_mp4`: a real clip with bytes flipped in its video data (read past since the media
  layer skips packets the decoder refuses, media/damage.py).
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np


def pcm_wav(path: Path, samples: np.ndarray, sample_rate: int) -> Path:
    """A canonical 44-byte-header WAV of int16 `samples` shaped (frames, channels)."""
    frames, channels = samples.shape
    data = samples.astype("<i2").tobytes()
    header = b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVEfmt "
    header += struct.pack("<IHHIIHH", 16, 1, channels, sample_rate, sample_rate * 2 * channels,
                          2 * channels, 16)  # fmt: skip
    path.write_bytes(header + b"data" + struct.pack("<I", len(data)) + data)
    return path


def speech_like(seconds: float, sample_rate: int, channels: int) -> np.ndarray:
    """A voiced, syllable-paced tone so the mouth plan has something to follow."""
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t)
    voice = np.sin(2 * np.pi * 160 * t) * envelope * 8000
    return np.repeat(voice[:, None], channels, axis=1)


def many_channels_wav(folder: Path, channels: int = 64) -> Path:
    return pcm_wav(folder / f"ch{channels}.wav", speech_like(1.0, 16000, channels), 16000)


def one_hertz_wav(folder: Path, declared_seconds: int = 20_000) -> Path:
    """`declared_seconds` of 1 Hz mono: 2 bytes per claimed second."""
    noise = np.random.default_rng(0).integers(-1000, 1000, (declared_seconds, 1))
    return pcm_wav(folder / "one_hertz.wav", noise, 1)


def corrupt_mp4(source: Path, folder: Path) -> Path:
    data = bytearray(source.read_bytes())
    for index in range(len(data) // 3, len(data) // 3 + 400, 3):
        data[index] ^= 0xFF
    target = folder / "corrupt.mp4"
    target.write_bytes(bytes(data))
    return target
