"""Hostile input to the two parsers that read what strangers send: returned mail and articles.

Hypothesis builds malformed MIME, huge headers, deep nesting, wrong charsets, NULs and
long lines. Each parser may refuse input only with its own documented error, and reads no
message for longer than a second. Derandomized: the same examples every run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from newsletter.articles.store import (
    ArticleParseError,
    ParsedArticle,
    parse_article_bytes,
    parse_markdown,
    parse_scraped_text,
)
from newsletter.bounces.parsing import BounceParseError, BounceReport, parse_bounce
from tests.conftest import ROOT

CORPUS = ROOT / "tests" / "data" / "bounces"
SAMPLES = sorted(path.read_bytes() for path in CORPUS.glob("*.eml"))

# A guard against a hang, not a benchmark: far above what any of these inputs takes
# (markdown-it-py reads the worst of them, 20,000 "![" or "[a](b", in about 0.8 s on a busy
# machine: linear, with a constant) and far below what the hangs they keep took (10 s to
# minutes).
HANG_SECONDS = 3.0

FUZZ = settings(
    derandomize=True,
    max_examples=300,
    deadline=None,  # measured in the test instead: hypothesis' deadline reruns to confirm
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)


def within_a_second(call: Callable[[], Any]) -> Any:
    started = time.monotonic()
    result = call()
    elapsed = time.monotonic() - started
    assert elapsed < HANG_SECONDS, f"took {elapsed:.2f} s"
    return result


# --- returned mail ---------------------------------------------------------------------

CONTENT_TYPES = [
    "multipart/report; report-type=delivery-status",
    "multipart/report; report-type=feedback-report",
    "multipart/mixed",
    "multipart/alternative",
    "message/delivery-status",
    "message/global-delivery-status",
    "message/feedback-report",
    "message/rfc822",
    "message/global",
    "text/rfc822-headers",
    "message/rfc822-headers",
    "text/plain",
    "text/html",
    "application/octet-stream",
    "",
    "multipart/",
    "/",
    "text/plain; charset=",
]
CHARSETS = ["utf-8", "us-ascii", "iso-8859-1", "gb2312", "utf-16", "utf-7", "x-unknown", "", "\x00"]
ENCODINGS = ["7bit", "8bit", "base64", "quoted-printable", "x-uuencode", "binary", "nonsense"]
HEADER_NAMES = [
    "From",
    "To",
    "Subject",
    "Return-Path",
    "Message-ID",
    "X-Failed-Recipients",
    "Auto-Submitted",
    "Final-Recipient",
    "Original-Recipient",
    "Action",
    "Status",
    "Diagnostic-Code",
    "Feedback-Type",
    "Original-Rcpt-To",
    "Delivered-To",
]
# Pieces that parsers treat specially, repeated: the stuff of quadratic regexes.
HOSTILE_PIECES = [
    b"(",
    b"<",
    b'"',
    b"=?utf-8?q?",
    b"=?a?b?",
    b"rfc822;",
    b"5.1.1 ",
    b"550 ",
    b"bounces+",
    b"@",
    b"\x00",
    b"\r",
    b"\xff\xfe",
    b"--b\r\n",
    b" ",
    b"a@b.c ",
]

text_bytes = st.binary(max_size=300) | st.text(max_size=200).map(lambda t: t.encode("utf-8"))
repeated = st.builds(
    lambda piece, times: piece * times,
    st.sampled_from(HOSTILE_PIECES),
    st.integers(min_value=1, max_value=20_000),
)
header_value = st.one_of(text_bytes, repeated)


@st.composite
def headers(draw: st.DrawFn) -> bytes:
    lines = []
    for _ in range(draw(st.integers(0, 6))):
        name = draw(st.sampled_from(HEADER_NAMES) | st.text(max_size=20)).encode("utf-8")
        lines.append(name + b": " + draw(header_value))
    return b"\r\n".join(lines) + b"\r\n"


@st.composite
def mime_part(draw: st.DrawFn, depth: int = 0) -> bytes:
    content_type = draw(st.sampled_from(CONTENT_TYPES))
    charset = draw(st.sampled_from(CHARSETS))
    encoding = draw(st.sampled_from(ENCODINGS))
    head = draw(headers())
    if content_type.startswith("multipart") and depth < 4:
        boundary = f"b{depth}"
        children = draw(st.lists(mime_part(depth + 1), max_size=3))
        closing = draw(st.booleans())
        body = b"".join(f"--{boundary}\r\n".encode() + child for child in children)
        body += f"--{boundary}--\r\n".encode() if closing else b""
        content_type += f'; boundary="{boundary}"'
    elif content_type.startswith("message/") and depth < 4:
        body = draw(mime_part(depth + 1))
    else:
        body = draw(st.one_of(text_bytes, repeated))
    return (
        head
        + f"Content-Type: {content_type}; charset={charset}\r\n".encode("utf-8", "replace")
        + f"Content-Transfer-Encoding: {encoding}\r\n\r\n".encode()
        + body
        + b"\r\n"
    )


@st.composite
def deep_nesting(draw: st.DrawFn) -> bytes:
    levels = draw(st.integers(min_value=20, max_value=400))
    kind = draw(st.sampled_from(["multipart/mixed", "message/rfc822", "multipart/report"]))
    parts = []
    for n in range(levels):
        if kind == "message/rfc822":
            parts.append(b"Content-Type: message/rfc822\r\n\r\n")
        else:
            parts.append(f'Content-Type: {kind}; boundary="b{n}"\r\n\r\n--b{n}\r\n'.encode())
    return b"Subject: deep\r\n" + b"".join(parts) + draw(text_bytes)


@st.composite
def mutated_sample(draw: st.DrawFn) -> bytes:
    """A real bounce from the corpus with slices cut, doubled or overwritten."""
    raw = bytearray(draw(st.sampled_from(SAMPLES)))
    for _ in range(draw(st.integers(1, 8))):
        at = draw(st.integers(0, len(raw)))
        what = draw(st.sampled_from(["cut", "insert", "overwrite", "repeat"]))
        size = draw(st.integers(1, 400))
        if what == "cut":
            del raw[at : at + size]
        elif what == "insert":
            raw[at:at] = draw(st.one_of(text_bytes, repeated))
        elif what == "overwrite":
            raw[at : at + size] = draw(st.binary(min_size=1, max_size=size))
        else:
            raw[at:at] = bytes(raw[at : at + size]) * draw(st.integers(2, 200))
    return bytes(raw)


returned_mail = st.one_of(
    mime_part(),
    deep_nesting(),
    mutated_sample(),
    st.binary(max_size=2000),
    st.builds(lambda h, body: h + b"\r\n" + body, headers(), st.one_of(text_bytes, repeated)),
)


@FUZZ
@given(raw=returned_mail, envelope=st.lists(st.text(max_size=80), max_size=3))
def test_no_returned_mail_crashes_or_hangs_the_bounce_parser(
    raw: bytes, envelope: list[str]
) -> None:
    try:
        report = within_a_second(lambda: parse_bounce(raw, envelope_recipients=envelope))
    except BounceParseError:
        assert not raw.strip()  # its only documented refusals: empty, or over 10 MB
        return
    assert isinstance(report, BounceReport)
    assert report.kind in {"hard", "soft", "complaint", "none"}
    for address in report.recipients:
        assert "@" in address and "\n" not in address and "\x00" not in address
    report.as_dict()


@pytest.mark.parametrize("levels", [200, 1000])
@pytest.mark.parametrize("kind", ["multipart/mixed", "message/rfc822", "multipart/report"])
def test_deep_nesting_of_every_kind_is_read_within_a_second(kind: str, levels: int) -> None:
    # tests/unit/bounces/test_parsing.py nests multipart/mixed; message/rfc822 recurses otherwise.
    if kind == "message/rfc822":
        nested = b"Content-Type: message/rfc822\r\n\r\n" * levels
    else:
        nested = b"".join(
            f'Content-Type: {kind}; boundary="b{n}"\r\n\r\n--b{n}\r\n'.encode()
            for n in range(levels)
        )
    report = within_a_second(lambda: parse_bounce(b"Subject: deep\r\n" + nested + b"x\r\n"))
    assert report.kind == "none"


# --- articles --------------------------------------------------------------------------

MARKDOWN_PIECES = [
    "`",
    "``",
    "*",
    "**",
    "_",
    "__",
    "~~",
    "[",
    "](",
    "![",
    "(",
    ")",
    "<",
    "<https://",
    "\\",
    "#",
    "# ",
    "> ",
    "- ",
    "1. ",
    "---\n",
    "```\n",
    "=\n",
    "a",
    " ",
    "\n",
    "\n\n",
    "\x00",
    "\r",
    "\u2028",
    "\u202e",
    "\ufeff",
    "中",
    "ã",
    "»",
    "。",
    "!",
    ".",
]
article_piece = st.one_of(
    st.sampled_from(MARKDOWN_PIECES),
    st.builds(
        lambda piece, times: piece * times,
        st.sampled_from(MARKDOWN_PIECES),
        st.integers(min_value=1, max_value=5_000),
    ),
    st.text(max_size=40),
)
article_text = st.lists(article_piece, max_size=30).map("".join)
front_matter = st.builds(
    lambda body, text: f"---\n{body}\n---\n{text}",
    st.one_of(
        st.text(max_size=200),
        st.sampled_from(
            [
                "title: [1, 2]",
                "title: !!python/object:os.system 'x'",
                "published_at: 2026-13-45",
                "topics: {a: b}",
                "url: javascript:alert(1)",
                "language: \x00",
                "&a [*a, *a]",
                "title: &a [*a, *a, *a, *a, *a, *a, *a, *a, *a]",
                "a: " + "[" * 5000,
                "a: " + "{" * 5000,
                "title: " + "x" * 100_000,
            ]
        ),
    ),
    article_text,
)
article_bytes = st.one_of(
    article_text.map(lambda t: t.encode("utf-8")),
    front_matter.map(lambda t: t.encode("utf-8")),
    st.binary(max_size=3000),
    st.builds(
        lambda text, charset: text.encode(charset, "replace"),
        article_text,
        st.sampled_from(["latin-1", "utf-16", "gb18030", "cp1252"]),
    ),
)


def assert_an_article(parsed: ParsedArticle) -> None:
    assert parsed.title.strip() and "\n" not in parsed.title and "\x00" not in parsed.title
    assert "\x00" not in parsed.body and "\x00" not in parsed.summary


@FUZZ
@given(raw=article_bytes, suffix=st.sampled_from([".md", ".txt", ".markdown", ""]))
def test_no_file_crashes_or_hangs_the_article_importer(raw: bytes, suffix: str) -> None:
    try:
        parsed = within_a_second(lambda: parse_article_bytes(raw, source=f"upload{suffix}"))
    except ArticleParseError as refused:
        assert "\n" not in str(refused)  # one line, naming the file
        return
    assert_an_article(parsed)


@FUZZ
@given(text=st.one_of(article_text, front_matter))
def test_no_text_crashes_or_hangs_the_markdown_reader(text: str) -> None:
    try:
        parsed = within_a_second(lambda: parse_markdown(text, source="upload.md"))
    except ArticleParseError:
        return
    assert_an_article(parsed)


@FUZZ
@given(text=article_text)
def test_no_text_crashes_or_hangs_the_scraped_page_reader(text: str) -> None:
    try:
        parsed = within_a_second(lambda: parse_scraped_text(text, source="page.txt"))
    except ArticleParseError:
        return
    assert_an_article(parsed)


# What the fuzzing found, kept: each took from ten seconds to several minutes before.
@pytest.mark.parametrize(
    ("scenario", "text"),
    [
        ("a run of backticks mid-paragraph (cubic)", "# T\n\nx " + "`" * 20_000),
        ("a line of opening brackets", "# T\n\nx " + "[" * 20_000),
        ("a line of image openings", "# T\n\nx " + "![" * 20_000),
        ("a line of link targets never closed", "# T\n\nx " + "[a](b" * 20_000),
        ("a line of autolinks never closed", "# T\n\nx " + "<https://" * 20_000),
        ("a run of exclamation marks in the lede", "# T\n\nx " + "!" * 20_000),
        ("a run of full stops in the lede", "# T\n\nx " + "." * 20_000),
        ("many sentences in one paragraph", "# T\n\n" + "A b. " * 20_000),
        ("front matter nested thousands deep", "---\na: " + "[" * 5_000 + "\n---\n# T\n"),
        ("emphasis openers that never close (quadratic)", "# T\n\n" + "**a " * 16_384),
    ],
)
def test_pathological_articles_are_read_within_a_second(scenario: str, text: str) -> None:
    for parse in (parse_markdown, parse_scraped_text):
        try:
            parsed = within_a_second(lambda: parse(text, source="x.md"))  # noqa: B023
        except ArticleParseError:
            continue
        assert_an_article(parsed)
