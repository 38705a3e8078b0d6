"""Where a voice speaks in a sound: Silero VAD (MIT, models/LICENSE-silero-vad), whose ONNX
model ships in this package and runs on onnxruntime alone (the silero-vad package would pull
torch). Its per-window speech probability tells a voice from the hiss, hum or music under it,
which levels and spectra alone cannot once that bed rises near the speech.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np

from openlipsync.media.mapped import release

MODEL = Path(__file__).parent / "models" / "silero_vad_16k.onnx"
RATE = 16000
WINDOW = 512  # samples per step at 16 kHz (32 ms): the model's own
CONTEXT = 64  # samples of the previous window the model sees before each one
RELEASE_WINDOWS = 2000  # windows (64 s) read between two releases of a mapped file's pages


@cache
def _session():  # noqa: ANN202 - onnxruntime.InferenceSession
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1  # small steps: a thread pool only hands off
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(str(MODEL), options, providers=["CPUExecutionProvider"])


def speech_probability(samples: np.ndarray) -> np.ndarray:
    """Probability that a voice speaks, per WINDOW of mono float32 16 kHz `samples` (the last
    window zero-padded). One step per window: the model carries a state from each to the next.
    `samples` may be a scratch file (media/mapped.py): it is read a window at a time, never
    copied whole, and its pages let go as it goes."""
    samples = np.asarray(samples).reshape(-1)
    count = -(-samples.size // WINDOW)
    out = np.zeros(count, np.float32)
    session = _session() if count else None
    state = np.zeros((2, 1, 128), np.float32)
    rate = np.array(RATE, np.int64)
    chunk = np.zeros((1, CONTEXT + WINDOW), np.float32)
    for i in range(count):
        chunk[0, :CONTEXT] = chunk[0, -CONTEXT:]  # the previous window's end
        window = samples[i * WINDOW : (i + 1) * WINDOW]
        chunk[0, CONTEXT : CONTEXT + window.size] = window
        chunk[0, CONTEXT + window.size :] = 0.0
        probability, state = session.run(None, {"input": chunk, "state": state, "sr": rate})
        out[i] = probability[0, 0]
        if i % RELEASE_WINDOWS == RELEASE_WINDOWS - 1:
            release(samples)
    return out
