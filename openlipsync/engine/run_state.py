"""Progress, cancellation and per-stage timing of one engine run."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from openlipsync.engine.errors import Cancelled
from openlipsync.engine.request import ProgressCallback

# Share of the progress bar each stage takes (track and render dominate the run time).
STAGE_SPAN = {
    "probe": (0.0, 0.02),
    "track": (0.02, 0.45),
    "plan": (0.45, 0.5),
    "render": (0.5, 1.0),
}


@dataclass
class RunState:
    progress: ProgressCallback | None = None
    should_cancel: Callable[[], bool] | None = None
    stage_seconds: dict[str, float] = field(default_factory=dict)

    def report(self, stage: str, fraction: float) -> None:
        """Tell the caller how far we are; raises Cancelled when it wants us to stop."""
        if self.should_cancel is not None and self.should_cancel():
            raise Cancelled("the generation was cancelled")
        if self.progress is not None:
            start, end = STAGE_SPAN[stage]
            self.progress(stage, start + (end - start) * min(max(fraction, 0.0), 1.0))

    @contextmanager
    def timed(self, name: str) -> Iterator[None]:
        """Add the time spent in the block to `stage_seconds[name]` (decode, track, render...)."""
        began = time.perf_counter()
        try:
            yield
        finally:
            spent = time.perf_counter() - began
            self.stage_seconds[name] = self.stage_seconds.get(name, 0.0) + spent

    def timed_iter(self, name: str, items: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
        """Iterate `items`, charging only the time spent producing them to `name`."""
        while True:
            with self.timed(name):
                item = next(items, None)
            if item is None:
                return
            yield item
