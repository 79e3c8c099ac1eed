"""Feed HTML read as text: paragraphs and lists kept, scripts and markup dropped (fetching
and storing feeds, from a real HTTP server on loopback: tests/integration/test_feeds.py)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from newsletter.articles.feeds import _entry_time, html_to_text


def test_html_to_text_drops_scripts_and_keeps_paragraphs() -> None:
    html = (
        "<div><h2>Macau &amp; Hong Kong</h2><p>Primeiro&nbsp;par&aacute;grafo,\n   com "
        "quebra.</p><script>document.write('<p>x</p>')</script><style>p{}</style>"
        "<noscript>ligue o JavaScript</noscript><template><p>modelo</p></template>"
        "<p>Segundo &lt;parágrafo&gt; &#8212; fim.</p><ol><li>um</li><li>dois</li></ol>"
        "linha<br>outra<br><br>nova</div><pre>a  b\n  c</pre>"
    )
    assert html_to_text(html) == (
        "Macau & Hong Kong\n\nPrimeiro parágrafo, com quebra.\n\n"
        "Segundo <parágrafo> — fim.\n\n1. um\n2. dois\n\nlinha\noutra\n\nnova\n\na b\nc"
    )
    assert html_to_text("<script>alert(1)") == ""
    assert html_to_text("plain & simple < 3") == "plain & simple < 3"


@pytest.mark.parametrize(
    ("published", "expected"),
    [
        ("2026-11-20T08:15:00Z", datetime(2026, 11, 20, 8, 15, tzinfo=UTC)),
        # Off the clock's years: stored, they would fail pages that show them in a zone.
        ("0001-01-01T00:00:00Z", None),
        ("9999-12-31T23:59:59Z", None),
    ],
)
def test_feed_times_off_the_clocks_years_are_not_believed(
    published: str, expected: datetime | None
) -> None:
    parsed = time.strptime(published, "%Y-%m-%dT%H:%M:%SZ")
    assert _entry_time({"published_parsed": parsed}) == expected
