"""Feed HTML read as text: paragraphs and lists kept, scripts and markup dropped (fetching
and storing feeds, from a real HTTP server on loopback: tests/integration/test_feeds.py)."""

from __future__ import annotations

from newsletter.articles.feeds import html_to_text


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
