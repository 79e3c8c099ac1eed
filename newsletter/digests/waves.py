"""Local-time sending: a schedule read on each reader's own clock, sent in waves.

A wave is a digest whose `scheduled_for` is one UTC instant and whose `local_time` and
`local_day` say which wall-clock time and day it is for its readers: every reader whose
zone (or, without a usable one, the newsletter's) shows that time at that instant. Zones
with the same offset that day share a wave; each reader gets one wave a day.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, timezone
from functools import lru_cache

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from newsletter.core import clock
from newsletter.core.models import Delivery, DeliveryStatus, Digest, Newsletter, Subscriber
from newsletter.core.validation import InvalidInput
from newsletter.subscribers.eligibility import may_be_mailed

_LOCAL_TIME = re.compile(r"^(\d{1,2}):(\d{2})$")


@dataclass(frozen=True)
class Wave:
    """One UTC instant of a local-time send, and the zones whose clocks read local_time then."""

    due: datetime
    local_time: str
    local_day: date
    zones: tuple[str, ...]
    since: datetime  # the same wave's previous due time: the start of its articles' window

    @property
    def utc_offset(self) -> timedelta:
        return wave_offset(self.due, self.local_time, self.local_day)

    def schedule_key(self, newsletter_id: int) -> str:
        """The wave's unique key among digests. Its day belongs in it: Pacific/Honolulu's
        07:00 on the 4th and Pacific/Kiritimati's on the 5th are the same instant."""
        return f"{newsletter_id}@{self.due.isoformat()}~{self.local_day}~{self.local_time}"


@dataclass
class WaveStatus:
    """A wave as operators see it: when, for whom, and how far it got."""

    due: datetime
    local_time: str
    local_day: date
    utc_offset: str
    zones: list[str]
    readers: int
    state: str  # a digest's state, "planned" (no digest yet) or "next"
    digest_id: int | None = None
    counts: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {
            "local_time": self.local_time,
            "local_day": self.local_day.isoformat(),
            "utc_offset": self.utc_offset,
            "zones": self.zones,
            "utc": self.due.isoformat(),
            "readers": self.readers,
            "state": self.state,
            "digest_id": self.digest_id,
        }


def validate_local_time(text: str) -> str:
    """A wall-clock time as HH:MM ("7:00" → "07:00"), or InvalidInput("local_time", why)."""
    match = _LOCAL_TIME.match(text.strip()) if isinstance(text, str) else None
    if match is None or int(match[1]) > 23 or int(match[2]) > 59:
        shown = text[:20] if isinstance(text, str) else ""
        raise InvalidInput(
            "local_time",
            f"{shown!r} is not a time of day: give hours and minutes from 00:00 to 23:59, "
            "such as 07:00.",
        )
    return f"{int(match[1]):02d}:{match[2]}"


def daily_cron(local_time: str) -> str:
    """The cron of 'every day at local_time': '07:00' → '0 7 * * *'."""
    hour, minute = validate_local_time(local_time).split(":")
    return f"{int(minute)} {int(hour)} * * *"


def local_moment(day: date, local_time: str) -> datetime:
    """The naive wall-clock moment local_time on day."""
    hour, minute = local_time.split(":")
    return datetime.combine(day, time(int(hour), int(minute)))


def reader_zone(time_zone: str | None, fallback: str) -> str:
    """The zone a reader's wave is read on: theirs when this machine knows it, else fallback."""
    return time_zone if time_zone and _known_zone(time_zone) else fallback


def group_waves(dues: Iterable[tuple[str, datetime, datetime]]) -> list[Wave]:
    """Waves from (zone, due time, previous due time) triples: zones sharing an instant and
    a wall-clock time share a wave, in order of the instant."""
    grouped: dict[tuple[datetime, str, date], list[str]] = defaultdict(list)
    since: dict[tuple[datetime, str, date], datetime] = {}
    for zone, due, previous in sorted(dues):
        wall = clock.in_zone(due, zone)
        key = (due, f"{wall:%H:%M}", wall.date())
        if zone not in grouped[key]:
            grouped[key].append(zone)
        # Zones sharing a wave today may not have shared it yesterday (one changed its
        # clocks): the earliest start misses nothing, and history keeps out repeats.
        since[key] = min(since.get(key, previous), previous)
    return [
        Wave(key[0], key[1], key[2], tuple(grouped[key]), since[key]) for key in sorted(grouped)
    ]


def zones_in_use(session: Session, newsletter: Newsletter) -> dict[str, int]:
    """The zones of the newsletter's readers who may be mailed it, and how many in each.

    A reader without a usable zone counts in the newsletter's.
    """
    rows = session.execute(
        select(Subscriber.time_zone, func.count())
        .where(may_be_mailed(Subscriber.id, newsletter.id))
        .group_by(Subscriber.time_zone)
    ).all()
    counted: dict[str, int] = defaultdict(int)
    for time_zone, count in rows:
        counted[reader_zone(time_zone, newsletter.time_zone)] += int(count)
    return dict(counted)


def in_wave(zone: str, *, due: datetime, local_time: str, local_day: date) -> bool:
    """Whether a zone's clock reads local_time on local_day at the instant due (cached)."""
    return _in_wave(zone, due.astimezone(UTC), local_time, local_day)


def wave_readers(session: Session, digest: Digest, subscriber_ids: Sequence[int]) -> set[int]:
    """Of these readers, the ones this wave is for: their zone reads its time at its instant,
    and no other wave of the newsletter has been theirs on the same day and time.

    A reader who moved from Macau to Lisbon after Macau's 07:00 wave is not mailed again by
    Lisbon's 07:00 wave of the same day.
    """
    if digest.local_time is None or digest.local_day is None or digest.scheduled_for is None:
        return set(subscriber_ids)
    if not subscriber_ids:
        return set()
    fallback = digest.newsletter.time_zone
    rows = session.execute(
        select(Subscriber.id, Subscriber.time_zone).where(Subscriber.id.in_(subscriber_ids))
    ).all()
    due, local_time, local_day = digest.scheduled_for, digest.local_time, digest.local_day
    mine = {
        subscriber_id
        for subscriber_id, time_zone in rows
        if in_wave(
            reader_zone(time_zone, fallback), due=due, local_time=local_time, local_day=local_day
        )
    }
    if not mine:
        return mine
    had_one = session.scalars(
        select(Delivery.subscriber_id)
        .join(Digest, Digest.id == Delivery.digest_id)
        .where(
            Digest.newsletter_id == digest.newsletter_id,
            Digest.local_day == local_day,
            Digest.local_time == local_time,
            Digest.id != digest.id,
            Delivery.subscriber_id.in_(list(mine)),
            # A reader skipped (nothing new, or the wave cancelled) was sent nothing.
            Delivery.status != DeliveryStatus.SKIPPED,
        )
    )
    return mine - set(had_one)


def wave_offset(due: datetime, local_time: str, local_day: date) -> timedelta:
    """The UTC offset of a wave's readers: their wall clock at its instant, less UTC's."""
    return local_moment(local_day, local_time) - due.astimezone(UTC).replace(tzinfo=None)


def dateline(digest: Digest) -> datetime | None:
    """A wave's instant on its readers' clock (its date is their day); None for other digests."""
    if digest.local_time is None or digest.local_day is None or digest.scheduled_for is None:
        return None
    offset = wave_offset(digest.scheduled_for, digest.local_time, digest.local_day)
    return digest.scheduled_for.astimezone(timezone(offset))


def wave_statuses(
    planned: Sequence[Wave],
    made: Sequence[Digest],
    readers: dict[str, int],
    *,
    now: datetime,
) -> list[WaveStatus]:
    """Waves as operators see them: the planned ones, and the wave digests already made
    (by state); the first still to come is "next". `readers` counts readers by zone."""
    zones = sorted(readers)
    # By instant, day and time: two zones a day apart (UTC-10 and UTC+14) share an instant.
    statuses: dict[tuple[datetime, date, str], WaveStatus] = {}
    for wave in planned:
        statuses[(wave.due, wave.local_day, wave.local_time)] = WaveStatus(
            due=wave.due,
            local_time=wave.local_time,
            local_day=wave.local_day,
            utc_offset=clock.utc_offset_text(wave.utc_offset),
            zones=list(wave.zones),
            readers=sum(readers.get(zone, 0) for zone in wave.zones),
            state="planned",
        )
    for digest in made:
        if digest.scheduled_for is None or digest.local_time is None or digest.local_day is None:
            continue
        due, local_time, local_day = digest.scheduled_for, digest.local_time, digest.local_day
        key = (due, local_day, local_time)
        if key not in statuses:
            members = [
                zone
                for zone in zones
                if in_wave(zone, due=due, local_time=local_time, local_day=local_day)
            ]
            statuses[key] = WaveStatus(
                due=due,
                local_time=local_time,
                local_day=local_day,
                utc_offset=clock.utc_offset_text(wave_offset(due, local_time, local_day)),
                zones=members,
                readers=sum(readers.get(zone, 0) for zone in members),
                state="planned",
            )
        statuses[key].state = digest.state
        statuses[key].digest_id = digest.id
    shown = sorted(
        statuses.values(), key=lambda status: (status.due, status.local_day, status.local_time)
    )
    for status in shown:
        if status.due > now and status.state in ("planned", "scheduled"):
            status.state = "next"
            break
    return shown


# --- helpers -------------------------------------------------------------------------


@lru_cache(maxsize=256)
def _known_zone(name: str) -> bool:
    try:
        clock.zone(name)
    except (InvalidInput, ValueError, KeyError, OSError):
        return False
    return True


@lru_cache(maxsize=4096)
def _in_wave(zone: str, due: datetime, local_time: str, local_day: date) -> bool:
    wall = clock.in_zone(due, zone)
    return f"{wall:%H:%M}" == local_time and wall.date() == local_day
