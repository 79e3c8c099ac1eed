"""What will be sent next: scheduled digests, waves planned, and each schedule's next run."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.core import clock
from newsletter.core.clock import utcnow
from newsletter.core.models import Digest, DigestState
from newsletter.digests import schedules
from newsletter.subscribers import newsletters as newsletter_store

# Kinds of upcoming send: a digest made and scheduled (one-off, or a recurring one already
# made), one wave of a send at each reader's local time, and a recurring schedule's next
# run, which has no digest until the beat makes it.
DIGEST = "digest"
WAVE = "wave"
RECURRING = "recurring"

LIMIT = 20


@dataclass(frozen=True)
class UpcomingSend:
    """One send to come, as the dashboard, the digest list and `newsletter status` show it."""

    kind: str
    newsletter: str
    due: datetime
    time_zone: str
    digest_id: int | None = None
    subject: str | None = None
    schedule: str | None = None

    @property
    def local(self) -> str:
        """On the newsletter's clock, zone named: 2026-12-07 07:00 Europe/Lisbon (UTC+0)."""
        return clock.local_text(self.due, self.time_zone)

    @property
    def words(self) -> str:
        """`next run of daily: 2026-12-07 07:00 Europe/Lisbon (UTC+0)` and the like."""
        if self.kind == RECURRING:
            return f"next run of {self.newsletter}: {self.local}"
        what = "wave" if self.kind == WAVE else "digest"
        subject = f" “{self.subject}”" if self.subject else ""
        return f"{what} #{self.digest_id} of {self.newsletter}: {self.local}{subject}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "id": self.digest_id,
            "newsletter": self.newsletter,
            "subject": self.subject,
            "scheduled_for": self.due.isoformat(),
            "local": self.local,
            "schedule": self.schedule,
            "words": self.words,
        }


def upcoming_sends(
    session: Session, *, now: datetime | None = None, limit: int = LIMIT
) -> list[UpcomingSend]:
    """Every send to come, soonest first: scheduled digests and waves, then each recurring
    schedule's next run (one per newsletter: the runs after it are the same story)."""
    now = now or utcnow()
    found = [
        UpcomingSend(
            kind=WAVE if digest.local_day is not None else DIGEST,
            newsletter=digest.newsletter.slug,
            due=digest.scheduled_for or now,
            time_zone=digest.newsletter.time_zone,
            digest_id=digest.id,
            subject=digest.subject,
        )
        for digest in session.scalars(
            select(Digest)
            .where(Digest.state == DigestState.SCHEDULED)
            .order_by(Digest.scheduled_for, Digest.id)
            .limit(limit)
        )
    ]
    for newsletter in newsletter_store.list_newsletters(session):
        due = schedules.next_run(session, newsletter, now=now)
        if due is not None:
            found.append(
                UpcomingSend(
                    kind=RECURRING,
                    newsletter=newsletter.slug,
                    due=due,
                    time_zone=newsletter.time_zone,
                    schedule=schedules.describe_schedule(newsletter.schedule_cron or ""),
                )
            )
    found.sort(key=lambda send: (send.due, send.digest_id or 0))
    return found[:limit]
