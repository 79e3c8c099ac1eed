"""Every HTTP endpoint fuzzed from the OpenAPI spec: no 5xx, and every answer as documented."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from newsletter.core.config import get_settings
from newsletter.web.app import create_app

schema = schemathesis.openapi.from_asgi("/openapi.json", create_app())

CHECKS = [
    not_a_server_error,
    # Every answer is one the spec declares for that operation — its status code, its
    # content type (a page for browsers, JSON for API callers), its headers and its body.
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@schema.parametrize()
# Derandomized: the same examples every run, so that main stays green or red for a reason.
# Bounded: 25 examples an operation, each answered in well under a second.
@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_no_input_makes_a_server_error(case: schemathesis.Case, clean_db: str) -> None:
    # With the admin token, so that the fuzzing reaches past the door into the routes.
    case.headers = {**(case.headers or {}), "Authorization": f"Bearer {get_settings().admin_token}"}
    case.call_and_validate(checks=CHECKS)
