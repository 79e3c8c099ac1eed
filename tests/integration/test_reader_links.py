"""Readers' links that can be taken back, and data handed over only through the mailbox.

Issue 14, item 15: preferences links never expired and opened the data export and the
erasure with one click, so a forwarded newsletter gave anyone both. Now each reader has a
token version, carried in their preferences links (revoked from the dashboard, and by
erasure), and the export and the erasure are a short-lived link mailed to the address.
Unsubscribe links stay valid across versions: a one-click unsubscribe must work from any
email ever sent (invariant 3), and all it can do is let the reader leave.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from newsletter.core import db
from newsletter.core.config import get_settings
from newsletter.core.models import Subscriber, Subscription, SubscriptionStatus
from newsletter.core.tokens import Purpose, make_reader_token, make_token
from newsletter.email.builder import reader_links
from newsletter.web.app import create_app
from tests.conftest import Mailbox, wait_until_tasks_done
from tests.factories import add_reader

ADDRESS = "leitora@example.com"


@pytest.fixture
def client(clean_db: str, redis_broker: str) -> Iterator[TestClient]:
    with TestClient(create_app(), base_url="http://testserver") as test_client:
        yield test_client


def links_mailed_to(reader: int) -> dict[str, str]:
    """The links every email to the reader carries now, as paths."""
    with db.session_scope() as session:
        subscriber = session.get(Subscriber, reader)
        assert subscriber is not None
        links = reader_links(subscriber, None, get_settings())
    return {name: url.removeprefix(get_settings().base_url) for name, url in links.items()}


def sign_in(client: TestClient) -> str:
    login = client.get("/admin/login")
    form = re.search(r'name="csrf_token" value="([^"]+)"', login.text)
    assert form
    client.post(
        "/admin/login",
        data={"token": get_settings().admin_token, "csrf_token": form.group(1)},
        follow_redirects=False,
    )
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/admin").text)
    assert csrf
    return csrf.group(1)


def subscribed(reader: int) -> bool:
    with db.session_scope() as session:
        status = session.scalar(
            select(Subscription.status).where(Subscription.subscriber_id == reader)
        )
    return status == SubscriptionStatus.SUBSCRIBED


def test_revoked_links_open_nothing_and_unsubscribe_links_still_work(client: TestClient) -> None:
    reader = add_reader(ADDRESS, name="Leitora")
    key = get_settings().secret_key
    mailed = links_mailed_to(reader)
    legacy = f"/preferences/{make_token(key, Purpose.PREFERENCES, reader)}"  # before versions
    erase = f"/erase/{make_reader_token(key, Purpose.ERASE, reader, 0)}"
    for path in (mailed["preferences_url"], legacy, erase):
        assert client.get(path).status_code == 200, path

    csrf = sign_in(client)
    revoked = client.post(
        f"/admin/subscribers/{reader}/revoke-links",
        data={"csrf_token": csrf},
        follow_redirects=False,
    )
    assert revoked.status_code == 303
    assert "Links revoked" in client.get(f"/admin/subscribers/{reader}").text

    for path in (mailed["preferences_url"], legacy, erase):
        refused = client.get(path)
        assert refused.status_code == 400 and "withdrawn" in refused.text, path
    for path, data in (
        (f"{mailed['preferences_url']}/data", {}),
        (f"{mailed['preferences_url']}/erase", {"confirm": "yes"}),
        (mailed["preferences_url"], {"name": "Taken over"}),
        (erase, {}),
    ):
        assert client.post(path, data=data).status_code == 400, path
    assert subscribed(reader)
    # The next email carries links that work; the old one-click unsubscribe still works.
    assert client.get(links_mailed_to(reader)["preferences_url"]).status_code == 200
    assert client.post(mailed["unsubscribe_url"]).status_code == 200
    assert not subscribed(reader)

    missing = client.post("/admin/subscribers/999999/revoke-links", data={"csrf_token": csrf})
    assert missing.status_code == 404


def link_in(mailbox: Mailbox, path: str) -> str:
    [received] = mailbox.wait_for(ADDRESS)
    body = received.message.get_body(preferencelist=("plain",))
    assert body is not None
    match = re.search(rf"http://newsletter\.test(/{path}/\S+)", body.get_content())
    assert match, body.get_content()
    return match.group(1)


@pytest.mark.usefixtures("worker")
def test_the_data_and_its_erasure_are_a_link_mailed_to_the_address(
    client: TestClient, mailbox: Mailbox
) -> None:
    reader = add_reader(ADDRESS, name="Leitora", language="pt")
    preferences = links_mailed_to(reader)["preferences_url"]

    asked = client.post(f"{preferences}/data")
    # The pages of her links speak her language, as the emails do.
    assert asked.status_code == 200 and "Consulte a sua caixa de correio" in asked.text
    assert "Leitora" not in asked.text and "subscriptions" not in asked.text
    download = link_in(mailbox, "my-data")
    [message] = mailbox.to(ADDRESS)
    assert message.message["Subject"] == "Os seus dados na Plataforma"  # the reader's language
    assert "List-Unsubscribe" not in message.message  # asked for, not a newsletter
    data = client.get(download)
    assert data.status_code == 200 and data.json()["email"] == ADDRESS
    # Asked again at once: the same answer, and no second email to flood the inbox with.
    assert client.post(f"{preferences}/data").status_code == 200
    wait_until_tasks_done()
    assert len(mailbox.to(ADDRESS)) == 1

    mailbox.clear()
    asked = client.post(f"{preferences}/erase", data={"confirm": "yes"})
    assert asked.status_code == 200 and "nada é eliminado até" in asked.text
    assert subscribed(reader)  # asking erased nothing
    erase = link_in(mailbox, "erase")
    page = client.get(erase)  # what a mail scanner fetching the link does: nothing
    assert page.status_code == 200 and 'method="post"' in page.text and subscribed(reader)
    erased = client.post(erase)
    assert erased.status_code == 200 and "Os seus dados foram eliminados" in erased.text
    with db.session_scope() as session:
        assert session.get(Subscriber, reader) is None
    # Erasure took every link with it: nothing opens for the old reader.
    assert client.get(download).status_code == 404
    assert client.get(preferences).status_code == 404
