"""Test sends: a digest as it stands, marked [TEST], to the editor's own addresses only.

Recorded apart (test_sends), never a delivery: no reader's history, no counts, no
metrics; never to a suppressed address; and its reader links act for nobody.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.core.clock import utcnow
from newsletter.core.config import Settings
from newsletter.core.logs import mask_address
from newsletter.core.models import Digest, Newsletter, Subscriber, TestSend, TestSendStatus
from newsletter.core.validation import InvalidInput, clean_email, clean_language
from newsletter.digests import lifecycle, render
from newsletter.email.builder import inert_recipient
from newsletter.email.render import OutgoingMessage
from newsletter.subscribers import audience, suppressions
from newsletter.subscribers import newsletters as newsletter_store
from newsletter.subscribers.store import find_by_email

log = logging.getLogger("newsletter.trial")

# A test goes to the editor and a few colleagues; more is a send, not a test.
MAX_RECIPIENTS = 20


@dataclass(frozen=True)
class TestCopy:
    """One copy to make: in a language, or as a reader would get it."""

    language: str | None = None
    as_reader: str | None = None


def seed_list(settings: Settings) -> list[str]:
    """The addresses of NEWSLETTER_TEST_RECIPIENTS, as given."""
    return [a.strip() for a in settings.test_recipients.split(",") if a.strip()]


def request_test_send(
    session: Session,
    *,
    to: Sequence[str],
    settings: Settings,
    digest_id: int | None = None,
    newsletter_slug: str | None = None,
    language: str | None = None,
    as_reader: str | None = None,
) -> TestSend:
    """Record a test send of a digest (or of a newsletter's next digest as it would go
    now), to send by send_test. Refused in words, recording nothing: no address (and no
    seed list), a bad address, too many, an unknown digest, newsletter, language or
    reader, or a digest with nothing to show."""
    if digest_id is not None:
        digest: Digest | None = lifecycle.get_digest(session, digest_id)
        assert digest is not None
        newsletter = digest.newsletter
    else:
        digest = None
        newsletter = newsletter_store.get_by_slug(session, newsletter_slug or "daily")
    addresses = _addresses(to or seed_list(settings))
    if language and as_reader:
        raise InvalidInput("language", "Choose a language or a reader to test as, not both.")
    if as_reader is not None and not as_reader.strip():
        raise InvalidInput("as", "Name the reader to test as (their email address).")
    chosen = clean_language(language, default="") or None
    reader = find_by_email(session, as_reader) if as_reader else None
    suppressed = suppressions.listed_keys(session, [key for _, key in addresses])
    recipients = [
        {
            "email": email,
            "outcome": "refused" if key in suppressed else "queued",
            "detail": "on the suppression list: nothing is ever sent to it"
            if key in suppressed
            else "",
        }
        for email, key in addresses
    ]
    copies = _copies(
        session,
        digest,
        newsletter.id,
        newsletter.language,
        chosen,
        reader.email if reader else None,
    )
    # Made once now, so that a digest with nothing to show is refused while the editor
    # is there to read why (NothingToSend), not found out by the worker.
    subjects = [
        _preview(session, digest, newsletter.slug, copy, settings).subject for copy in copies
    ]
    test = TestSend(
        newsletter_id=newsletter.id,
        digest_id=digest.id if digest else None,
        recipients=recipients,
        language=chosen,
        as_reader=mask_address(reader.email) if reader else None,
        subscriber_id=reader.id if reader else None,
        subjects=subjects,
        status=TestSendStatus.QUEUED,
        detail="",
    )
    if all(r["outcome"] == "refused" for r in recipients):
        test.status = TestSendStatus.REFUSED
        test.detail = "Every address is on the suppression list: nothing was sent."
        test.finished_at = utcnow()
    session.add(test)
    session.flush()
    return test


def send_test(
    session: Session,
    *,
    test_send_id: int,
    settings: Settings,
    send: Callable[[OutgoingMessage], str | None],
    now: datetime | None = None,
) -> TestSend:
    """Make each copy and send it to each address still allowed (the suppression list is
    read again: an address added since is refused). `send` returns None when the relay
    took the message, else why not."""
    test = session.get(TestSend, test_send_id)
    if test is None:
        raise LookupError(f"There is no test send {test_send_id}.")
    if test.status != TestSendStatus.QUEUED:
        return test  # already done (a task run twice)
    digest = session.get(Digest, test.digest_id) if test.digest_id else None
    newsletter = session.get(Newsletter, test.newsletter_id)
    reader = session.get(Subscriber, test.subscriber_id) if test.subscriber_id else None
    if newsletter is None or (test.subscriber_id and reader is None):
        why = "The newsletter or the reader to test as is gone."
        return _finish(session, test, _failed(test.recipients, why), now, detail=why)
    recipients = [dict(r) for r in test.recipients]
    keys = {r["email"]: clean_email(r["email"])[1] for r in recipients}
    suppressed = suppressions.listed_keys(session, list(keys.values()))
    try:
        copies = _copies(
            session,
            digest,
            newsletter.id,
            newsletter.language,
            test.language,
            reader.email if reader else None,
        )
        previews = [_preview(session, digest, newsletter.slug, c, settings) for c in copies]
    except (render.NothingToSend, LookupError, InvalidInput) as exc:
        return _finish(session, test, _failed(recipients, str(exc)), now, detail=str(exc))
    for r in recipients:
        if r["outcome"] != "queued":
            continue
        if keys[r["email"]] in suppressed:
            r.update(
                outcome="refused", detail="on the suppression list: nothing is ever sent to it"
            )
            continue
        problems = []
        for preview in previews:
            # Greeted as the reader it shows would be; addressed to the editor alone.
            hello = render.greeting(reader.name if reader else "", preview.selection.language)
            message = preview.prepared.template.fill(
                inert_recipient(r["email"], settings, values={"greeting": hello})
            )
            problem = send(message)
            if problem:
                problems.append(problem)
        r.update(
            outcome="failed" if problems else "sent",
            detail="; ".join(dict.fromkeys(problems)),
        )
    return _finish(session, test, recipients, now)


def recent(session: Session, *, digest_id: int, limit: int = 10) -> list[TestSend]:
    """A digest's latest test sends, newest first."""
    return list(
        session.scalars(
            select(TestSend)
            .where(TestSend.digest_id == digest_id)
            .order_by(TestSend.id.desc())
            .limit(limit)
        )
    )


def as_dict(test: TestSend) -> dict[str, object]:
    return {
        "id": test.id,
        "digest": test.digest_id,
        "status": test.status,
        "language": test.language,
        "as_reader": test.as_reader,
        "subjects": test.subjects,
        "recipients": test.recipients,
        "detail": test.detail,
        "requested_at": test.requested_at.isoformat() if test.requested_at else None,
        "finished_at": test.finished_at.isoformat() if test.finished_at else None,
    }


def _failed(recipients: Sequence[dict[str, str]], why: str) -> list[dict[str, str]]:
    return [
        {**r, "outcome": "failed", "detail": why} if r["outcome"] == "queued" else dict(r)
        for r in recipients
    ]


def _addresses(given: Sequence[str]) -> list[tuple[str, str]]:
    if not given:
        raise InvalidInput(
            "to",
            "Say where the test goes: one or more addresses (or set NEWSLETTER_TEST_RECIPIENTS).",
        )
    found: dict[str, str] = {}
    for raw in given:
        try:
            email, key = clean_email(raw, to_mail=True)
        except InvalidInput as exc:
            raise InvalidInput("to", f"{raw.strip()!r}: {exc.message}") from None
        found.setdefault(key, email)
    if len(found) > MAX_RECIPIENTS:
        raise InvalidInput(
            "to", f"A test goes to at most {MAX_RECIPIENTS} addresses; this names {len(found)}."
        )
    return [(email, key) for key, email in found.items()]


def _copies(
    session: Session,
    digest: Digest | None,
    newsletter_id: int,
    newsletter_language: str,
    language: str | None,
    as_reader: str | None,
) -> list[TestCopy]:
    """One copy as the reader would get it; or one language's; or, by default, one per
    language the newsletter's readers read it in (and its own language first)."""
    if as_reader:
        return [TestCopy(as_reader=as_reader)]
    if language:
        return [TestCopy(language=language)]
    read_in = audience.reach(session, newsletter_id=newsletter_id).by_language
    languages = [newsletter_language, *(lang for lang in read_in if lang != newsletter_language)]
    return [TestCopy(language=lang) for lang in languages]


def _preview(
    session: Session,
    digest: Digest | None,
    newsletter_slug: str,
    copy: TestCopy,
    settings: Settings,
) -> render.Preview:
    if digest is not None:
        return render.preview_digest(
            session,
            digest,
            settings=settings,
            subscriber_email=copy.as_reader,
            language=copy.language,
            test=True,
        )
    return render.preview(
        session,
        newsletter_slug=newsletter_slug,
        settings=settings,
        subscriber_email=copy.as_reader,
        language=copy.language,
        test=True,
    )


def _finish(
    session: Session,
    test: TestSend,
    recipients: list[dict[str, str]],
    now: datetime | None,
    *,
    detail: str = "",
) -> TestSend:
    sent = sum(r["outcome"] == "sent" for r in recipients)
    refused = sum(r["outcome"] == "refused" for r in recipients)
    if sent == len(recipients):
        test.status = TestSendStatus.SENT
    elif sent:
        test.status = TestSendStatus.PARTLY
    elif refused == len(recipients):
        test.status = TestSendStatus.REFUSED
    else:
        test.status = TestSendStatus.FAILED
    test.recipients = recipients
    test.detail = detail
    test.finished_at = now or utcnow()
    session.flush()
    log.info("test send %s: %s", test.id, test.status, extra={"digest_id": test.digest_id})
    return test
