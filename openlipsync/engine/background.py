"""Overlap decode, model and encode work on separate threads.

FFmpeg decoding, the MediaPipe graph and x264 encoding all release the GIL, so running them in
a small producer/consumer chain uses both cores of a 2-core machine instead of one. Queues are
bounded, so memory stays a few frames deep whatever the video's length.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from typing import Generic, TypeVar

import cv2
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
                if not _put_unless_stopped(slots, item, stop):
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
        yield from _drain(slots)
    finally:
        stop.set()
        thread.join(timeout=5)


def _put_unless_stopped(slots: queue.Queue[object], item: object, stop: threading.Event) -> bool:
    """Put `item` into a bounded queue, giving up (False) once the consumer has gone."""
    while not stop.is_set():
        try:
            slots.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


U = TypeVar("U")


def spans_in_parallel(
    items: Iterator[T],
    process: Callable[[Iterator[T]], Iterator[U]],
    span: int,
    workers: int = 2,
) -> Iterator[U]:
    """`process` applied to consecutive spans of `span` items, spans spread over `workers`
    threads round-robin, the results yielded in order.

    For a sequential model whose calls release the GIL (the face mesh): one span's state
    cannot wait for the previous span's, so each span starts afresh, and two threads use
    both cores. At most workers + 1 spans are in flight, so memory stays bounded.
    """
    if span < 1 or workers < 1:
        raise ValueError(f"span and workers must be positive, got {span}, {workers}")
    stop = threading.Event()
    jobs: list[queue.Queue[object]] = [queue.Queue() for _ in range(workers)]
    order: queue.Queue[object] = queue.Queue(maxsize=workers)

    def put_order(item: object) -> bool:
        return _put_unless_stopped(order, item, stop)

    def dispatch() -> None:
        inbox: queue.Queue[object] | None = None
        count = spans = 0
        try:
            for item in items:
                if inbox is None or count == span:
                    if inbox is not None:
                        inbox.put(_DONE)
                    inbox, outbox = queue.Queue(), queue.Queue()
                    if not put_order(outbox):
                        return
                    jobs[spans % workers].put((inbox, outbox))
                    spans += 1
                    count = 0
                inbox.put(item)
                count += 1
                if stop.is_set():
                    return
            put_order(_DONE)
        except BaseException as exc:  # handed to the consumer, which re-raises it
            failed = queue.Queue()
            failed.put(_Failure(exc))
            put_order(failed)
        finally:
            if inbox is not None:
                inbox.put(_DONE)
            for job in jobs:
                job.put(_DONE)
            close = getattr(items, "close", None)
            if close is not None:
                close()

    def work(index: int) -> None:
        while True:
            job = jobs[index].get()
            if job is _DONE:
                return
            inbox, outbox = job  # type: ignore[misc]
            try:
                for result in process(_drain(inbox)):
                    if stop.is_set():
                        break
                    outbox.put(result)
                outbox.put(_DONE)
            except BaseException as exc:
                outbox.put(_Failure(exc))

    threads = [threading.Thread(target=dispatch, name="openlipsync-spans", daemon=True)]
    threads += [
        threading.Thread(target=work, args=(i,), name=f"openlipsync-span{i}", daemon=True)
        for i in range(workers)
    ]
    for thread in threads:
        thread.start()
    try:
        while True:
            outbox = order.get()
            if outbox is _DONE:
                return
            yield from _drain(outbox)  # type: ignore[arg-type]
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=5)


def _drain(slots: queue.Queue[object]) -> Iterator:
    """Items of a queue up to _DONE; a _Failure is raised."""
    while True:
        item = slots.get()
        if item is _DONE:
            return
        if isinstance(item, _Failure):
            raise item.error
        yield item


class MadeAhead(Generic[T]):
    """`count` objects made on threads of their own from now on, handed out in turn by `take`.

    For models whose start-up is slow and whose first user would otherwise wait for it (a
    MediaPipe graph's first call costs 20-30 ms): they are made while the run does other
    work. Beyond `count`, `take` makes one on the spot. `close` ends the ones never taken.
    """

    def __init__(self, make: Callable[[], T], count: int, end: Callable[[T], None]) -> None:
        self._make, self._end = make, end
        self._lock = threading.Lock()
        self._pending: list[Future[T]] = [self._start() for _ in range(count)]

    def _start(self) -> Future[T]:
        future: Future[T] = Future()

        def run() -> None:
            try:
                future.set_result(self._make())
            except BaseException as exc:  # re-raised by take()
                future.set_exception(exc)

        threading.Thread(target=run, name="openlipsync-ahead", daemon=True).start()
        return future

    def take(self) -> T:
        with self._lock:
            future = self._pending.pop(0) if self._pending else None
        return self._make() if future is None else future.result()

    def close(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, []
        for future in pending:
            if future.exception() is None:
                self._end(future.result())


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
    """One BLAS thread and one OpenCV thread per calling thread while the engine runs.

    The engine already runs its stages on threads of its own, and most of its numeric calls
    are small (similarities of a few dozen points, a mouth-sized crop): the libraries' pools
    gain nothing there, but OpenBLAS's workers spin after every call waiting for the next
    one, and OpenCV hands small jobs to a second thread and back. Measured at 720p: about
    7 ms of CPU per frame for OpenBLAS, and lip contrast plus library crops taking twice the
    CPU they take on one thread.
    """
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        with threadpool_limits(limits=1, user_api="blas"):
            yield
    finally:
        cv2.setNumThreads(threads)
