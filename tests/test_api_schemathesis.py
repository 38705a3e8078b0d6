"""Property-based fuzzing of every documented operation against the live OpenAPI document.

Bounded (a few examples per operation, SQLite only) so it stays a quick regression net: no 5xx,
only documented status codes and content types, and responses matching their schemas.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis (dev extra) not installed")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from schemathesis import checks  # noqa: E402
from schemathesis.specs.openapi import checks as openapi_checks  # noqa: E402
from test_api_support import LiveServer, settings_for, start_server, stop_server  # noqa: E402

MAX_EXAMPLES = int(os.environ.get("OPENLIPSYNC_FUZZ_EXAMPLES", "8"))  # raise for a deep run
CHECKS = [
    checks.not_a_server_error,
    openapi_checks.status_code_conformance,
    openapi_checks.content_type_conformance,
    openapi_checks.response_schema_conformance,
]


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server, running = start_server(settings_for(tmp_path_factory.mktemp("fuzz"), ""))
    try:
        yield server
    finally:
        stop_server(running)


@pytest.mark.slow
def test_openapi_operations(fuzz_server: LiveServer) -> None:
    schema = schemathesis.openapi.from_url(f"{fuzz_server.base_url}/openapi.json")
    headers = {"x-api-key": fuzz_server.key}
    failures: dict[str, str] = {}
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        @given(case=operation.as_strategy())
        def run(case) -> None:  # type: ignore[no-untyped-def]
            case.call_and_validate(headers=headers, checks=CHECKS)

        try:
            run()
        except BaseException as exc:  # collect every operation's failure, report them all
            if isinstance(exc, KeyboardInterrupt):
                raise
            failures[operation.label] = str(exc)[:2000]
    assert operations >= 15
    assert not failures, "\n\n".join(f"{label}:\n{text}" for label, text in failures.items())
