"""Threads of the engine: spans tracked in parallel come back whole, in order, errors and all."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

from openlipsync.engine.background import MadeAhead, spans_in_parallel


def _tag(items: Iterator[int]) -> Iterator[tuple[int, int, str]]:
    """Each item with the span's first item and the thread that processed it."""
    first = None
    for item in items:
        first = item if first is None else first
        time.sleep(0.001)
        yield item, first, threading.current_thread().name


def test_spans_come_back_in_order_from_both_threads() -> None:
    out = list(spans_in_parallel(iter(range(103)), _tag, span=10, workers=2))
    assert [item for item, _, _ in out] == list(range(103))
    assert all(first == item // 10 * 10 for item, first, _ in out)  # one call per span
    threads = {first: name for _, first, name in out}
    assert threads[0] != threads[10] and threads[0] == threads[20]  # round-robin


def test_a_failing_span_raises_in_the_consumer() -> None:
    def fail_at_25(items: Iterator[int]) -> Iterator[int]:
        for item in items:
            if item == 25:
                raise RuntimeError("span broke")
            yield item

    seen = []
    with pytest.raises(RuntimeError, match="span broke"):
        for item in spans_in_parallel(iter(range(100)), fail_at_25, span=10):
            seen.append(item)
    assert seen == list(range(25))


def test_a_failing_source_raises_and_an_early_stop_ends_the_threads() -> None:
    def source() -> Iterator[int]:
        yield from range(15)
        raise ValueError("unreadable")

    with pytest.raises(ValueError, match="unreadable"):
        list(spans_in_parallel(source(), _tag, span=4))
    before = threading.active_count()
    results = spans_in_parallel(iter(range(10_000)), _tag, span=8)
    assert next(results)[0] == 0
    results.close()
    deadline = time.monotonic() + 5
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert threading.active_count() <= before
    with pytest.raises(ValueError):
        next(spans_in_parallel(iter(range(3)), _tag, span=0))


class _Model:
    """A stand-in for a slow-to-start model: where it was made, and whether it was ended."""

    def __init__(self) -> None:
        time.sleep(0.02)
        self.thread = threading.current_thread().name
        self.ended = False

    def end(self) -> None:
        self.ended = True


def _maker(made: list[_Model]) -> Callable[[], _Model]:
    """Makes _Models, keeping each in `made`."""

    def make() -> _Model:
        made.append(_Model())
        return made[-1]

    return make


def test_made_ahead_hands_out_the_ones_made_on_other_threads_then_new_ones() -> None:
    made: list[_Model] = []
    ahead = MadeAhead(_maker(made), 2, _Model.end)
    first, second, third = ahead.take(), ahead.take(), ahead.take()
    assert first.thread == second.thread == "openlipsync-ahead"
    assert third.thread == threading.current_thread().name  # beyond the count: made here
    assert len({id(first), id(second), id(third)}) == 3
    ahead.close()
    assert not any(model.ended for model in made)  # taken ones belong to the taker


def test_made_ahead_ends_the_ones_never_taken_and_raises_a_failed_make() -> None:
    made: list[_Model] = []
    ahead = MadeAhead(_maker(made), 3, _Model.end)
    kept = ahead.take()
    ahead.close()
    assert len(made) == 3 and [model.ended for model in made if model is not kept] == [True] * 2
    assert not kept.ended

    def broken() -> _Model:
        raise OSError("model file unreadable")

    failing = MadeAhead(broken, 2, _Model.end)
    with pytest.raises(OSError, match="unreadable"):
        failing.take()
    failing.close()  # the other failed one is not ended, and nothing is raised
