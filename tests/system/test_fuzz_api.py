"""Every HTTP endpoint fuzzed from the OpenAPI spec: no 5xx, and every answer as documented;
and hostile JSON (deep nesting, wrong types, lone surrogates, huge numbers) on every route
that reads JSON: no 5xx, and refusals in words."""

from __future__ import annotations

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from newsletter.core.config import get_settings
from newsletter.web.app import create_app
from tests.fakes import RecordingQueue
from tests.integration.test_security import routes

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


# --- hostile JSON on every route that takes a body ---------------------------------------

APP = create_app(queue=RecordingQueue())
SPEC = APP.openapi()
# The routes that read a JSON body: those the spec says take one, the signup form (which
# takes JSON as well as a form), and the providers' webhooks (which read JSON by hand).
JSON_ROUTES = sorted(
    {
        path
        for path, operations in SPEC["paths"].items()
        for method, operation in operations.items()
        if method == "post"
        and "application/json" in operation.get("requestBody", {}).get("content", {})
    }
    | {"/subscribe"}
    | {path for path in SPEC["paths"] if path.startswith("/webhooks/")}
)
# What a well-meaning client sends: the hostile values are put in among these fields.
BASE_FIELDS: dict[str, dict[str, str]] = {
    "/api/articles": {"title": '"A title"', "body": '"The body."'},
    "/subscribe": {"email": '"ana@example.com"'},
}
EXTRA_FIELDS = {
    "/subscribe": ["email", "name", "newsletters", "topics", "language", "time_zone"],
    "/webhooks/ses": ["Type", "Message", "SigningCertURL", "Signature", "SubscribeURL"],
    "/webhooks/mailgun": ["signature", "event-data"],
}


def field_names(path: str) -> list[str]:
    """The fields a route's JSON body may have, as the spec or the route's reader knows them."""
    body = SPEC["paths"][path]["post"].get("requestBody", {})
    schema = body.get("content", {}).get("application/json", {}).get("schema", {})
    if "$ref" in schema:
        schema = SPEC["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return sorted(set(schema.get("properties", {})) | set(EXTRA_FIELDS.get(path, [])))


# JSON text, as a hostile client writes it: Python's json would refuse to write most of it.
HOSTILE_SCALARS = st.sampled_from(
    [
        "5",
        "true",
        "1.5",
        "null",
        "-0",
        '"\\ud800"',
        '"a\\udfffb"',
        '"\\u0000"',
        "1" + "0" * 4000,  # 10**4000: a number no field takes
        "1" + "0" * 5000,  # 10**5000: past int()'s default digit limit (4300)
        "1e400",  # a float past its range
        "-1e400",
        "NaN",
        "Infinity",
        "-Infinity",
        '"0001-01-01T00:00:00+14:00"',
        '"9999-12-31T23:59:59-14:00"',
        '""',
        "[]",
        "{}",
    ]
)


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


HOSTILE_VALUES = st.one_of(
    HOSTILE_SCALARS,
    st.sampled_from([100, 3_000, 30_000]).map(nested),
    st.lists(HOSTILE_SCALARS, max_size=3).map(lambda items: "[" + ",".join(items) + "]"),
)


def hostile_body(path: str) -> st.SearchStrategy[str]:
    """A JSON body for the route: a hostile value alone, or the route's fields with some of
    them (or unknown ones) hostile."""
    names = st.sampled_from([*field_names(path), "\\ud800", "extra"])
    objects = st.dictionaries(names, HOSTILE_VALUES, min_size=1, max_size=4).map(
        lambda hostile: (
            "{"
            + ",".join(
                f'"{name}":{value}'
                for name, value in {**BASE_FIELDS.get(path, {}), **hostile}.items()
            )
            + "}"
        )
    )
    return st.one_of(HOSTILE_VALUES, objects)


@pytest.mark.parametrize("path", JSON_ROUTES)
@given(data=st.data())
@settings(
    # Derandomized and bounded, like the run above: about ten seconds for all the routes.
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_hostile_json_never_makes_a_server_error(
    clean_db: str, path: str, data: st.DataObject
) -> None:
    body = data.draw(hostile_body(path), label="body")
    with TestClient(APP, raise_server_exceptions=False) as client:
        response = client.post(
            path,
            content=body.encode("utf-8"),
            headers={
                "Content-Type": "application/json",
                "Authorization": f"Bearer {get_settings().admin_token}",
            },
        )
    assert response.status_code < 500, (path, body[:200], response.text[:300])
    if response.status_code >= 400:
        # Refused in words: a sentence in JSON, or a page that says what is wrong.
        words = (
            response.json()["detail"]
            if "json" in response.headers["content-type"]
            else response.text
        )
        assert isinstance(words, str) and len(words.split()) >= 3, words


INPUTLESS = {"/favicon.ico", "/favicon.svg", "/robots.txt"}


def test_the_fuzzing_covers_every_route_but_the_dashboard() -> None:
    # The dashboard's pages are outside the spec (include_in_schema=False) and swept by
    # tests/integration/test_security.py; so are /metrics and /readyz, which read nothing
    # but the Authorization header (tests/integration/test_monitoring.py). Every other
    # route is in the spec, so fuzzed above. The site's icon and robots.txt take no input.
    in_spec = {
        (method.upper(), path)
        for path, operations in SPEC["paths"].items()
        for method in operations
    }
    served = {
        (method, found.path.replace(":int}", "}"))
        for method in ("GET", "POST")
        for found in routes(APP, "/", method)
        if not found.path.startswith("/admin")
        and found.path not in {"/metrics", "/readyz", *INPUTLESS}
    }
    assert len(served) > 20
    assert served <= in_spec, served - in_spec
