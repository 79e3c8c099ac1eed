"""One vocabulary for where a reader stands — pending, subscribed, unsubscribed, bounced,
complained, suppressed — the same on the dashboard, in the CLI and in /metrics."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from newsletter.core import db
from newsletter.core.config import get_settings
from newsletter.core.models import Subscriber, SubscriberStatus
from newsletter.subscribers import reader_status, store, suppressions
from tests.factories import add_reader, run_cli

EXPECTED = {
    "pending@example.com": "pending",
    "subscribed@example.com": "subscribed",
    "left@example.com": "unsubscribed",
    "bounced@example.com": "bounced",
    "complained@example.com": "complained",
    "suppressed@example.com": "suppressed",
}


def one_reader_of_each_status() -> None:
    ids = {email: add_reader(email, confirmed=email != "pending@example.com") for email in EXPECTED}
    with db.session_scope() as session:
        store.unsubscribe(session, subscriber_id=ids["left@example.com"], source="test")
        for email, status in (
            ("bounced@example.com", SubscriberStatus.BOUNCED),
            ("complained@example.com", SubscriberStatus.COMPLAINED),
        ):
            reader = session.get(Subscriber, ids[email])
            assert reader is not None
            reader.status = status
        suppressions.add(session, email="suppressed@example.com")


def test_each_reader_has_one_status_everywhere_it_is_shown(clean_db: str) -> None:
    one_reader_of_each_status()
    with db.session_scope() as session:
        counts = reader_status.count_by_status(session)
    assert counts == {status: 1 for status in EXPECTED.values()}

    listed = run_cli("subscribers", "list", database_url=clean_db).stdout.splitlines()
    assert listed[0] == "email\tstatus\tlanguage\tsubscriptions"
    assert {line.split("\t")[0]: line.split("\t")[1] for line in listed[1:]} == EXPECTED
    as_json = run_cli("subscribers", "list", "--json", database_url=clean_db).stdout.splitlines()
    assert {json.loads(x)["email"]: json.loads(x)["status"] for x in as_json} == EXPECTED

    from newsletter.web.app import create_app

    token = {"Authorization": f"Bearer {get_settings().admin_token}"}
    with TestClient(create_app()) as client:
        body = client.get("/metrics", headers=token).text
    gauge = {
        sample.labels["status"]: sample.value
        for family in text_string_to_metric_families(body)
        if family.name == "newsletter_subscribers"
        for sample in family.samples
    }
    assert gauge == {status: 1.0 for status in EXPECTED.values()}
    with db.session_scope() as session:
        shown = store.export_data(
            session, subscriber_id=store.find_by_email(session, "left@example.com").id
        )
    assert shown["status"] == "unsubscribed"
