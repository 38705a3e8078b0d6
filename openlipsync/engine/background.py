"""Overlap decode, model and encode work on separate threads.

FFmpeg decoding, the MediaPipe graph and x264 encoding all release the GIL, so running them in
a small producer/consumer chain uses both cores of a 2-core machine instead of one. Queues are
bounded, so memory stays a few frames deep whatever the video's length.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Generic, TypeVar

from threadpoolctl import threadpool_limits

T = TypeVar("T")
_DONE = object()


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def prefetch(items: Iterator[T], depth: int = 8) -> Iterator[T]:
    """Yield `items`, produced ahead on a background thread; re-raises the producer's errors."""
    slots: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        slots.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            slots.put(_DONE)
        except BaseException as exc:  # handed to the consumer, which re-raises it
            slots.put(_Failure(exc))
        finally:  # a generator's clean-up (closing a decoder, a model) runs on its own thread
            close = getattr(items, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=produce, name="openlipsync-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = slots.get()
            if item is _DONE:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        thread.join(timeout=5)


class BackgroundSink(Generic[T]):
    """Call `consume(item)` for each submitted item on one background thread, in order."""

    def __init__(self, consume: Callable[[T], None], depth: int = 8) -> None:
        self._consume = consume
        self._slots: queue.Queue[object] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="openlipsync-sink", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._slots.get()
            if item is _DONE:
                return
            if self._error is None:
                try:
                    self._consume(item)  # type: ignore[arg-type]
                except BaseException as exc:  # reported by submit()/close()
                    self._error = exc

    def submit(self, item: T) -> None:
        if self._error is not None:
            raise self._error
        self._slots.put(item)

    def close(self) -> None:
        """Wait for every submitted item; re-raise the first consumer error."""
        self._slots.put(_DONE)
        self._thread.join()
        if self._error is not None:
            raise self._error


@contextmanager
def quiet_blas() -> Iterator[None]:
    """One BLAS thread while the engine runs.

    The engine's linear algebra is on tiny arrays (similarities of a few dozen points, 2x3
    affines): OpenBLAS's worker threads gain nothing there, but after every call they spin
    waiting for the next one. Measured at 720p that spinning cost about 7 ms of CPU per frame,
    taken from the decoder, face mesh and encoder threads that do the work.
    """
    with threadpool_limits(limits=1, user_api="blas"):
        yield
