"""The public archive: a newsletter's sent digests, newest first, in the visitor's
language where a copy in it went out; and the same as an Atom feed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from xml.etree import ElementTree as ET

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from newsletter.articles import store as article_store
from newsletter.core.config import Settings
from newsletter.core.i18n import LANGUAGE_TAGS
from newsletter.core.models import Article, Digest, DigestState, DigestVariant, Newsletter
from newsletter.digests import render
from newsletter.subscribers import newsletters as newsletter_store

PAGE_SIZE = 20
FEED_ENTRIES = 20
ATOM = "http://www.w3.org/2005/Atom"


@dataclass(frozen=True)
class ArchivedStory:
    title: str
    url: str


@dataclass(frozen=True)
class ArchivedDigest:
    """One sent digest as the archive shows it: its copy in one language."""

    digest_id: int
    language: str
    subject: str
    sent_at: datetime
    url: str
    stories: list[ArchivedStory]


@dataclass(frozen=True)
class ArchivePage:
    newsletter: Newsletter
    digests: list[ArchivedDigest]
    page: int
    total: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // PAGE_SIZE))


def archive_page(
    session: Session, *, newsletter_slug: str, language: str, page: int, settings: Settings
) -> ArchivePage:
    """A page of the newsletter's sent digests (UnknownNewsletter for none), each in
    `language` where a copy went out in it, else in the newsletter's own."""
    newsletter = newsletter_store.get_by_slug(session, newsletter_slug)
    sent = _sent(newsletter.id)
    total = int(session.scalar(select(func.count()).select_from(sent.subquery())) or 0)
    digests = list(
        session.scalars(
            sent.order_by(Digest.started_at.desc(), Digest.id.desc())
            .limit(PAGE_SIZE)
            .offset((page - 1) * PAGE_SIZE)
        )
    )
    return ArchivePage(newsletter, _archived(session, digests, language, settings), page, total)


def feed(session: Session, *, newsletter_slug: str, language: str, settings: Settings) -> bytes:
    """The newsletter's latest sent digests as an Atom 1.0 feed (RFC 4287)."""
    page = archive_page(
        session, newsletter_slug=newsletter_slug, language=language, page=1, settings=settings
    )
    newsletter = page.newsletter
    name = newsletter_store.newsletter_text(newsletter, language).name
    archive_url = f"{settings.base_url}/archive/{newsletter.slug}"
    ET.register_namespace("", ATOM)
    root = ET.Element(f"{{{ATOM}}}feed")
    root.set("{http://www.w3.org/XML/1998/namespace}lang", LANGUAGE_TAGS.get(language, language))
    _text(root, "id", f"{archive_url}/feed.xml")
    _text(root, "title", f"{name} · {settings.publisher_name}")
    _link(root, f"{archive_url}/feed.xml?lang={language}", rel="self", kind="application/atom+xml")
    _link(root, f"{archive_url}?lang={language}", rel="alternate", kind="text/html")
    author = ET.SubElement(root, f"{{{ATOM}}}author")
    _text(author, "name", settings.publisher_name)
    entries = page.digests[:FEED_ENTRIES]
    updated = max((d.sent_at for d in entries), default=newsletter.created_at)
    _text(root, "updated", updated.isoformat())
    for digest in entries:
        entry = ET.SubElement(root, f"{{{ATOM}}}entry")
        entry.set(
            "{http://www.w3.org/XML/1998/namespace}lang",
            LANGUAGE_TAGS.get(digest.language, digest.language),
        )
        # The same id whatever the language asked: one digest, one entry.
        _text(entry, "id", f"{settings.base_url}/digests/{digest.digest_id}")
        _text(entry, "title", digest.subject)
        _text(entry, "updated", digest.sent_at.isoformat())
        _text(entry, "published", digest.sent_at.isoformat())
        _link(entry, digest.url, rel="alternate", kind="text/html")
        summary = _text(entry, "summary", " · ".join(s.title for s in digest.stories))
        summary.set("type", "text")
    body: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return body


def _sent(newsletter_id: int) -> Select[Digest]:
    return select(Digest).where(
        Digest.newsletter_id == newsletter_id, Digest.state == DigestState.SENT
    )


def _archived(
    session: Session, digests: list[Digest], language: str, settings: Settings
) -> list[ArchivedDigest]:
    """Each digest's copy in `language` (else the newsletter's, else its first), with the
    articles still shown: one taken down (hidden) since leaves the archive too, and a
    digest left with none is not listed."""
    if not digests:
        return []
    variants: dict[int, list[DigestVariant]] = {}
    for variant in session.scalars(
        select(DigestVariant)
        .where(DigestVariant.digest_id.in_([d.id for d in digests]))
        .order_by(DigestVariant.id)
    ):
        variants.setdefault(variant.digest_id, []).append(variant)
    chosen = {
        d.id: _copy_in(variants.get(d.id, []), language, d.newsletter.language) for d in digests
    }
    wanted = {i for v in chosen.values() if v for i in v.article_ids}
    articles = {
        a.id: a
        for a in session.scalars(
            select(Article).where(Article.id.in_(wanted), Article.hidden.is_(False))
        )
    }
    shown = []
    for digest in digests:
        copy = chosen[digest.id]
        if copy is None:
            continue
        kept = [articles[i] for i in copy.article_ids if i in articles]
        if not kept:
            continue
        shown.append(
            ArchivedDigest(
                digest_id=digest.id,
                language=copy.language,
                subject=render.digest_subject(digest, copy.language, kept[0].title, len(kept)),
                sent_at=digest.started_at or digest.created_at,
                url=render.view_url(settings, digest.id, copy.id),
                stories=[
                    ArchivedStory(a.title, article_store.reading_url(a, settings.base_url))
                    for a in kept
                ],
            )
        )
    return shown


def _copy_in(
    variants: list[DigestVariant], language: str, newsletter_language: str
) -> DigestVariant | None:
    for wanted in (language, newsletter_language):
        for variant in variants:
            if variant.language == wanted:
                return variant
    return variants[0] if variants else None


def _text(parent: ET.Element, tag: str, text: str) -> ET.Element:
    element = ET.SubElement(parent, f"{{{ATOM}}}{tag}")
    element.text = text
    return element


def _link(parent: ET.Element, href: str, *, rel: str, kind: str) -> None:
    ET.SubElement(parent, f"{{{ATOM}}}link", {"rel": rel, "type": kind, "href": href})
