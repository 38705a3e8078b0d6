"""MediaPipe's start-up chatter is held back from stderr; everything else still gets there.

Each case runs in a child process: the chatter goes to file descriptor 2 from C++, so only a
process's own stderr shows what a user would see.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from openlipsync.engine.native_logs import without_chatter
from tests.conftest import media_path

GRID = media_path("video/grid_bbaf2n.mpg")


def _stderr(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stderr


FIRST_FACE = f"""
    import av
    frame = next(av.open("{GRID}").decode(video=0)).to_ndarray(format="rgb24")
"""


def test_mediapipe_chatters_when_left_alone() -> None:
    """The premise: a face mesh made and run as MediaPipe's own examples do fills stderr."""
    stderr = _stderr(
        FIRST_FACE
        + """
    import mediapipe as mp
    mesh = mp.solutions.face_mesh.FaceMesh(refine_landmarks=True)
    assert mesh.process(frame).multi_face_landmarks
    """
    )
    assert "Feedback manager requires a model" in stderr
    assert without_chatter(stderr.encode()) == b""  # and all of it is chatter


def test_the_engines_graphs_start_and_find_a_face_in_silence() -> None:
    stderr = _stderr(
        FIRST_FACE
        + """
    from openlipsync.engine.speaker import FaceFinder
    from openlipsync.engine.tracking import FaceTracker, HAND_GRAPHS
    with FaceTracker() as tracker:
        tracker.warm_up()
        assert tracker.process(frame) is not None
    with FaceFinder() as finder:
        assert finder.find(frame)
    HAND_GRAPHS.give(HAND_GRAPHS.take())
    """
    )
    assert stderr == ""


def test_what_is_not_chatter_gets_through_in_order() -> None:
    """Another thread's log line, a Python warning and a native error written while a graph
    starts: delayed to the window's end, never dropped."""
    stderr = _stderr(
        """
    import os, sys, threading, warnings
    from openlipsync.engine.native_logs import chatter_hidden
    inside = threading.Event()
    def other_thread():
        with chatter_hidden():
            inside.set()
            os.write(2, b"I0000 00:00:17.5  42 gl_context.cc:357] GL version: 3.2\\n")
            print("from another thread", file=sys.stderr)
    with chatter_hidden():
        worker = threading.Thread(target=other_thread)
        worker.start()
        inside.wait()
        os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\\n")
        os.write(2, b"E0000 00:00:17.5  42 graph.cc:9] a real error\\n")
        warnings.warn("a Python warning")
        worker.join()
    print("after", file=sys.stderr)
    """
    )
    lines = stderr.splitlines()
    assert [line for line in lines if "GL version" in line or "XNNPACK" in line] == []
    assert any("a real error" in line for line in lines)
    assert any("a Python warning" in line for line in lines)
    assert "from another thread" in lines and lines[-1] == "after"


def test_a_process_without_stderr_tracks_all_the_same() -> None:
    """A service manager may start the worker with file descriptor 2 closed: nothing to hide
    then, and nothing may fail for it (the first version raised EBADF from os.dup)."""
    code = (
        FIRST_FACE
        + """
    from openlipsync.engine.tracking import FaceTracker
    with FaceTracker() as tracker:
        tracker.warm_up()
        assert tracker.process(frame) is not None
    print("tracked")
    """
    )
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        stdout=subprocess.PIPE,
        text=True,
        timeout=120,
        preexec_fn=lambda: os.close(2),
    )
    assert (done.returncode, done.stdout.strip()) == (0, "tracked")


def test_chatter_is_told_from_other_lines() -> None:
    data = (
        b"W0000 00:00:1796655929.453460    8021 inference_feedback_manager.cc:114] Feedback\n"
        b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
        b"F0000 00:00:12.0 1 check.cc:1] Check failed\n"
        b"\rprogress 40%"
    )
    assert without_chatter(data) == b"F0000 00:00:12.0 1 check.cc:1] Check failed\n\rprogress 40%"
