"""The dashboard's home page and outbox: numbers from known rows, charts, a broker that is down."""

from __future__ import annotations

import os
import re
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import insert, select

from newsletter.core import db
from newsletter.core.clock import utcnow
from newsletter.core.config import get_settings
from newsletter.core.models import (
    BounceEvent,
    BounceKind,
    Delivery,
    DeliveryStatus,
    Digest,
    DigestState,
)
from newsletter.ops import charts, stats
from newsletter.subscribers.newsletters import get_by_slug
from newsletter.web.admin import dashboard, outbox
from newsletter.web.app import create_app
from tests.factories import add_reader

SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture
def client(clean_db: str) -> Iterator[TestClient]:
    with TestClient(create_app(), base_url="http://testserver") as test_client:
        yield test_client


def sign_in(client: TestClient) -> None:
    form = client.get("/admin/login")
    match = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert match
    response = client.post(
        "/admin/login",
        data={"token": get_settings().admin_token, "csrf_token": match.group(1), "next": "/admin"},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text


def svgs(page: str) -> dict[str, ET.Element]:
    """The page's charts, parsed as XML (they must be well-formed), by their aria-label."""
    found = {}
    for markup in re.findall(r"<svg\b.*?</svg>", page, flags=re.DOTALL):
        svg = ET.fromstring(markup)
        found[svg.attrib["aria-label"]] = svg
    return found


def marks(svg: ET.Element, tag: str, css_class: str) -> list[ET.Element]:
    return [e for e in svg.iter(f"{SVG}{tag}") if css_class in e.attrib.get("class", "").split()]


def threshold_lines(svg: ET.Element) -> list[ET.Element]:
    return marks(svg, "line", "threshold")


def points_of(svg: ET.Element) -> list[ET.Element]:
    return marks(svg, "circle", "point")


# --- known rows ----------------------------------------------------------------------


def a_digest(subject: str | None = None, state: str = DigestState.SENT) -> int:
    now = utcnow()
    with db.session_scope() as session:
        digest = Digest(
            newsletter_id=get_by_slug(session, "daily").id,
            state=state,
            subject=subject,
            since=now - timedelta(days=1),
            until=now,
            started_at=now if state == DigestState.SENDING else None,
        )
        session.add(digest)
        session.flush()
        return digest.id


def deliveries(digest_id: int, count: int, *, sent_at: datetime | None, status: str) -> None:
    with db.session_scope() as session:
        session.execute(
            insert(Delivery),
            [{"digest_id": digest_id, "status": status, "sent_at": sent_at}] * count,
        )


def bounce_events(
    kind: str,
    count: int,
    *,
    at: datetime,
    digest_id: int | None = None,
    source: str = "test",
) -> None:
    """Bounces or complaints about `count` of the digest's deliveries (none: about mail
    that was no digest, such as a confirmation email)."""
    with db.session_scope() as session:
        about: list[int | None] = [None] * count
        if digest_id is not None:
            about = list(
                session.scalars(
                    select(Delivery.id)
                    .where(Delivery.digest_id == digest_id)
                    .order_by(Delivery.id)
                    .limit(count)
                )
            )
        for i, delivery_id in enumerate(about):
            session.add(
                BounceEvent(
                    kind=kind,
                    source=source,
                    delivery_id=delivery_id,
                    event_key=f"{kind}-{source}-{at}-{i}",
                    created_at=at,
                )
            )


@pytest.fixture
def known_data() -> dict[str, object]:
    """3 active readers; 1000 sent ten days ago with 10 hard bounces and 2 complaints (0.2%);
    3 sent an hour ago, 2 three hours ago, 4 thirty hours ago; 7 waiting in the database."""
    for n in range(3):
        add_reader(f"active{n}@example.com")
    add_reader("pending@example.com", confirmed=False)
    now = utcnow()
    ten_days_ago = (now - timedelta(days=10)).replace(hour=12, minute=0, second=0, microsecond=0)
    digest_id = a_digest()
    deliveries(digest_id, 1000, sent_at=ten_days_ago, status=DeliveryStatus.SENT)
    deliveries(digest_id, 3, sent_at=now - timedelta(hours=1), status=DeliveryStatus.SENT)
    deliveries(digest_id, 2, sent_at=now - timedelta(hours=3), status=DeliveryStatus.SENT)
    deliveries(digest_id, 4, sent_at=now - timedelta(hours=30), status=DeliveryStatus.SENT)
    deliveries(digest_id, 7, sent_at=None, status=DeliveryStatus.QUEUED)
    bounce_events(BounceKind.HARD, 10, at=ten_days_ago + timedelta(hours=1), digest_id=digest_id)
    bounce_events(BounceKind.SOFT, 5, at=ten_days_ago + timedelta(hours=1), digest_id=digest_id)
    bounce_events(
        BounceKind.COMPLAINT, 2, at=ten_days_ago + timedelta(hours=2), digest_id=digest_id
    )
    # Older than the 30 days the rates look at: counted nowhere.
    bounce_events(BounceKind.COMPLAINT, 50, at=now - timedelta(days=40), digest_id=digest_id)
    return {"ten_days_ago": ten_days_ago}


# --- the numbers ---------------------------------------------------------------------


def test_stats_count_known_rows(clean_db: str, known_data: dict[str, object]) -> None:
    with db.session_scope() as session:
        summary = stats.summary(session)
        hours = stats.sent_per_hour(session, hours=48)
        days = stats.rates_per_day(session)
    assert summary.subscribed == 3
    assert summary.sent_last_24h == 5
    assert summary.sent_last_30d == 1009
    assert summary.hard_bounces_last_30d == 10
    assert summary.complaints_last_30d == 2
    assert summary.queued_deliveries == 7
    assert len(hours) == 48 and sum(h.sent for h in hours) == 9
    assert sorted(h.sent for h in hours if h.sent) == [2, 3, 4]
    assert hours[-1].hour == utcnow().replace(minute=0, second=0, microsecond=0)
    assert len(days) == 30
    (busy,) = [d for d in days if d.sent == 1000]
    assert busy.day == known_data["ten_days_ago"].date()  # type: ignore[attr-defined]
    assert (busy.hard_bounces, busy.complaints) == (10, 2)
    assert busy.complaint_rate == pytest.approx(0.002)
    assert busy.bounce_rate == pytest.approx(0.01)
    assert sum(d.complaints for d in days) == 2


def test_rates_are_of_digest_messages_offered_to_the_relay(
    clean_db: str, known_data: dict[str, object]
) -> None:
    """A 5xx while sending is a hard bounce of a message offered, never "sent": counted in
    both parts of the rate. A bounce of a confirmation email (no delivery) in neither."""
    day = known_data["ten_days_ago"]
    assert isinstance(day, datetime)
    refused = a_digest()
    deliveries(refused, 10, sent_at=None, status=DeliveryStatus.BOUNCED)
    bounce_events(BounceKind.HARD, 10, at=day, digest_id=refused, source=stats.SMTP_SOURCE)
    bounce_events(BounceKind.HARD, 7, at=day)  # confirmation emails that bounced
    with db.session_scope() as session:
        summary = stats.summary(session)
        (busy,) = [d for d in stats.rates_per_day(session) if d.day == day.date()]
    assert (busy.sent, busy.refused, busy.offered, busy.hard_bounces) == (1000, 10, 1010, 20)
    assert busy.bounce_rate == pytest.approx(20 / 1010)
    assert busy.complaint_rate == pytest.approx(2 / 1010)
    assert (summary.sent_last_30d, summary.refused_last_30d) == (1009, 10)
    assert summary.hard_bounces_last_30d == 20
    assert summary.bounce_rate == pytest.approx(20 / 1019)


def test_the_dashboard_shows_the_known_numbers_and_charts(
    client: TestClient, known_data: dict[str, object]
) -> None:
    sending = a_digest("<script>alert('digest')</script>", DigestState.SENDING)
    deliveries(sending, 2, sent_at=None, status=DeliveryStatus.SENDING)
    sign_in(client)
    page = client.get("/admin")
    assert page.status_code == 200
    text = re.sub(r"\s+", " ", page.text)
    assert "Subscribed</span><strong>3</strong>" in text
    assert "Sent, last 24 h</span><strong>5</strong>" in text
    assert f"<strong>{charts.percent(10 / 1009)}</strong>" in text  # 0.991%
    assert f"<strong>{charts.percent(2 / 1009)}</strong>" in text  # 0.198%
    assert "Digests sending now</span><strong>1</strong>" in text
    assert "<script>alert" not in page.text
    assert "&lt;script&gt;alert(&#39;digest&#39;)&lt;/script&gt;" in page.text

    found = svgs(page.text)
    sent = found["Messages sent per hour, last 48 hours"]
    bars = marks(sent, "rect", "bar")
    assert len(bars) == 48
    assert sorted(int(b.attrib["data-value"]) for b in bars if b.attrib["data-value"] != "0") == [
        2,
        3,
        4,
    ]
    assert sent.find(f"{SVG}title") is not None
    axis_labels = [t.text for t in marks(sent, "text", "axis-label")]
    assert axis_labels == ["Hour (UTC)", "Messages sent"]

    complaints = found["Complaint rate per day, last 30 days"]
    lines = {float(t.attrib["data-value"]): t for t in marks(complaints, "line", "threshold")}
    assert set(lines) == {0.001, 0.003}
    labels = [t.text or "" for t in marks(complaints, "text", "threshold-label")]
    assert labels == ["0.1% Gmail/Yahoo recommended", "0.3% Gmail/Yahoo maximum"]
    points = {float(p.attrib["data-value"]): p for p in marks(complaints, "circle", "point")}
    assert 0.002 in points
    y = float(points[0.002].attrib["cy"])
    # SVG's y grows downwards: above the 0.1% line is a smaller y, below 0.3% a larger one.
    assert float(lines[0.003].attrib["y1"]) < y < float(lines[0.001].attrib["y1"])

    bounces = found["Hard bounce rate per day, last 30 days"]
    assert 0.01 in {float(p.attrib["data-value"]) for p in marks(bounces, "circle", "point")}
    assert [t.attrib["data-value"] for t in marks(bounces, "line", "threshold")] == ["0.02"]

    queue = found["Queue depth now"]
    values = {
        (t.text or ""): rect.attrib["data-value"]
        for rect in marks(queue, "rect", "bar")
        for t in rect.iter(f"{SVG}title")
    }
    assert values["deliveries queued (database): 7"] == "7"
    assert values["deliveries sending (database): 2"] == "2"
    assert any(label.startswith(f"{get_settings().queue}: ready") for label in values)

    week = client.get("/admin?period=7d")
    assert week.status_code == 200
    assert len(marks(svgs(week.text)["Messages sent per hour, last 7 days"], "rect", "bar")) == 168
    assert client.get("/admin?period=forever").status_code == 422


def test_an_empty_installation_draws_empty_charts(client: TestClient) -> None:
    sign_in(client)
    page = client.get("/admin")
    assert page.status_code == 200
    assert "Nothing sent in this period" in page.text
    no_rate = "Bounce rate, 30 days</span> <strong>\N{EN DASH}</strong>"
    assert no_rate in re.sub(r"\s+", " ", page.text)
    for svg in svgs(page.text).values():
        assert svg.attrib["role"] == "img"


def test_the_dashboard_still_answers_when_the_broker_is_down(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    unreachable = "redis://127.0.0.1:1/0"
    down = get_settings().model_copy(update={"broker_url": unreachable})
    monkeypatch.setattr(dashboard, "get_settings", lambda: down)
    monkeypatch.setattr(dashboard, "BROKER_DEADLINE_SECONDS", 1.0)
    sign_in(client)
    started = time.monotonic()
    page = client.get("/admin")
    assert time.monotonic() - started < 5
    assert page.status_code == 200
    assert "The broker is unreachable, or slow to answer" in page.text
    assert "Connection refused" in page.text or "did not answer" in page.text
    text = re.sub(r"\s+", " ", page.text)
    # The workers are known all the same: from their heartbeats in the database.
    assert "Workers online</span> <strong>0</strong>" in text
    assert "Queue depth now" in page.text  # the database's part is still drawn


def test_the_dashboard_needs_a_sign_in(client: TestClient) -> None:
    assert client.get("/admin", follow_redirects=False).status_code == 303
    assert client.get("/admin/outbox", follow_redirects=False).status_code == 303


# --- the outbox ----------------------------------------------------------------------


def kept_message(
    folder: Path, stamp: datetime, *, to: str, subject: str, text: str, html: str | None
) -> str:
    message = EmailMessage()
    message["From"] = "Plataforma <news@plataforma.test>"
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = stamp
    message.set_content(text)
    if html is not None:
        message.add_alternative(html, subtype="html")
    name = f"{stamp:%Y%m%dT%H%M%S}-{stamp.microsecond:012x}.eml"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(b"Return-Path: <bounces@plataforma.test>\r\n" + message.as_bytes())
    os.utime(folder / name, (stamp.timestamp(), stamp.timestamp()))
    return name


@pytest.fixture
def sink_outbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    var = tmp_path / "var"
    settings = get_settings().model_copy(update={"var_dir": var, "smtp_url": ""})
    monkeypatch.setattr(outbox, "get_settings", lambda: settings)
    (var / "outbox").mkdir(parents=True)
    return var / "outbox"


def test_the_outbox_lists_messages_newest_first_in_pages(
    client: TestClient, sink_outbox: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outbox, "PAGE_SIZE", 2)
    start = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
    for i in range(3):
        kept_message(
            sink_outbox,
            start + timedelta(minutes=i, microseconds=i + 1),
            to=f"Leitor {i} <leitor{i}@example.com>",
            subject=f"Edição {i}",
            text="olá",
            html="<p>olá</p>",
        )
    (sink_outbox / ".20261120T090000-aaaaaaaaaaaa.eml.part").write_bytes(b"Subject: half\r\n")
    sign_in(client)
    first = client.get("/admin/outbox")
    assert first.status_code == 200
    assert first.text.index("Edição 2") < first.text.index("Edição 1")
    assert "Edição 0" not in first.text and "half" not in first.text
    assert "2026-11-20 08:02:00" in first.text
    assert "Leitor 2 &lt;leitor2@example.com&gt;" in first.text
    assert "Page 1 of 2" in first.text
    second = client.get("/admin/outbox?page=2")
    assert "Edição 0" in second.text and "Edição 2" not in second.text


def test_an_outbox_message_shows_headers_text_and_a_sandboxed_html_part(
    client: TestClient, sink_outbox: Path
) -> None:
    name = kept_message(
        sink_outbox,
        datetime(2026, 11, 20, 8, 0, tzinfo=UTC),
        to="João Conceição <joao@example.com>",
        subject="<script>alert('subject')</script> Confirme",
        text="Confirme: http://127.0.0.1:8000/confirm/abc\n<script>alert('text')</script>",
        html="<!DOCTYPE html><html><head><title>x</title></head><body>"
        '<a href="http://127.0.0.1:8000/confirm/abc">Confirmar</a>'
        "<script>alert('html')</script></body></html>",
    )
    sign_in(client)
    page = client.get(f"/admin/outbox/{name}")
    assert page.status_code == 200
    assert "<script>alert" not in page.text
    assert "&lt;script&gt;alert(&#39;subject&#39;)&lt;/script&gt; Confirme" in page.text
    assert "João Conceição &lt;joao@example.com&gt;" in page.text
    pre = re.search(r'<pre class="text-part">(.*?)</pre>', page.text, flags=re.DOTALL)
    assert pre and "http://127.0.0.1:8000/confirm/abc" in pre.group(1)
    iframe = re.search(r'<iframe class="preview"[^>]*>', page.text)
    assert iframe
    assert f'src="/admin/outbox/{name}/html"' in iframe.group(0)
    sandbox = re.search(r'sandbox="([^"]*)"', iframe.group(0))
    assert sandbox is not None
    assert "allow-scripts" not in sandbox.group(1) and "allow-same-origin" not in sandbox.group(1)
    assert "Return-Path" in page.text

    html = client.get(f"/admin/outbox/{name}/html")
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    policy = html.headers["content-security-policy"]
    assert policy.startswith("sandbox ") and "allow-scripts" not in policy
    assert "script-src" not in policy and "default-src 'none'" in policy
    assert html.text.startswith('<!DOCTYPE html><html><head><base target="_blank">')
    assert '<a href="http://127.0.0.1:8000/confirm/abc">Confirmar</a>' in html.text


@pytest.mark.parametrize(
    "path",
    [
        "/admin/outbox/..%2F..%2Fetc%2Fpasswd",
        "/admin/outbox/..%2Fsecret.eml",
        "/admin/outbox/%2Fetc%2Fpasswd",
        "/admin/outbox/%2Ftmp%2Fx.eml",
        "/admin/outbox/%2E%2E",
        "/admin/outbox/.hidden.eml",
        "/admin/outbox/missing.eml",
        "/admin/outbox/secret.eml",
        "/admin/outbox/..%2Fsecret.eml/html",
        "/admin/outbox/%5C..%5Csecret.eml",
        "/admin/outbox/not-an-email.txt",
    ],
)
def test_only_messages_listed_in_the_outbox_can_be_opened(
    client: TestClient, sink_outbox: Path, path: str
) -> None:
    (sink_outbox.parent / "secret.eml").write_bytes(b"Subject: secret\r\n\r\nsecret\r\n")
    (sink_outbox / ".hidden.eml").write_bytes(b"Subject: hidden\r\n\r\nhidden\r\n")
    (sink_outbox / "not-an-email.txt").write_bytes(b"Subject: txt\r\n\r\ntxt\r\n")
    sign_in(client)
    response = client.get(path)
    assert response.status_code == 404
    assert "secret" not in response.text and "hidden" not in response.text


def test_a_message_without_html_has_no_frame(client: TestClient, sink_outbox: Path) -> None:
    name = kept_message(
        sink_outbox,
        datetime(2026, 11, 20, 8, 0, tzinfo=UTC),
        to="a@example.com",
        subject="Text only",
        text="Só texto",
        html=None,
    )
    sign_in(client)
    page = client.get(f"/admin/outbox/{name}")
    assert page.status_code == 200 and "Só texto" in page.text and "<iframe" not in page.text
    assert client.get(f"/admin/outbox/{name}/html").status_code == 404


def test_with_a_relay_the_outbox_says_it_is_only_for_the_sink(client: TestClient) -> None:
    assert not get_settings().uses_sink  # the tests send through their own SMTP server
    sign_in(client)
    page = client.get("/admin/outbox")
    assert page.status_code == 200
    assert "The outbox is only used by the built-in sink" in page.text
