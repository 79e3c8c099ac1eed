"""Counted links: a digest sent by a real worker with NEWSLETTER_TRACK_CLICKS on, its
links followed, scanned and forged, the buffer written by the beat's job; the reader's
own records only with their consent."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from email.message import EmailMessage
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from newsletter.analytics.buffer import hit_buffer
from newsletter.app import pipeline
from newsletter.articles.store import set_hidden
from newsletter.core import db
from newsletter.core.config import get_settings
from newsletter.core.models import LinkEvent
from newsletter.digests import lifecycle
from newsletter.tasks import jobs as tasks
from tests.conftest import Mailbox, wait_until_tasks_done
from tests.factories import add_article, add_reader
from tests.integration.test_admin_auth import sign_in

BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36"
TRACKING = {"NEWSLETTER_TRACK_CLICKS": "true", "NEWSLETTER_TRACK_OPENS": "true"}


@pytest.fixture(scope="module", autouse=True)
def tracking_on() -> Iterator[None]:
    """Before the module's worker starts: it renders the digests."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in TRACKING.items():
            patch.setenv(name, value)
        get_settings.cache_clear()
        yield
    get_settings.cache_clear()


@pytest.fixture
def client(clean_db: str, worker: subprocess.Popen[bytes]) -> Iterator[TestClient]:
    from newsletter.web.app import create_app

    hit_buffer(get_settings()).drain()  # nothing left from another test
    with TestClient(create_app(), base_url="http://newsletter.test") as test_client:
        yield test_client


SENT_DIGEST: list[int] = []


def send_digest(mailbox: Mailbox, readers: list[str]) -> dict[str, EmailMessage]:
    """A digest of the recent articles, sent by the worker; its id in SENT_DIGEST[-1]."""
    with db.session_scope() as session:
        SENT_DIGEST.append(lifecycle.create_digest(session, newsletter_slug="daily").id)
    tasks.tick.delay()
    messages = {r: mailbox.wait_for(r, timeout=60)[0].message for r in readers}
    wait_until_tasks_done()  # each delivery marked sent
    return messages


def admin() -> dict[str, str]:
    return {"Authorization": f"Bearer {get_settings().admin_token}"}


def story_links(message: EmailMessage) -> list[str]:
    part = message.get_body(preferencelist=("html",))
    assert part is not None
    found = re.findall(r'href="http://newsletter\.test(/r/[^"]+)"', str(part.get_content()))
    # Each story's title and its "Read more" both link: once each, in order.
    return list(dict.fromkeys(link.replace("&amp;", "&") for link in found))


def record(client: TestClient) -> pipeline.recording.Recorded:
    """The beat's job, as if the hits were some seconds old (the web process's batch of
    hits handed over first, as it does a few times a second)."""
    client.app.state.hits.flush()  # type: ignore[attr-defined]
    settings = get_settings()
    return pipeline.record_link_hits(
        buffer=hit_buffer(settings), settings=settings, now=time.time() + 60
    )


def events() -> list[LinkEvent]:
    with db.session_scope() as session:
        found = list(session.scalars(select(LinkEvent).order_by(LinkEvent.id)))
        session.expunge_all()
        return found


def test_story_links_lead_to_the_articles_and_count_readers_and_scanners_apart(
    client: TestClient, mailbox: Mailbox
) -> None:
    bridge = add_article(
        "Macau reopens the bridge", url="https://news.example/bridge", topics=["macau"]
    )
    add_article("Lisbon trams", url="https://news.example/trams", hours_ago=2, topics=["lisbon"])
    readers = ["ana@example.com", "bia@example.com", "gateway@example.com"]
    for reader in readers:
        add_reader(reader)
    messages = send_digest(mailbox, readers)

    ana, bia, scanned = (story_links(messages[r]) for r in readers)
    assert len(ana) == 2 and all("?c=" in link for link in ana)
    assert ana[0].split("?")[0] == bia[0].split("?")[0]  # one token per variant and story...
    assert ana[0] != bia[0]  # ... and a copy key per copy

    first = client.get(ana[0], headers={"User-Agent": BROWSER}, follow_redirects=False)
    assert first.status_code == 302
    assert first.headers["location"] == "https://news.example/bridge"
    assert "no-store" in first.headers["cache-control"]
    client.get(ana[0], headers={"User-Agent": BROWSER}, follow_redirects=False)  # again
    client.get(bia[1], headers={"User-Agent": BROWSER}, follow_redirects=False)
    # A gateway walks every link of a copy at once, as a browser would say it is.
    for link in scanned:
        client.get(link, headers={"User-Agent": BROWSER}, follow_redirects=False)
    client.head(scanned[0], headers={"User-Agent": BROWSER})
    assert not events()  # nothing written on the redirect's path

    recorded = record(client)
    assert (recorded.reader, recorded.machine) == (3, 3)
    written = events()
    reader_clicks = [e for e in written if not e.machine]
    assert {e.copy_key for e in reader_clicks} == {
        "c:" + ana[0].split("c=")[1],
        "c:" + bia[0].split("c=")[1],
    }
    assert all(e.subscriber_id is None and e.language == "en" for e in written)
    assert sorted(e.reason or "" for e in written if e.machine) == ["burst", "burst", "head"]
    assert [e.article_id for e in reader_clicks][:2] == [bridge, bridge]

    report = client.get(f"/api/digests/{SENT_DIGEST[-1]}/report", headers=admin()).json()
    assert report["delivered"] == 3
    assert (report["clicks"], report["unique_clicks"], report["machine_clicks"]) == (3, 2, 3)
    assert report["click_rate"] == pytest.approx(2 / 3)
    by_title = {s["title"]: s for s in report["stories"]}
    assert by_title["Macau reopens the bridge"] == {
        "article": bridge,
        "title": "Macau reopens the bridge",
        "language": "en",
        "clicks": 2,
        "unique_clicks": 1,
        "machine_clicks": 2,  # the burst's click and the HEAD
    }
    assert by_title["Lisbon trams"]["unique_clicks"] == 1
    assert report["languages"] == [{"name": "en", "delivered": 3, "readers": 2, "rate": 2 / 3}]
    assert report["topics"] == [
        {"name": "lisbon", "delivered": None, "readers": 1, "rate": None},
        {"name": "macau", "delivered": None, "readers": 1, "rate": None},
    ]
    spreadsheet = client.get(f"/api/digests/{SENT_DIGEST[-1]}/report.csv", headers=admin())
    assert spreadsheet.headers["content-type"].startswith("text/csv")
    lines = spreadsheet.text.splitlines()
    assert lines[0] == "section,name,language,delivered,readers,rate,clicks,machine"
    assert lines[1] == f"digest,{SENT_DIGEST[-1]},,3,2,0.6667,3,3"
    assert "story,Macau reopens the bridge,en,,1,,2,2" in lines

    # The command line: the same counts, and the same spreadsheet.
    from tests.factories import run_cli

    url = str(db.get_engine().url.render_as_string(hide_password=False))
    words = run_cli("digest", "report", str(SENT_DIGEST[-1]), database_url=url)
    assert words.returncode == 0, words.stderr
    assert words.stdout.startswith(
        f"digest {SENT_DIGEST[-1]}: 3 delivered, 2 readers clicked (66.7%), 3 clicks, "
        "3 machine clicks"
    )
    as_csv = run_cli("digest", "report", str(SENT_DIGEST[-1]), "--csv", database_url=url)
    assert as_csv.stdout == spreadsheet.text.replace("\r\n", "\n")  # read as text
    missing = run_cli("digest", "report", "999999", database_url=url)
    assert missing.returncode != 0 and missing.stderr.count("\n") == 1

    # The dashboard: the digest's report, its chart of stories, the week's top stories.
    sign_in(client)
    page = client.get(f"/admin/digests/{SENT_DIGEST[-1]}").text
    assert "What readers read" in page and "Download the report (CSV)" in page
    assert '<rect class="bar" data-value="1"' in page
    assert "Top stories this week" in client.get("/admin").text
    dashboard_csv = client.get(f"/admin/digests/{SENT_DIGEST[-1]}/report.csv")
    assert dashboard_csv.text == spreadsheet.text


def test_a_forged_or_mangled_link_is_refused_and_a_hidden_story_says_so(
    client: TestClient, mailbox: Mailbox
) -> None:
    bridge = add_article("Macau reopens the bridge", url="https://news.example/bridge")
    add_reader("ana@example.com")
    (link, *_) = story_links(send_digest(mailbox, ["ana@example.com"])["ana@example.com"])
    path, _, query = link.partition("?")
    token = path.removeprefix("/r/")
    digest, variant, story, mac = token.split(".")
    forged = f"/r/{digest}.{variant}.{int(story) + 1}.{mac}?{query}"
    refused = client.get(forged, follow_redirects=False)
    assert refused.status_code == 400 and "location" not in refused.headers
    assert "not valid" in refused.text
    # A copy key cut off or made up still reaches the story.
    cut = client.get(path, follow_redirects=False)
    assert cut.headers["location"] == "https://news.example/bridge"

    with db.session_scope() as session:
        set_hidden(session, article_id=bridge, hidden=True)
        session.commit()
    client.app.state.destinations.seconds = 0  # type: ignore[attr-defined]
    hidden = client.get(link, follow_redirects=False)
    assert hidden.status_code == 410 and "location" not in hidden.headers
    assert "taken down" in hidden.text
    assert record(client).reader == 2  # the clicks still count; the forged one never does


def test_the_open_pixel_counts_proxies_as_machine_opens(
    client: TestClient, mailbox: Mailbox
) -> None:
    add_article("Macau reopens the bridge", url="https://news.example/bridge")
    add_reader("ana@example.com")
    message = send_digest(mailbox, ["ana@example.com"])["ana@example.com"]
    part = message.get_body(preferencelist=("html",))
    assert part is not None
    (pixel,) = re.findall(r'<img src="http://newsletter\.test(/o/[^"]+)"', str(part.get_content()))
    pixel = pixel.replace("&amp;", "&")
    opened = client.get(pixel, headers={"User-Agent": BROWSER})
    assert opened.status_code == 200 and opened.headers["content-type"] == "image/gif"
    client.get(pixel, headers={"User-Agent": "Mozilla/5.0 (via ggpht.com GoogleImageProxy)"})
    # A HEAD is answered as the GET is, and counted as a machine's, whatever it claims to be.
    looked = client.head(pixel, headers={"User-Agent": BROWSER})
    assert looked.status_code == 200 and looked.content == b""
    # A story link's token is no pixel, nor the other way round.
    assert client.get("/o/" + story_links(message)[0][3:]).status_code == 400
    assert client.get("/r/" + urlsplit(pixel).path[3:]).status_code == 400
    recorded = record(client)
    assert (recorded.reader, recorded.machine) == (1, 2)
    assert sorted((e.kind, e.reason or "") for e in events()) == [
        ("open", ""),
        ("open", "head"),
        ("open", "proxy"),
    ]


def test_a_subject_test_sends_the_rest_with_the_subject_more_readers_clicked(
    client: TestClient, mailbox: Mailbox
) -> None:
    from newsletter.app.queue import CeleryQueue, celery

    add_article("Macau reopens the bridge", url="https://news.example/bridge")
    add_article("Lisbon trams", url="https://news.example/trams", hours_ago=2)
    readers = [f"reader{n:03}@example.com" for n in range(300)]
    for reader in readers:
        add_reader(reader)
    with db.session_scope() as session:
        digest_id = lifecycle.create_digest(session, newsletter_slug="daily", draft=True).id
    planned = client.put(
        f"/api/digests/{digest_id}/subject-test",
        json={"subjects": ["Bridge news", "Macau's bridge is open"], "wait_minutes": 60},
        headers=admin(),
    )
    assert planned.status_code == 200, planned.text
    assert planned.json()["subject_test"]["phase"] == "sample"
    assert client.post(f"/api/digests/{digest_id}/schedule", headers=admin()).status_code == 200
    tasks.tick.delay()
    wait_until_tasks_done()

    # The sample only (about 10%), each copy with one of the two subjects.
    sample = {m.rcpt_tos[0]: m.message for m in mailbox.messages}
    assert 10 <= len(sample) <= 60, len(sample)
    by_subject: dict[str, list[str]] = {}
    for reader, message in sample.items():
        by_subject.setdefault(str(message["Subject"]), []).append(reader)
    assert sorted(by_subject) == ["Bridge news", "Macau's bridge is open"]
    status = client.get(f"/api/digests/{digest_id}", headers=admin()).json()
    assert status["state"] == "sending" and status["subject_test"]["phase"] == "waiting"

    # Two readers of the second subject click; one of the first; a gateway scans a copy of
    # the first subject (its clicks must not count).
    first, second = by_subject["Bridge news"], by_subject["Macau's bridge is open"]
    for reader in second[:2] + first[:1]:
        client.get(story_links(sample[reader])[0], headers={"User-Agent": BROWSER})
    for link in story_links(sample[first[-1]]):
        client.get(link, headers={"User-Agent": BROWSER}, follow_redirects=False)
    record(client)

    queue = CeleryQueue(celery)
    sent_at = datetime.fromisoformat(status["subject_test"]["sample_sent_at"])
    assert pipeline.decide_subject_tests(queue=queue, now=sent_at + timedelta(minutes=59)) == []
    decided = pipeline.decide_subject_tests(queue=queue, now=sent_at + timedelta(minutes=61))
    assert decided == [digest_id]
    mailbox.wait_until(lambda: len(mailbox.messages) == 300, timeout=120)
    wait_until_tasks_done()

    rest = [m for m in mailbox.messages if m.rcpt_tos[0] not in sample]
    assert len(rest) == 300 - len(sample)
    assert {str(m.message["Subject"]) for m in rest} == {"Macau's bridge is open"}
    assert sorted(m.rcpt_tos[0] for m in mailbox.messages) == sorted(readers)  # each once
    final = client.get(f"/api/digests/{digest_id}", headers=admin()).json()
    assert final["state"] == "sent"
    assert final["subject_test"]["winner"] == 1
    assert final["subject_test"]["readers"] == [1, 2]
    assert final["subject_test"]["decided_by"] == "more readers clicked"
    report = client.get(f"/api/digests/{digest_id}/report", headers=admin()).json()
    assert [(a["name"], a["delivered"], a["readers"]) for a in report["subject_arms"]] == [
        ("0", len(first), 1),
        ("1", len(second), 2),
    ]
    assert report["delivered"] == 300
