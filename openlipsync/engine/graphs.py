"""MediaPipe graphs kept warm between the generations of one process.

Making a graph and its first call (loading the model, setting up the CPU delegate) cost the
start of every generation 0.2-0.4 s on 2 cores, before its first frame was tracked: at 720p
about a tenth of a short clip's run. A worker runs one job after another, so it keeps the
graphs the last job handed back. A graph is kept only in the state a new one starts in (the
face mesh forgets the face it followed; the hand model, in still-picture mode, keeps nothing
between pictures: test_tracking checks both against new graphs), and one whose reset fails is
closed rather than kept. Jobs running at once each take their own; at most `keep` wait idle.
A forked child (a prefork worker) never uses its parent's graphs: their threads did not fork.
"""

from __future__ import annotations

import atexit
import os
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class WarmGraphs(Generic[T]):
    """Graphs made by `make`, handed out by `take`, taken back by `give` for the next user."""

    def __init__(
        self,
        make: Callable[[], T],
        reset: Callable[[T], None],
        close: Callable[[T], None],
        keep: int = 2,
    ) -> None:
        self._make, self._reset, self._close, self._keep = make, reset, close, keep
        self._idle: list[T] = []
        self._pid = os.getpid()
        self._lock = threading.Lock()
        atexit.register(self.clear)  # closed before the interpreter tears MediaPipe down

    def take(self) -> T:
        """An idle graph, reset, or a new one (made on the caller's thread)."""
        with self._lock:
            if self._pid != os.getpid():  # a forked child: the graphs' threads stayed behind
                self._idle, self._pid = [], os.getpid()
            if self._idle:
                return self._idle.pop()
        return self._make()

    def give(self, graph: T) -> None:
        """Take `graph` back: reset and kept while fewer than `keep` wait, else closed."""
        try:
            self._reset(graph)
        except Exception:  # a graph that cannot start afresh is not handed out again
            self._close(graph)
            return
        with self._lock:
            if len(self._idle) < self._keep:
                self._idle.append(graph)
                return
        self._close(graph)

    def idle(self) -> int:
        with self._lock:
            return len(self._idle)

    def clear(self) -> None:
        """Close every idle graph (tests; the process's end)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for graph in idle:
            self._close(graph)
