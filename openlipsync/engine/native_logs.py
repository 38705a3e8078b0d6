"""MediaPipe's start-up chatter kept off the user's terminal.

MediaPipe's C++ (absl logging, TensorFlow Lite) writes INFO and WARNING lines straight to the
process's stderr while a graph is made, warms up and first finds a face: "Created TensorFlow
Lite XNNPACK delegate for CPU", "Feedback manager requires a model with a single signature"
once per model, ... A dozen lines on every `openlipsync generate -q` and in every worker's
log, none of them actionable. No environment variable or Python call reaches that logger
(GLOG_minloglevel, TF_CPP_MIN_LOG_LEVEL, ABSL_MIN_LOG_LEVEL: tried, no effect). So while a
graph starts, file descriptor 2 points at a scratch file; afterwards what was written there
goes back to stderr less those lines. Errors, and anything else written meanwhile (another
thread's log, a progress bar), pass through, a few milliseconds late. If the process dies
inside such a window, what it wrote there is lost: the windows are kept to graph start-up.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

STDERR = 2
CHATTER = re.compile(
    rb"^(INFO: Created TensorFlow Lite XNNPACK delegate"
    rb"|WARNING: All log messages before absl::InitializeLog\(\) is called"
    rb"|[IW]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [\w.]+:\d+\] )"  # absl INFO / WARNING (E, F kept)
)
_LINES = re.compile(rb"(?<=\n)")

_lock = threading.Lock()
_depth = 0
_saved_fd = -1
_scratch: IO[bytes] | None = None
_face_seen = threading.Event()
_primed: list[bool] = []
_primed_lock = threading.Lock()
_started: weakref.WeakSet[Any] = weakref.WeakSet()  # models whose first call is behind them
SETTLE_SECONDS = 0.03  # a start-up window stays open this much longer (see _close_window)
SETTLED_WINDOWS = 8  # ...for the first this many windows of a process
_closed = 0  # start-up windows closed so far


@contextmanager
def chatter_hidden() -> Iterator[None]:
    """Hold back MediaPipe's INFO/WARNING chatter written to fd 2 inside the block. Blocks on
    several threads at once share one window: it closes when the last of them ends."""
    _open_window()
    try:
        _prime()
        yield
    finally:
        _close_window()


def process(model: Any, image: Any) -> Any:
    """`model.process(image)` for a MediaPipe solution, hidden on the model's first call (it
    loads its model and sets up the CPU delegate) and until a face mesh of this process first
    finds a face (MediaPipe warns once per process then); plain after that."""
    if _face_seen.is_set() and model in _started:
        return model.process(image)
    with chatter_hidden():
        result = model.process(image)
    _started.add(model)
    if getattr(result, "multi_face_landmarks", None):
        _face_seen.set()
    return result


def _prime() -> None:
    """Once per process, inside a window: a graph made and run, so that MediaPipe's once-per-
    process lines (TensorFlow Lite's delegate, absl's notice) are written here. Made alone,
    a graph sometimes wrote its delegate line after its window had closed (1 run in 12)."""
    with _primed_lock:
        if _primed:
            return
        import mediapipe as mp
        import numpy as np

        with mp.solutions.face_detection.FaceDetection(model_selection=1) as model:
            model.process(np.zeros((64, 64, 3), np.uint8))
        _primed.append(True)


def without_chatter(data: bytes) -> bytes:
    return b"".join(line for line in _LINES.split(data) if not CHATTER.match(line))


def _open_window() -> None:
    global _depth, _saved_fd, _scratch
    with _lock:
        if _depth == 0:
            _flush_stderr()
            try:
                _saved_fd = os.dup(STDERR)
            except OSError:  # no stderr at all (a service closed it): nothing to keep off it
                _saved_fd = -1
            if _saved_fd >= 0:
                _scratch = _scratch_file()
                if _scratch is None:
                    os.close(_saved_fd)
                    _saved_fd = -1
                else:
                    os.dup2(_scratch.fileno(), STDERR)
        _depth += 1


def _scratch_file() -> IO[bytes] | None:
    """Where the chatter goes meanwhile; None (the chatter is shown) when TMPDIR is unusable:
    the lip-sync must not fail for the sake of quiet."""
    try:
        return tempfile.TemporaryFile()  # noqa: SIM115 - closed by _close_window
    except OSError:
        return None


def _flush_stderr() -> None:
    """Python's own buffered stderr first, so its lines keep their place."""
    if sys.stderr is not None:  # None when the process started without one
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.flush()


def _close_window() -> None:
    """The last block out restores stderr. The first few windows of a process close a little
    late: a graph's threads may still be writing its start-up lines when its call returns
    ("Feedback manager requires a model with a single signature" came through in one of
    three CI runs on a 2-core Xeon)."""
    global _depth, _saved_fd, _scratch, _closed
    with _lock:
        _depth -= 1
        if _depth or _scratch is None:
            return
        if _closed < SETTLED_WINDOWS:
            _closed += 1
            time.sleep(SETTLE_SECONDS)
        _flush_stderr()
        os.dup2(_saved_fd, STDERR)
        os.close(_saved_fd)
        _scratch.seek(0)
        kept = without_chatter(_scratch.read())
        _scratch.close()
        _scratch, _saved_fd = None, -1
        while kept:
            kept = kept[os.write(STDERR, kept) :]
