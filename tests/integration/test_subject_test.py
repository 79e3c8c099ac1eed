"""A subject test as the editor sets it on the dashboard: refused in words without click
counts or with one subject, saved with two; its sample drawn the same on every dispatch."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from newsletter.core import db
from newsletter.core.config import get_settings
from newsletter.digests import lifecycle, subject_test
from tests.integration.test_admin_auth import sign_in


@pytest.fixture
def client(clean_db: str) -> Iterator[TestClient]:
    from newsletter.web.app import create_app

    with TestClient(create_app(), base_url="http://testserver") as test_client:
        yield test_client


@pytest.fixture
def clicks_counted() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NEWSLETTER_TRACK_CLICKS", "true")
        get_settings.cache_clear()
        yield
    get_settings.cache_clear()


def a_draft() -> int:
    with db.session_scope() as session:
        return lifecycle.create_digest(session, newsletter_slug="daily", draft=True).id


def post_test(client: TestClient, csrf: str, digest_id: int, **fields: str) -> str:
    answer = client.post(
        f"/admin/digests/{digest_id}/subject-test",
        data={"csrf_token": csrf, **fields},
        follow_redirects=True,
    )
    return f"{answer.status_code} {answer.text}"


def test_without_click_counts_a_subject_test_is_refused_in_words(client: TestClient) -> None:
    csrf = sign_in(client)
    digest_id = a_draft()
    page = client.get(f"/admin/digests/{digest_id}").text
    assert "clicks are not counted here" in page
    answer = post_test(client, csrf, digest_id, subject_a="One", subject_b="Two")
    assert answer.startswith("422") and "turn on NEWSLETTER_TRACK_CLICKS first" in answer
    with db.session_scope() as session:
        assert lifecycle.get_digest(session, digest_id).subject_test is None


def test_the_editor_sets_and_takes_away_a_subject_test(
    client: TestClient, clicks_counted: None
) -> None:
    csrf = sign_in(client)
    digest_id = a_draft()
    one = post_test(client, csrf, digest_id, subject_a="Only one", subject_b="")
    assert one.startswith("422") and "two different subjects" in one
    wide = post_test(client, csrf, digest_id, subject_a="A", subject_b="B", sample_percent="80")
    assert wide.startswith("422") and "from 2% to 50%" in wide

    saved = post_test(
        client,
        csrf,
        digest_id,
        subject_a="Bridge news",
        subject_b="Macau's bridge is open",
        sample_percent="20",
        wait_minutes="90",
    )
    assert saved.startswith("200") and "Subject test saved." in saved
    assert re.search(r'value="Macau&#39;s bridge is open"', saved)
    with db.session_scope() as session:
        digest = lifecycle.get_digest(session, digest_id)
        assert digest.subject_test == {
            "subjects": ["Bridge news", "Macau's bridge is open"],
            "sample_percent": 20,
            "wait_minutes": 90,
        }
        # The sample: about a fifth of the readers, half each, the same on every draw.
        arms = [subject_test.arm_of(digest, n) for n in range(1, 5001)]
        assert arms == [subject_test.arm_of(digest, n) for n in range(1, 5001)]
        assert 900 <= sum(a is not None for a in arms) <= 1100
        assert 400 <= arms.count(0) <= 600 and 400 <= arms.count(1) <= 600

    removed = post_test(client, csrf, digest_id, subject_a="", subject_b="")
    assert "No subject test." in removed
    with db.session_scope() as session:
        assert lifecycle.get_digest(session, digest_id).subject_test is None


def test_the_command_line_sets_a_subject_test_and_refuses_in_one_line(
    clean_db: str, clicks_counted: None
) -> None:
    from tests.factories import run_cli

    digest_id = a_draft()
    env = {"NEWSLETTER_TRACK_CLICKS": "true"}
    ok = run_cli(
        "digest",
        "subject-test",
        str(digest_id),
        "One",
        "Two",
        "--sample",
        "20",
        database_url=clean_db,
        env=env,
    )
    assert ok.returncode == 0, ok.stderr
    assert "'One' against 'Two' on 20% of the readers" in ok.stdout
    refused = run_cli(
        "digest", "subject-test", str(digest_id), "--pick", "2", database_url=clean_db, env=env
    )
    assert refused.returncode != 0 and refused.stdout == ""
    assert refused.stderr.strip().count("\n") == 0
    assert "no subject test waiting for a decision" in refused.stderr
    with db.session_scope() as session:
        assert lifecycle.get_digest(session, digest_id).subject_test["sample_percent"] == 20  # type: ignore[index]
