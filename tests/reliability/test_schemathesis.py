"""Schema fuzzing with schemathesis: requests generated from the service's own OpenAPI schema (valid
and invalid), against the real server. No 5xx; every answer matches its documented schema and type.

Each operation's requests come from schemathesis' hypothesis strategy (`as_strategy`), driven here
rather than through its pytest plugin, whose fixture loader does not run under pytest 9."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import content_type_conformance, not_a_server_error, response_schema_conformance

from tests.conftest import LiveServer, serve
from tests.reliability.conftest import metric

EXAMPLES = 25  # per operation and mode (valid, invalid)


@pytest.fixture(scope="module")
def live(tiny_repo: Path) -> Iterator[LiveServer]:
    with serve(tiny_repo, max_body_bytes=200_000) as server:
        yield server


def test_the_api_answers_generated_requests_as_documented(live: LiveServer) -> None:
    schema = schemathesis.openapi.from_url(f"{live.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert any(op.path == "/v1/classify" for op in operations) and len(operations) >= 10
    ran: set[tuple[str, str, str]] = set()
    answered = metric(live.url, "googlenet_requests_total")
    failed = metric(live.url, "googlenet_requests_total", status="500")  # the registry is per process
    for operation in operations:
        has_inputs = any(len(group) for group in (operation.query, operation.path_parameters, operation.body))
        modes = [schemathesis.GenerationMode.POSITIVE] + [schemathesis.GenerationMode.NEGATIVE] * has_inputs
        for mode in modes:  # an operation without inputs has no invalid request to make

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
            def check(case: schemathesis.Case) -> None:
                case.call_and_validate(
                    checks=[not_a_server_error, response_schema_conformance, content_type_conformance], timeout=30,
                )

            try:
                check()
            except Unsatisfiable:
                # Negative cases need an input that can be invalid: a free-text path parameter
                # (a v2 model name) has none, and schemathesis finds that out by trying.
                if mode is not schemathesis.GenerationMode.NEGATIVE:
                    raise
                continue
            ran.add((operation.method.upper(), operation.path, mode.value))
    assert ("POST", "/v1/classify", "negative") in ran and len(ran) >= len(operations)
    assert metric(live.url, "googlenet_requests_total") - answered >= 5 * len(operations)  # it really sent them
    assert metric(live.url, "googlenet_requests_total", status="500") == failed
