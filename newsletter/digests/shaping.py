"""The editor's shaping of one digest: a note and a subject per language, stories pinned,
ordered or left out — what may be edited, and when."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from markdown_it import MarkdownIt
from markupsafe import Markup
from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.core.models import Article, Digest, DigestState
from newsletter.core.validation import (
    InvalidInput,
    clean_language,
    clean_long_text,
    clean_text,
)
from newsletter.digests import lifecycle

MAX_NOTE_LENGTH = 5000
MAX_SUBJECT_LENGTH = 300
# More than a digest could show (its cap is 10 by default) is a mistake, not a wish.
MAX_PINNED = 30
MAX_EXCLUDED = 200


def editable(digest: Digest) -> bool:
    """Whether the editor may still shape it: until it starts (a draft, a scheduled
    digest, or one paused before its time)."""
    return digest.state in {DigestState.DRAFT, DigestState.SCHEDULED} or (
        digest.state == DigestState.PAUSED and digest.paused_from == DigestState.SCHEDULED
    )


def edit(
    session: Session,
    *,
    digest_id: int,
    intro: Mapping[str, str | None] | None = None,
    subjects: Mapping[str, str | None] | None = None,
    pinned: Sequence[int] | None = None,
    excluded: Sequence[int] | None = None,
    subject: str | None = None,
    send_at: datetime | None = None,
) -> Digest:
    """Change what is given, leave the rest: `intro` and `subjects` per language (an empty
    text takes that language's away), `pinned` (in order) and `excluded` replaced whole,
    `subject` for every language without its own ("" takes it away), `send_at` for a
    digest not yet started. Refused in words, changing nothing: DigestActionError once it
    has started, InvalidInput for what cannot be kept."""
    digest = lifecycle.get_digest(session, digest_id)
    if not editable(digest):
        raise lifecycle.DigestActionError(
            f"Digest {digest_id} is {digest.state}; only a digest that has not started can "
            "be edited."
        )
    new_intro = _per_language(digest.intro, intro, field="note", long=True)
    new_subjects = _per_language(digest.subjects, subjects, field="subject", long=False)
    new_pinned = list(digest.pinned or ()) if pinned is None else _pinnable(session, pinned)
    new_excluded = (
        list(digest.excluded or ()) if excluded is None else _known(session, excluded, "excluded")
    )
    both = set(new_pinned) & set(new_excluded)
    if both:
        raise InvalidInput(
            "pinned",
            f"Article {min(both)} cannot be both pinned and left out; choose one.",
        )
    if len(new_excluded) > MAX_EXCLUDED:
        raise InvalidInput("excluded", f"At most {MAX_EXCLUDED} articles can be left out.")
    digest.intro, digest.subjects = new_intro, new_subjects
    digest.pinned, digest.excluded = new_pinned, new_excluded
    if subject is not None:
        digest.subject = clean_text("subject", subject, max_length=MAX_SUBJECT_LENGTH) or None
    if send_at is not None:
        digest.scheduled_for = send_at
    session.flush()
    return digest


def note_for(digest: Digest, language: str) -> str:
    """The editor's note for readers of `language`: theirs, else the newsletter's, else
    none (Markdown)."""
    notes = digest.intro or {}
    return str(notes.get(language) or notes.get(digest.newsletter.language) or "")


def subject_for(digest: Digest | None, language: str, *, arm: int | None = None) -> str | None:
    """The subject of a subject test's arm (or, once decided, its winner), else the one
    the editor gave for `language`, else for every language, else None (the lead story's
    title then)."""
    if digest is None:
        return None
    test = digest.subject_test or {}
    chosen = arm if arm is not None else test.get("winner")
    if test and chosen is not None:
        return str(test["subjects"][chosen])
    return (digest.subjects or {}).get(language) or digest.subject or None


def note_html(markdown: str) -> Markup:
    """An editor's Markdown as HTML safe to put in an email: raw HTML stays text, and
    only web and mail links become links."""
    return Markup(_NOTE_MARKDOWN.render(markdown)) if markdown else Markup("")


class _NoteMarkdown(MarkdownIt):
    """CommonMark with raw HTML off, and links only to http(s) and mailto addresses."""

    def __init__(self) -> None:
        super().__init__("commonmark", {"html": False})
        self.enable("strikethrough")
        self.disable("image")  # a note's picture would be a tracking pixel, or break

    def validateLink(self, url: str) -> bool:
        return url.strip().lower().startswith(("https://", "http://", "mailto:"))


_NOTE_MARKDOWN = _NoteMarkdown()


def _per_language(
    current: Mapping[str, object] | None,
    given: Mapping[str, str | None] | None,
    *,
    field: str,
    long: bool,
) -> dict[str, str]:
    texts = {str(k): str(v) for k, v in (current or {}).items() if v}
    if given is None:
        return texts
    if not isinstance(given, Mapping):
        raise InvalidInput(field, f"The {field} must be given per language, as pt=…, en=….")
    for raw_language, text in given.items():
        language = clean_language(raw_language, default="")
        if not language:
            raise InvalidInput(field, f"Say which language the {field} is in (pt, en or zh).")
        cleaned = (
            clean_long_text(field, text, max_length=MAX_NOTE_LENGTH)
            if long
            else clean_text(field, text, max_length=MAX_SUBJECT_LENGTH)
        )
        if cleaned:
            texts[language] = cleaned
        else:
            texts.pop(language, None)
    return texts


def _known(session: Session, article_ids: Sequence[int], field: str) -> list[int]:
    """The ids, each once, in the order given; an id of no article is refused."""
    ids = list(dict.fromkeys(article_ids))
    if any(not isinstance(i, int) or isinstance(i, bool) for i in ids):
        raise InvalidInput(field, "Articles are named by their number.")
    found = set(session.scalars(select(Article.id).where(Article.id.in_(ids)))) if ids else set()
    missing = [i for i in ids if i not in found]
    if missing:
        raise InvalidInput(field, f"There is no article {missing[0]}.")
    return ids


def _pinnable(session: Session, article_ids: Sequence[int]) -> list[int]:
    ids = _known(session, article_ids, "pinned")
    if len(ids) > MAX_PINNED:
        raise InvalidInput("pinned", f"At most {MAX_PINNED} articles can be pinned.")
    hidden = session.scalar(
        select(Article.id).where(Article.id.in_(ids), Article.hidden.is_(True)).limit(1)
    )
    if hidden is not None:
        raise InvalidInput(
            "pinned", f"Article {hidden} is hidden; show it again before pinning it."
        )
    return ids
