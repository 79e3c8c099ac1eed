"""Bounces from where they were kept: files, folders, Maildirs, and an IMAP mailbox."""

from __future__ import annotations

import imaplib
import logging
import mailbox as stdlib_mailbox
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import unquote, urlsplit

log = logging.getLogger("newsletter.mailbox")


def messages_at(path: Path) -> Iterator[tuple[str, bytes]]:
    """(name, raw bytes) of each message in a file, a folder of files, or a Maildir."""
    if path.is_file():
        yield str(path), path.read_bytes()
        return
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such file or folder")
    if (path / "cur").is_dir() and (path / "new").is_dir():
        maildir = stdlib_mailbox.Maildir(str(path), factory=None, create=False)
        for key in sorted(maildir.iterkeys()):
            with maildir.get_file(key) as handle:
                yield f"{path}:{key}", handle.read()
        return
    for child in sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")):
        yield str(child), child.read_bytes()


def poll_imap(url: str, hand: Callable[[bytes], object], *, limit: int = 500) -> int:
    """Hand every unseen message of the mailbox to `hand`, then mark it seen and delete it.

    imaps://user:pass@host[:993]/INBOX (or imap:// with STARTTLS when offered).
    """
    parts = urlsplit(url)
    folder = unquote(parts.path.lstrip("/")) or "INBOX"
    if parts.scheme == "imaps":
        client: imaplib.IMAP4 = imaplib.IMAP4_SSL(parts.hostname or "", parts.port or 993)
    elif parts.scheme == "imap":
        client = imaplib.IMAP4(parts.hostname or "", parts.port or 143)
        if "STARTTLS" in client.capabilities:
            client.starttls()
    else:
        raise ValueError(f"an IMAP URL looks like imaps://user:pass@host/INBOX, not {url!r}")
    handed = 0
    try:
        client.login(unquote(parts.username or ""), unquote(parts.password or ""))
        client.select(folder)
        _, data = client.search(None, "UNSEEN")
        for number in [n.decode() for n in (data[0] or b"").split()[:limit]]:
            # PEEK: the message stays unseen until it is handed on (see the store below).
            _, fetched = client.fetch(number, "(BODY.PEEK[])")
            raw = next(
                (item[1] for item in fetched if isinstance(item, tuple) and len(item) > 1), None
            )
            if not isinstance(raw, bytes):
                continue
            hand(raw)
            # Only once it is handed on: a poll that dies mid-way leaves the rest unseen.
            client.store(number, "+FLAGS", "(\\Seen \\Deleted)")
            handed += 1
        client.expunge()
    finally:
        try:
            client.logout()
        except (imaplib.IMAP4.error, OSError):
            log.warning("IMAP logout failed", exc_info=True)
    return handed
