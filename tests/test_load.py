"""The lean version of bench/load.py: 40 concurrent clients each create one small generation and
poll it, against a real API process and real workers on the embedded SQLite default (the
PostgreSQL + Redis run is bench/load.py's, and tests/test_scale_restarts.py drives 50 clients
there). Fails on any lost, duplicated or unfinished generation and on any 5xx.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.load import LIMITS, run
from tests.tiny_media import SOURCE_VIDEO

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not SOURCE_VIDEO.exists(), reason=f"shared media not found: {SOURCE_VIDEO}"),
]

CLIENTS = 40


def test_forty_concurrent_clients_every_generation_accounted_for(tmp_path: Path) -> None:
    load, problems = run("sqlite", CLIENTS, 8, 2, tmp_path, poll=0.5, timeout=240)
    print(f"\n{load.summary('sqlite')} (limits {LIMITS})")
    assert problems == []
    assert load.count_5xx() == 0
    assert len(load.final) == CLIENTS
    assert load.statuses[201] + load.statuses[200] >= CLIENTS * 2, "creates and polls answered"
