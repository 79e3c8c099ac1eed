"""Reading returned mail: each MTA's bounce, complaints, auto-replies, and hostile input."""

from __future__ import annotations

import json
import time

import pytest

from newsletter.bounces.parsing import (
    MAX_MESSAGE_BYTES,
    BounceParseError,
    BounceReport,
    parse_bounce,
)
from tests.conftest import ROOT

CORPUS = ROOT / "tests" / "data" / "bounces"
TOKEN = "s7d42-0123456789abcdef0123"  # the fixed VERP token written into the corpus
READER = "leitora@example.com"
ORIGINAL = "<d42.abcdef123456@plataforma.test>"

# scenario, sample, kind, recipients, status, verp tokens, original Message-ID
SAMPLES = [
    (
        "Postfix DSN: the mailbox does not exist",
        "postfix_user_unknown.eml",
        "hard",
        [READER],
        "5.1.1",
        [TOKEN],
        ORIGINAL,
    ),
    (
        "Exim text bounce with X-Failed-Recipients and the original quoted inline",
        "exim_failed.eml",
        "hard",
        [READER],
        "5.1.1",
        [TOKEN],
        ORIGINAL,
    ),
    (
        "Office 365 NDR, 5.1.10, the original's headers as text/rfc822-headers",
        "exchange_ndr.eml",
        "hard",
        [READER],
        "5.1.10",
        [TOKEN],
        ORIGINAL,
    ),
    (
        "Gmail's Delivery Status Notification (Failure), a folded diagnostic",
        "gmail_nosuchuser.eml",
        "hard",
        [READER],
        "5.1.1",
        [TOKEN],
        ORIGINAL,
    ),
    (
        "Yahoo's Failure Notice: a bare 554, no enhanced status code",
        "yahoo_failure.eml",
        "hard",
        [READER],
        None,
        [TOKEN],
        ORIGINAL,
    ),
    (
        "qmail-send: no mailbox here by that name (#5.1.1)",
        "qmail_failure.eml",
        "hard",
        [READER],
        "5.1.1",
        [TOKEN],
        ORIGINAL,
    ),
    (
        "Postfix DSN 5.2.2 over quota: the mailbox is full, not gone",
        "postfix_mailbox_full.eml",
        "soft",
        [READER],
        "5.2.2",
        [TOKEN],
        ORIGINAL,
    ),
    (
        "Postfix delay warning: Action delayed, 4.4.1",
        "delayed_warning.eml",
        "soft",
        [READER],
        "4.4.1",
        [TOKEN],
        ORIGINAL,
    ),
    (
        "Outlook out-of-office reply to our bounce address",
        "out_of_office.eml",
        "none",
        [],
        None,
        [TOKEN],
        None,
    ),
    (
        "Sieve vacation reply in Portuguese",
        "vacation_pt.eml",
        "none",
        [],
        None,
        [TOKEN],
        None,
    ),
    (
        "Challenge-response: confirm you are human",
        "challenge_response.eml",
        "none",
        [],
        None,
        [TOKEN],
        None,
    ),
    (
        "Yahoo ARF abuse report, the token only in Original-Mail-From and the original",
        "arf_complaint.eml",
        "complaint",
        [READER],
        None,
        [TOKEN],
        ORIGINAL,
    ),
    (
        "Microsoft JMRP: the complainer only in X-HmXmrOriginalRecipient",
        "hotmail_arf.eml",
        "complaint",
        [READER],
        None,
        [TOKEN],
        ORIGINAL,
    ),
    (
        "Broken boundary, unknown charset, bad base64, raw 8-bit headers",
        "malformed_mime.eml",
        "none",
        [],
        None,
        [TOKEN],
        None,
    ),
]


def corpus(name: str) -> bytes:
    """A sample bounce as it is written, with the fixed VERP token."""
    return (CORPUS / name).read_bytes()


@pytest.mark.parametrize(
    ("scenario", "sample", "kind", "recipients", "status", "verp_tokens", "message_id"),
    SAMPLES,
    ids=[row[1] for row in SAMPLES],
)
def test_each_sample_reads_as_what_it_is(
    scenario: str,
    sample: str,
    kind: str,
    recipients: list[str],
    status: str | None,
    verp_tokens: list[str],
    message_id: str | None,
) -> None:
    report = parse_bounce((CORPUS / sample).read_bytes())
    assert report.kind == kind, scenario
    assert report.recipients == recipients, scenario
    assert report.status == status, scenario
    assert report.verp_tokens == verp_tokens, scenario
    assert report.original_message_id == message_id, scenario


def test_every_sample_in_the_corpus_has_its_expectations() -> None:
    assert sorted(path.name for path in CORPUS.glob("*.eml")) == sorted(row[1] for row in SAMPLES)


@pytest.mark.parametrize(
    ("sample", "diagnostic"),
    [
        (
            "postfix_user_unknown.eml",
            "smtp; 550 5.1.1 <leitora@example.com>: Recipient address rejected: "
            "User unknown in virtual mailbox table",
        ),
        ("exim_failed.eml", "550 5.1.1 <leitora@example.com>: Recipient address rejected"),
        ("exchange_ndr.eml", "smtp;550 5.1.10 RESOLVER.ADR.RecipientNotFound;"),
        ("gmail_nosuchuser.eml", "smtp; 550-5.1.1 The email account that you tried to reach"),
        ("yahoo_failure.eml", "554: delivery error: dd This user doesn't have a yahoo.com"),
        ("qmail_failure.eml", "Sorry, no mailbox here by that name. (#5.1.1)"),
        ("postfix_mailbox_full.eml", "Quota exceeded (mailbox for user is full)"),
        ("delayed_warning.eml", "X-Postfix; connect to mail.example.com[192.0.2.25]:25:"),
    ],
)
def test_the_diagnostic_is_one_line_of_the_reason(sample: str, diagnostic: str) -> None:
    report = parse_bounce((CORPUS / sample).read_bytes())
    assert report.diagnostic is not None and diagnostic in report.diagnostic
    assert "\n" not in report.diagnostic and len(report.diagnostic) <= 500


def test_a_complaint_carries_its_feedback_type_and_the_report_is_plain_data() -> None:
    report = parse_bounce((CORPUS / "arf_complaint.eml").read_bytes())
    assert report.feedback_type == "abuse"
    assert json.loads(json.dumps(report.as_dict())) == {
        "kind": "complaint",
        "recipients": [READER],
        "status": None,
        "diagnostic": None,
        "verp_tokens": [TOKEN],
        "original_message_id": ORIGINAL,
        "feedback_type": "abuse",
        "sender_domain": "arf.mail.yahoo.com",
    }


def test_the_smtp_envelope_recipients_come_first_for_the_verp_token() -> None:
    raw = (CORPUS / "postfix_user_unknown.eml").read_bytes()
    envelope = ["<BOUNCES+S9D99-FFFFFFFFFFFFFFFFFFFF@plataforma.test>"]
    report = parse_bounce(raw, envelope_recipients=envelope)
    assert report.verp_tokens == ["s9d99-ffffffffffffffffffff", TOKEN]


def test_a_token_found_twice_in_other_case_is_reported_once_in_lower_case() -> None:
    report = parse_bounce((CORPUS / "exchange_ndr.eml").read_bytes())  # X-Original-To shouts
    assert report.verp_tokens == [TOKEN]


def test_an_auto_reply_is_nothing_even_when_it_quotes_a_failure() -> None:
    raw = (
        b"From: Leitora <leitora@example.com>\r\n"
        b"To: bounces+" + TOKEN.encode() + b"@plataforma.test\r\n"
        b"Subject: Re: Putin wants greater cooperation\r\n"
        b"Auto-Submitted: auto-replied\r\n"
        b"\r\n"
        b"I no longer read this address. Remote host said: 550 5.1.1 user unknown\r\n"
        b"<leitora@example.com>: gone\r\n"
    )
    report = parse_bounce(raw)
    assert (report.kind, report.recipients, report.verp_tokens) == ("none", [], [TOKEN])


@pytest.mark.parametrize(
    ("scenario", "header"),
    [
        ("X-Autoreply", b"X-Autoreply: yes"),
        ("X-Autorespond", b"X-Autorespond: Out of office"),
        ("Precedence auto_reply", b"Precedence: auto_reply"),
        ("a challenge", b"X-Challenge: 1f2e3d"),
        ("Chinese auto-reply subject", "Subject: 自动回复: 周报".encode()),
        ("encoded Portuguese subject", b"Subject: =?utf-8?q?Fora_do_escrit=C3=B3rio?="),
    ],
)
def test_each_mark_of_an_auto_reply_makes_it_nothing(scenario: str, header: bytes) -> None:
    raw = b"From: leitora@example.com\nTo: bounces+" + TOKEN.encode() + b"@plataforma.test\n"
    report = parse_bounce(raw + header + b"\n\nAte breve.\n")
    assert report.kind == "none", scenario


def dsn(*, action: str, status: str, diagnostic: str) -> bytes:
    return (
        "From: MAILER-DAEMON@mx.example.com (Mail Delivery System)\n"
        f"To: bounces+{TOKEN}@plataforma.test\n"
        "Subject: Undelivered Mail Returned to Sender\n"
        "Content-Type: multipart/report; report-type=delivery-status; boundary=b\n"
        "\n"
        "--b\n"
        "Content-Type: message/delivery-status\n"
        "\n"
        "Reporting-MTA: dns; mx.example.com\n"
        "\n"
        f"Final-Recipient: rfc822; {READER}\n"
        f"Action: {action}\n"
        f"Status: {status}\n"
        f"Diagnostic-Code: smtp; {diagnostic}\n"
        "\n"
        "--b--\n"
    ).encode()


@pytest.mark.parametrize(
    ("scenario", "action", "status", "diagnostic", "kind"),
    [
        ("failed with 5.1.1", "failed", "5.1.1", "550 5.1.1 no such user", "hard"),
        ("failed after days of 4.x.x", "failed", "4.4.7", "delivery time expired", "soft"),
        (
            "failed 5.x.x that says the mailbox is full",
            "failed",
            "5.0.0",
            "552 Mailbox full",
            "soft",
        ),
        ("failed 5.2.2", "failed", "5.2.2", "552 5.2.2 over quota", "soft"),
        ("delayed", "delayed", "4.4.1", "connection timed out", "soft"),
        ("a success notice", "delivered", "2.0.0", "250 2.0.0 Ok", "none"),
        ("relayed to a system without DSN", "relayed", "2.0.0", "250 ok", "none"),
    ],
)
def test_a_dsn_is_read_per_recipient(
    scenario: str, action: str, status: str, diagnostic: str, kind: str
) -> None:
    report = parse_bounce(dsn(action=action, status=status, diagnostic=diagnostic))
    assert report.kind == kind, scenario
    assert report.recipients == ([READER] if kind != "none" else []), scenario


def test_a_text_bounce_that_gave_up_on_a_full_mailbox_is_soft() -> None:
    raw = (CORPUS / "exim_failed.eml").read_bytes()
    full = raw.replace(
        b"550 5.1.1 <leitora@example.com>: Recipient address rejected: User unknown",
        b"552 5.2.2 <leitora@example.com>: Mailbox quota exceeded",
    )
    report = parse_bounce(full)
    assert (report.kind, report.status) == ("soft", "5.2.2")


def test_a_not_spam_report_is_no_complaint() -> None:
    raw = (CORPUS / "arf_complaint.eml").read_bytes()
    report = parse_bounce(raw.replace(b"Feedback-Type: abuse", b"Feedback-Type: not-spam"))
    assert (report.kind, report.feedback_type) == ("none", "not-spam")


def test_a_complaint_without_original_rcpt_to_names_the_returned_message_s_recipient() -> None:
    raw = (CORPUS / "arf_complaint.eml").read_bytes()
    report = parse_bounce(raw.replace(b"Original-Rcpt-To: leitora@example.com\n", b""))
    assert (report.kind, report.recipients) == ("complaint", [READER])


def test_a_message_id_without_angle_brackets_is_given_them() -> None:
    raw = (CORPUS / "delayed_warning.eml").read_bytes()
    bare = raw.replace(b"Message-ID: <d42.abcdef123456@plataforma.test>", b"Message-ID: d42.x@p")
    assert parse_bounce(bare).original_message_id == "<d42.x@p>"


def test_empty_and_oversized_input_is_refused_in_one_line() -> None:
    for raw in (b"", b" \r\n\t"):
        with pytest.raises(BounceParseError) as refused:
            parse_bounce(raw)
        assert "\n" not in str(refused.value)
    oversized = b"Subject: x\r\n\r\n" + b"x" * MAX_MESSAGE_BYTES
    with pytest.raises(BounceParseError):
        parse_bounce(oversized[: MAX_MESSAGE_BYTES + 1])
    assert parse_bounce(oversized[:MAX_MESSAGE_BYTES]).kind == "none"
    assert issubclass(BounceParseError, ValueError)


@pytest.mark.parametrize(
    ("scenario", "raw"),
    [
        ("every byte value", bytes(range(256)) * 100),
        ("no header at all", b"\x00\x01\x02 not a message\n\n\xff\xfe"),
        ("a header without a value", b"Content-Type:\n\n"),
        ("multipart without a boundary", b"Content-Type: multipart/report\n\n--\n--\n"),
        ("a DSN part that is empty", b"Content-Type: message/delivery-status\n\n"),
        ("an address that nests comments", b"From: " + b"(" * 5000 + b"\n\nx\n"),
    ],
)
def test_garbage_is_nothing_and_never_a_crash(scenario: str, raw: bytes) -> None:
    report = parse_bounce(raw)
    assert isinstance(report, BounceReport) and report.kind == "none", scenario


@pytest.mark.parametrize("levels", [200, 5000])
def test_deeply_nested_multiparts_neither_crash_nor_hang(levels: int) -> None:
    nested = b"".join(
        f'Content-Type: multipart/mixed; boundary="b{n}"\r\n\r\n--b{n}\r\n'.encode()
        for n in range(levels)
    )
    started = time.monotonic()  # a guard against a hang, not a benchmark
    report = parse_bounce(
        b"Subject: deep\r\nTo: bounces+" + TOKEN.encode() + b"@p.test\r\n" + nested
    )
    assert time.monotonic() - started < 5
    assert report.kind == "none" and report.verp_tokens == [TOKEN]


@pytest.mark.parametrize("header", [b"Subject", b"To", b"From", b"X-Failed-Recipients"])
def test_a_header_a_megabyte_long_is_read_without_a_crash(header: bytes) -> None:
    started = time.monotonic()
    report = parse_bounce(header + b": " + b"=?a?q?<(" * 130_000 + b"\r\n\r\nbody\r\n")
    assert time.monotonic() - started < 5
    assert report.kind in {"none", "hard"}


def test_long_lines_do_not_make_the_text_heuristics_hang() -> None:
    # flufl.bounce's patterns are quadratic, one cubic, in a line's length.
    started = time.monotonic()
    netscape = (
        b"From: postmaster@example.com\nContent-Type: multipart/mixed; boundary=b\n\n"
        b"--b\nContent-Type: text/plain\n\n"
        b"This Message was undeliverable due to the following reason:\n"
        + (b"<" * 997 + b"\n") * 9000
        + b"--b\nContent-Type: text/plain\n\nx\n--b--\n"
    )
    assert parse_bounce(netscape).kind == "none"
    exim_like = (
        b"From: MAILER-DAEMON@example.com\nSubject: x\n\n"
        b"This message was created automatically by mail delivery software\n"
        + b"  a@b.c  RCPT TO:<"
        * 500_000
    )
    assert parse_bounce(exim_like).kind == "none"
    assert time.monotonic() - started < 5


@pytest.mark.parametrize(
    ("name", "kind", "status"),
    [
        ("postfix_user_unknown.eml", "hard", "5.1.1"),
        ("exim_failed.eml", "hard", "5.1.1"),
        ("exchange_ndr.eml", "hard", "5.1.10"),
        ("gmail_nosuchuser.eml", "hard", "5.1.1"),
        ("yahoo_failure.eml", "hard", None),
        ("qmail_failure.eml", "hard", "5.1.1"),
        ("postfix_mailbox_full.eml", "soft", "5.2.2"),
        ("delayed_warning.eml", "soft", "4.4.1"),
        ("arf_complaint.eml", "complaint", None),
        ("hotmail_arf.eml", "complaint", None),
        ("out_of_office.eml", "none", None),
        ("vacation_pt.eml", "none", None),
        ("challenge_response.eml", "none", None),
        ("malformed_mime.eml", "none", None),
    ],
)
def test_each_kind_of_message_is_read_for_what_it_is(
    name: str, kind: str, status: str | None
) -> None:
    from newsletter.bounces.parsing import parse_bounce

    report = parse_bounce(corpus(name))
    assert (report.kind, report.status) == (kind, status)
    assert report.recipients == ([READER] if kind != "none" else [])
    assert report.verp_tokens == [TOKEN]
    if kind != "none":
        assert report.original_message_id == "<d42.abcdef123456@plataforma.test>"


def test_unreadable_input_is_refused_or_ignored_without_a_crash() -> None:
    import time

    from newsletter.bounces.parsing import MAX_MESSAGE_BYTES, BounceParseError, parse_bounce

    with pytest.raises(BounceParseError):
        parse_bounce(b"")
    with pytest.raises(BounceParseError):
        parse_bounce(b"Subject: x\r\n\r\n" + b"x" * MAX_MESSAGE_BYTES)
    assert parse_bounce(bytes(range(256)) * 100).kind == "none"
    nested = b"".join(
        f'Content-Type: multipart/mixed; boundary="b{n}"\r\n\r\n--b{n}\r\n'.encode()
        for n in range(300)
    )
    started = time.monotonic()  # a guard against a hang, not a benchmark
    assert parse_bounce(b"Subject: deep\r\n" + nested).kind == "none"
    assert parse_bounce(b"Subject: " + b"a" * 1_000_000 + b"\r\n\r\nbody").kind == "none"
    assert time.monotonic() - started < 10
