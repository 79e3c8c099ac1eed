"""The jobs app/ hands to the workers: a task's name and its plain JSON arguments.

The names are those of the tasks in newsletter.tasks.jobs, which run them; tests check
that every job here names a task the worker has.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Job:
    """One task for the workers, by name.

    A nudge only hurries what the beat does anyway (the tick): when the broker cannot take
    it, that is logged and the work it was for still happens, a few seconds later.
    """

    task: str
    args: tuple[Any, ...] = ()
    nudge: bool = False


def sign_up(form: dict[str, Any], ip: str | None) -> Job:
    """A signup from the signup page, checked and counted: the worker records it and
    decides what, if anything, to send (the page's answer is the same whatever it finds)."""
    return Job("newsletter.sign_up", (dict(form), ip))


def send_confirmation(subscriber_id: int, newsletter_ids: list[int] | None = None) -> Job:
    """The double opt-in email, asking about these newsletters (every pending one if none)."""
    if newsletter_ids is None:
        return Job("newsletter.send_confirmation", (subscriber_id,))
    return Job("newsletter.send_confirmation", (subscriber_id, list(newsletter_ids)))


def send_welcome(subscriber_id: int, newsletter_ids: list[int]) -> Job:
    """The welcome email, for the newsletters just confirmed."""
    return Job("newsletter.send_welcome", (subscriber_id, list(newsletter_ids)))


def send_goodbye(subscriber_id: int, newsletter_ids: list[int]) -> Job:
    """The goodbye email, for the newsletters just left."""
    return Job("newsletter.send_goodbye", (subscriber_id, list(newsletter_ids)))


def send_data_link(subscriber_id: int, action: str) -> Job:
    """The link to a reader's data (action "export") or to confirm its erasure ("erase")."""
    return Job("newsletter.send_data_link", (subscriber_id, action))


def send_test(test_send_id: int) -> Job:
    """An editor's test send: the digest as it stands, marked [TEST], to their addresses."""
    return Job("newsletter.send_test", (test_send_id,))


def tick() -> Job:
    """Start what is due now rather than at the next beat (every 10 s)."""
    return Job("newsletter.tick", nudge=True)


def dispatch_digest(digest_id: int) -> Job:
    """Walk a started digest's readers, one send_batch job per page."""
    return Job("newsletter.dispatch_digest", (digest_id,))


def send_batch(digest_id: int, delivery_ids: list[int]) -> Job:
    """Send these deliveries of a digest over one SMTP session."""
    return Job("newsletter.send_batch", (digest_id, list(delivery_ids)))


def process_inbound(raw_base64: str, recipients: list[str]) -> Job:
    """A message to our bounce addresses: a bounce, a complaint or a mailed unsubscribe."""
    return Job("newsletter.process_inbound", (raw_base64, list(recipients)))
