"""Recurring digests: newsletters, their cron schedules in local time, and the digests due."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

from croniter import croniter  # type: ignore[import-untyped]
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from newsletter.core import clock
from newsletter.core.clock import utcnow
from newsletter.core.models import Digest, Newsletter, Subscription, SubscriptionStatus
from newsletter.core.validation import (
    InvalidInput,
    clean_language,
    clean_text,
    clean_time_zone,
)
from newsletter.digests import lifecycle, waves
from newsletter.subscribers import newsletters as newsletter_store
from newsletter.subscribers.newsletters import clean_description as _clean_description

log = logging.getLogger("newsletter.schedules")

# A digest every minute is a mistake, not a newsletter.
MIN_MINUTES_BETWEEN_DIGESTS = 15
MAX_CRON_LENGTH = 100
DEFAULT_GRACE = timedelta(hours=1)

_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]*[a-z0-9]$")
_FIELD_NAMES = ("minute", "hour", "day-of-month", "month", "day-of-week")
# Numbers, '*', ranges, lists and steps everywhere; croniter's extras only where they
# mean something fixed: 'L' (last day of the month) and '#' (the 2nd Monday: 1#2).
# Its 'H' (hashed) and 'R' (random) are refused: a schedule must say when it runs.
_FIELD_SYNTAX = (
    re.compile(r"^[0-9*,/-]+$"),
    re.compile(r"^[0-9*,/-]+$"),
    re.compile(r"^(?:[0-9*,/-]+|l)$"),
    re.compile(r"^[0-9a-z*,/-]+$"),
    re.compile(r"^[0-9a-z*,/#-]+$"),
)
_MONTH_NAMES = frozenset(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
)
_DAY_NAMES = frozenset(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))
_EXAMPLE = "for example '0 7 * * *' (07:00 every day) or '0 7 * * 1-5' (07:00 on weekdays)"
# Wider than any clock change (a fall-back repeats at most two hours of the wall clock):
# how far past `now` on the wall clock a due time may lie and still be in the past.
_CLOCK_CHANGE_MARGIN = timedelta(hours=3)
# Just before a due time: the previous due time is the latest at or before this.
_JUST_BEFORE = timedelta(microseconds=1)
# How far around now the operators' view of "the day's waves" reaches.
_WAVES_SPAN = timedelta(hours=24)


def validate_cron(expression: str) -> str:
    """A 5-field cron schedule with single spaces, or InvalidInput("schedule", why).

    Digests must be at least MIN_MINUTES_BETWEEN_DIGESTS apart on the wall clock. The
    rule is read from the minutes and hours the schedule names, so it holds on every day,
    not only on the next two: '*/5 9 * * 1-5' is refused on a Saturday too. Two hours in
    a row at 23 and 0 count as consecutive whatever the days named (rarely too strict).
    """
    if not isinstance(expression, str):
        raise InvalidInput("schedule", "The schedule must be text.")
    text = clean_text("schedule", expression, max_length=MAX_CRON_LENGTH)
    if not text:
        raise InvalidInput(
            "schedule",
            "Please give a schedule in cron form (minute hour day-of-month month "
            f"day-of-week), {_EXAMPLE}.",
        )
    if text.startswith("@"):
        raise InvalidInput(
            "schedule",
            f"Shortcuts such as {text.split()[0]!r} are not accepted; write the five "
            f"fields instead, {_EXAMPLE}.",
        )
    fields = text.split()
    if len(fields) != len(_FIELD_NAMES):
        seconds = " Schedules by the second are not supported." if len(fields) > 5 else ""
        raise InvalidInput(
            "schedule",
            f"A schedule has five fields (minute hour day-of-month month day-of-week); "
            f"{text!r} has {len(fields)}.{seconds} Write five fields, {_EXAMPLE}.",
        )
    for name, field, syntax in zip(_FIELD_NAMES, fields, _FIELD_SYNTAX, strict=True):
        _check_field(name, field, syntax)
    normalised = " ".join(fields)
    try:
        expanded, _ = croniter.expand(normalised)
        croniter(normalised, datetime(2000, 1, 1)).get_next(datetime)
    except (ValueError, TypeError, KeyError) as exc:
        if "failed to find" in str(exc):
            raise InvalidInput(
                "schedule",
                f"{normalised!r} never comes round: no month has that day (like 30 February).",
            ) from None
        raise InvalidInput(
            "schedule",
            f"{normalised!r} is not a schedule we understand: minutes run 0-59, hours 0-23, "
            "days of the month 1-31, months 1-12 (or jan-dec) and days of the week 0-7 "
            "(or sun-sat), with '*', ranges (1-5), lists (1,15) and steps (*/2).",
        ) from None
    gap = _shortest_gap_minutes(expanded[0], expanded[1])
    if gap < MIN_MINUTES_BETWEEN_DIGESTS:
        raise InvalidInput(
            "schedule",
            f"{normalised!r} would send digests only {gap} minute{'s' if gap > 1 else ''} "
            f"apart; digests must be at least {MIN_MINUTES_BETWEEN_DIGESTS} minutes apart.",
        )
    return normalised


def validate_time_zone(name: str) -> str:
    """An IANA time zone name (Europe/Lisbon, Asia/Macau), or InvalidInput("time_zone", why)."""
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput(
            "time_zone", "Please choose a time zone, such as Europe/Lisbon or Asia/Macau."
        )
    try:
        return clean_time_zone(name, default="")
    except InvalidInput as exc:
        raise InvalidInput(
            "time_zone", f"{exc.message} Use a name such as Europe/Lisbon or Asia/Macau."
        ) from None


def latest_due(cron: str, time_zone: str, now: datetime) -> datetime:
    """The latest due time at or before now, read on the wall clock of time_zone; aware UTC.

    A due time the clocks skip (01:30 on the morning they jump from 01:00 to 02:00) comes
    at the jump; one they repeat (when they fall back) comes once, the first time round.
    """
    zone, wall_now = _wall_clock(time_zone, now)
    earlier = _due_times(cron, zone, wall_now + _CLOCK_CHANGE_MARGIN, backwards=True)
    return next(due for due in earlier if due <= now)


def next_due(cron: str, time_zone: str, now: datetime) -> datetime:
    """The first due time after now, read on the wall clock of time_zone; aware UTC."""
    zone, wall_now = _wall_clock(time_zone, now)
    later = _due_times(cron, zone, wall_now - _CLOCK_CHANGE_MARGIN, backwards=False)
    return next(due for due in later if due > now)


def plan_recurring(
    session: Session, *, now: datetime | None = None, grace: timedelta = DEFAULT_GRACE
) -> list[int]:
    """Create the digest each scheduled newsletter is due; the ids of the digests created.

    Only the latest due time counts, and only while it is at most `grace` old: a scheduler
    that was down for a day does not send yesterday's digest. Due times before the
    newsletter was created are not sent either. The model keeps no record of when a
    schedule was set, so a schedule set (or changed) now makes the digest of its latest
    due time if that is within `grace`: set '0 7 * * *' at 07:20 and the 07:00 digest goes
    at the next tick; nothing older is ever made up for.

    The digest's schedule_key ("<newsletter id>@<due time>") is unique: a second scheduler
    doing the same at the same moment fails its insert, inside a savepoint, and makes
    nothing. The caller commits.
    """
    now = now or utcnow()
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    scheduled = session.scalars(
        select(Newsletter).where(Newsletter.schedule_cron.is_not(None)).order_by(Newsletter.id)
    ).all()
    created = []
    for newsletter in scheduled:
        if not newsletter.schedule_cron:
            continue
        if newsletter.schedule_in_reader_zones:
            created.extend(_plan_waves(session, newsletter, now=now, grace=grace))
            continue
        try:
            due = latest_due(newsletter.schedule_cron, newsletter.time_zone, now)
        except (ValueError, KeyError, TypeError) as exc:
            # One newsletter with a broken stored schedule must not stop the others.
            log.warning("newsletter %s: cannot read its schedule: %s", newsletter.slug, exc)
            continue
        if now - due > grace or due < newsletter.created_at:
            continue
        digest = _make_once(
            session, newsletter, key=f"{newsletter.id}@{due.isoformat()}", due=due, now=now
        )
        if digest is not None:
            log.info("newsletter %s: digest %s scheduled for %s", newsletter.slug, digest.id, due)
            created.append(digest.id)
    return created


def _make_once(
    session: Session,
    newsletter: Newsletter,
    *,
    key: str,
    due: datetime,
    now: datetime,
    **fields: Any,
) -> Digest | None:
    """The digest of one due time, under its unique schedule key; None when it was made
    already, by an earlier tick or by another scheduler at this very moment (whose insert
    won: ours fails inside a savepoint, and the rest of the tick goes on)."""
    if session.scalar(select(Digest.id).where(Digest.schedule_key == key)) is not None:
        return None
    _begin_before_savepoint(session)
    try:
        with session.begin_nested():
            return lifecycle.create_digest(
                session,
                newsletter_slug=newsletter.slug,
                send_at=due,
                schedule_key=key,
                now=now,
                **fields,
            )
    except IntegrityError:
        log.info(
            "newsletter %s: the digest due %s came from another scheduler", newsletter.slug, due
        )
        return None


def waves_due(
    cron: str, zones: Iterable[str], *, now: datetime, upcoming: bool = False
) -> list[waves.Wave]:
    """A schedule read on each zone's own clock: its waves, zones sharing an instant together.

    Each zone's latest due time at or before now (with `upcoming`, its first after now
    too), DST-correct: Lisbon's 07:00 is 07:00 UTC in winter and 06:00 UTC in summer.
    Each wave's window starts at its previous due time, a day earlier on its wall clock.
    """
    dues = []
    for zone in set(zones):
        for due in [latest_due(cron, zone, now)] + (
            [next_due(cron, zone, now)] if upcoming else []
        ):
            dues.append((zone, due, latest_due(cron, zone, due - _JUST_BEFORE)))
    return waves.group_waves(dues)


def plan_local_time_send(
    session: Session,
    *,
    newsletter_slug: str,
    local_time: str,
    since: datetime | None = None,
    subject: str | None = None,
    now: datetime | None = None,
) -> list[Digest]:
    """A one-off send at the next `local_time` on each reader's clock: one digest per wave.

    Raises UnknownNewsletter or InvalidInput, and then creates nothing.
    """
    now = now or utcnow()
    clean_time = waves.validate_local_time(local_time)
    newsletter = newsletter_store.get_by_slug(session, newsletter_slug)
    zones = waves.zones_in_use(session, newsletter) or {newsletter.time_zone: 0}
    cron = waves.daily_cron(clean_time)
    dues = []
    for zone in zones:
        due = next_due(cron, zone, now)
        dues.append((zone, due, latest_due(cron, zone, due - _JUST_BEFORE)))
    made = []
    for wave in waves.group_waves(dues):
        made.append(
            lifecycle.create_digest(
                session,
                newsletter_slug=newsletter.slug,
                since=since or wave.since,
                until=wave.due,
                send_at=wave.due,
                subject=subject,
                local_time=wave.local_time,
                local_day=wave.local_day,
                now=now,
            )
        )
    return made


def day_waves(
    session: Session, newsletter: Newsletter, *, now: datetime | None = None
) -> list[waves.WaveStatus]:
    """A local-time newsletter's waves from a day ago to a day ahead: sent, sending, next.

    The recurring waves of its schedule, whether made yet or not, and the one-off waves
    (`digest send --local-time`) in the same span.
    """
    now = now or utcnow()
    made = session.scalars(
        select(Digest)
        .where(
            Digest.newsletter_id == newsletter.id,
            Digest.local_day.is_not(None),
            Digest.scheduled_for >= now - _WAVES_SPAN,
            Digest.scheduled_for <= now + _WAVES_SPAN,
        )
        .order_by(Digest.scheduled_for, Digest.id)
    ).all()
    recurring = bool(newsletter.schedule_cron and newsletter.schedule_in_reader_zones)
    if not recurring and not made:
        return []  # a newsletter on its own clock: no reader counted for nothing
    counted = waves.zones_in_use(session, newsletter)
    zones = set(counted) or {newsletter.time_zone}
    planned: list[waves.Wave] = []
    if newsletter.schedule_cron and recurring:
        try:
            planned = [
                wave
                for wave in waves_due(newsletter.schedule_cron, zones, now=now, upcoming=True)
                if abs(wave.due - now) <= _WAVES_SPAN
            ]
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("newsletter %s: cannot read its schedule: %s", newsletter.slug, exc)
    return waves.wave_statuses(planned, made, counted, now=now)


def set_schedule(
    session: Session,
    *,
    slug: str,
    cron: str | None,
    time_zone: str | None,
    local_time: str | None = None,
    in_reader_zones: bool | None = None,
) -> Newsletter:
    """Give a newsletter a schedule (None or '' clears it) and, if given, a time zone.

    `local_time` ("07:00") is the schedule "every day at that time on each reader's own
    clock", instead of a cron; `in_reader_zones` says whether a cron is read on each
    reader's clock (True) or the newsletter's (False); None keeps what it was, except
    that a `local_time` always means readers' clocks.
    Everything is checked before anything changes. Raises UnknownNewsletter or InvalidInput.
    """
    newsletter = newsletter_store.get_by_slug(session, slug)
    if local_time is not None and cron and cron.strip():
        raise InvalidInput(
            "local_time", "Give either a cron schedule or a local time such as 07:00, not both."
        )
    if local_time is not None:
        new_cron: str | None = waves.daily_cron(local_time)
        in_reader_zones = True
    else:
        new_cron = validate_cron(cron) if cron and cron.strip() else None
    new_time_zone = validate_time_zone(time_zone) if time_zone is not None else None
    newsletter.schedule_cron = new_cron
    if in_reader_zones is not None:
        newsletter.schedule_in_reader_zones = in_reader_zones
    if new_time_zone is not None:
        newsletter.time_zone = new_time_zone
    session.flush()
    return newsletter


def add_newsletter(
    session: Session,
    *,
    slug: str,
    name: str,
    language: str = "en",
    time_zone: str = "Europe/Lisbon",
    cron: str | None = None,
    description: str = "",
    names: Mapping[str, str] | None = None,
    descriptions: Mapping[str, str] | None = None,
) -> Newsletter:
    """A new newsletter readers can subscribe to, or InvalidInput and nothing added.

    A slug taken by a concurrent caller between our check and our insert surfaces as
    InvalidInput too; the session must then be rolled back, as after any failed flush.
    """
    clean_slug = _clean_slug(slug)
    clean_name = clean_text("name", name, max_length=200)
    if not clean_name:
        raise InvalidInput("name", "Please give the newsletter a name.")
    clean_lang = clean_language(language, default="en")
    clean_zone = validate_time_zone(time_zone)
    clean_cron = validate_cron(cron) if cron and cron.strip() else None
    clean_description = _clean_description(description)
    if session.scalar(select(Newsletter.id).where(Newsletter.slug == clean_slug)) is not None:
        raise _slug_taken(clean_slug)
    newsletter = Newsletter(
        slug=clean_slug,
        name=clean_name,
        language=clean_lang,
        time_zone=clean_zone,
        schedule_cron=clean_cron,
        description=clean_description,
    )
    # Its name and description in the readers' other languages, if the editor gave them.
    newsletter_store.set_translations(newsletter, names=names, descriptions=descriptions)
    session.add(newsletter)
    try:
        session.flush()
    except IntegrityError:
        raise _slug_taken(clean_slug) from None
    return newsletter


def next_run(session: Session, newsletter: Newsletter, *, now: datetime) -> datetime | None:
    """When a newsletter's recurring schedule sends next (UTC), or None: no (readable) schedule."""
    if not newsletter.schedule_cron:
        return None
    # On readers' clocks, the next is the first wave to come, whichever zone's it is.
    zones = (
        set(waves.zones_in_use(session, newsletter)) or {newsletter.time_zone}
        if newsletter.schedule_in_reader_zones
        else {newsletter.time_zone}
    )
    try:
        return min(next_due(newsletter.schedule_cron, zone, now) for zone in zones)
    except (ValueError, KeyError, TypeError) as exc:
        log.warning("newsletter %s: cannot read its schedule: %s", newsletter.slug, exc)
        return None


def describe_newsletters(session: Session, *, now: datetime | None = None) -> list[dict[str, Any]]:
    """Every newsletter as plain data: what `newsletter newsletters list --json` prints."""
    now = now or utcnow()
    rows = session.execute(
        select(Subscription.newsletter_id, func.count())
        .where(Subscription.status == SubscriptionStatus.SUBSCRIBED)
        .group_by(Subscription.newsletter_id)
    ).all()
    subscribed = {newsletter_id: int(count) for newsletter_id, count in rows}
    described = []
    for newsletter in newsletter_store.list_newsletters(session):
        upcoming = next_run(session, newsletter, now=now)
        described.append(
            {
                "slug": newsletter.slug,
                "name": newsletter.name,
                "translations": newsletter.translations or {},
                "language": newsletter.language,
                "time_zone": newsletter.time_zone,
                "schedule": newsletter.schedule_cron or None,
                "in_reader_zones": newsletter.schedule_in_reader_zones,
                "order_by_clicks": newsletter.order_by_clicks,
                "next_due": upcoming.isoformat() if upcoming else None,
                "subscribers": subscribed.get(newsletter.id, 0),
            }
        )
    return described


def describe_schedule(cron: str) -> str:
    """A schedule in words for the common shapes ('07:00 on Monday to Friday'), else the cron."""
    fields = cron.split()
    if len(fields) != len(_FIELD_NAMES):
        return f"cron '{cron}'"
    minute, hour, day, month, weekday = (field.lower() for field in fields)
    if not minute.isdigit() or not re.fullmatch(r"\d+(?:,\d+)*", hour):
        return f"cron '{cron}'"
    times = " and ".join(f"{int(h):02d}:{int(minute):02d}" for h in hour.split(","))
    if month != "*":
        return f"{times}, cron '{cron}'"
    if day == "*" and weekday == "*":
        return f"{times} every day"
    if day == "*":
        days = _describe_weekdays(weekday)
        return f"{times} on {days}" if days else f"{times}, cron '{cron}'"
    if weekday == "*" and re.fullmatch(r"\d+(?:,\d+)*", day):
        ordinals = " and ".join(_ordinal(int(d)) for d in day.split(","))
        return f"{times} on the {ordinals} of every month"
    if weekday == "*" and day == "l":
        return f"{times} on the last day of every month"
    return f"{times}, cron '{cron}'"


# --- helpers -------------------------------------------------------------------------


def _plan_waves(
    session: Session, newsletter: Newsletter, *, now: datetime, grace: timedelta
) -> list[int]:
    """A local-time newsletter's due waves, each made once; the ids of the digests made."""
    zones = waves.zones_in_use(session, newsletter)
    if not zones or not newsletter.schedule_cron:
        return []
    try:
        due_waves = waves_due(newsletter.schedule_cron, zones, now=now)
    except (ValueError, KeyError, TypeError) as exc:
        log.warning("newsletter %s: cannot read its schedule: %s", newsletter.slug, exc)
        return []
    created = []
    for wave in due_waves:
        if now - wave.due > grace or wave.due < newsletter.created_at:
            continue
        digest = _make_once(
            session,
            newsletter,
            key=wave.schedule_key(newsletter.id),
            due=wave.due,
            now=now,
            since=wave.since,
            until=wave.due,
            local_time=wave.local_time,
            local_day=wave.local_day,
        )
        if digest is None:
            continue
        log.info(
            "newsletter %s: wave %s (%s %s, %s) scheduled for %s",
            newsletter.slug,
            digest.id,
            wave.local_time,
            clock.utc_offset_text(wave.utc_offset),
            " ".join(wave.zones),
            wave.due,
        )
        created.append(digest.id)
    return created


def _check_field(name: str, field: str, syntax: re.Pattern[str]) -> None:
    words = set(re.findall(r"[a-z]+", field.lower()))
    known = {"day-of-month": {"l"}, "month": _MONTH_NAMES, "day-of-week": _DAY_NAMES}.get(
        name, set()
    )
    if not syntax.match(field.lower()) or not words <= known:
        names = {
            "month": " or names (jan-dec)",
            "day-of-week": " or names (sun-sat), and 1#2 for the 2nd Monday",
            "day-of-month": ", or L for the last day",
        }.get(name, "")
        raise InvalidInput(
            "schedule",
            f"The {name} field {field!r} is not understood: use numbers{names}, with '*', "
            "ranges (1-5), lists (1,15) and steps (*/2).",
        )


def _shortest_gap_minutes(minutes: list[Any], hours: list[Any]) -> int:
    """The fewest minutes between two due times on the wall clock, given minutes and hours."""
    minute_list = sorted(range(60) if minutes == ["*"] else {int(m) for m in minutes})
    hour_set = set(range(24) if hours == ["*"] else {int(h) for h in hours})
    gaps = [b - a for a, b in pairwise(minute_list)]
    if any((hour + 1) % 24 in hour_set for hour in hour_set):
        gaps.append(60 - minute_list[-1] + minute_list[0])
    return min(gaps, default=60)


def _wall_clock(time_zone: str, now: datetime) -> tuple[ZoneInfo, datetime]:
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    zone = clock.zone(time_zone)
    return zone, now.astimezone(zone).replace(tzinfo=None)


def _due_times(
    cron: str, zone: ZoneInfo, start: datetime, *, backwards: bool
) -> Iterator[datetime]:
    """Due times as aware UTC, walking the wall clock from start (naive, local) either way.

    Wall-clock order is UTC order here (ties where the clocks skip), so the first due time
    past `now` is the nearest one.
    """
    times = croniter(cron, start)
    step = times.get_prev if backwards else times.get_next
    while True:
        wall: datetime = step(datetime)
        yield _to_utc(wall, zone)


def _to_utc(wall: datetime, zone: ZoneInfo) -> datetime:
    """The instant a naive local time names; a time the clocks skip becomes the jump itself."""
    first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if first.astimezone(zone).replace(tzinfo=None) == wall:
        return first  # also the first of the two instants when the clocks fall back
    # In a gap, fold=0 reads the time with the offset before the jump (an instant after
    # it) and fold=1 with the offset after (an instant before it): bisect for the jump.
    before = int(wall.replace(tzinfo=zone, fold=1).astimezone(UTC).timestamp())
    after = int(first.timestamp())
    offset_after = first.astimezone(zone).utcoffset()
    while after - before > 1:
        middle = (before + after) // 2
        if datetime.fromtimestamp(middle, zone).utcoffset() == offset_after:
            after = middle
        else:
            before = middle
    return datetime.fromtimestamp(after, UTC)


def _begin_before_savepoint(session: Session) -> None:
    # pysqlite (Python < 3.12) sends no BEGIN before a SAVEPOINT, so SQLite opens the
    # transaction for the savepoint and its RELEASE commits: the caller could no longer
    # roll the digest back. Beginning here keeps the savepoint inside the caller's
    # transaction; IMMEDIATE takes the write lock now, so a second scheduler waits for the
    # first to commit and then meets its schedule_key instead of a stale snapshot.
    connection = session.connection()
    if connection.dialect.name != "sqlite":
        return
    driver = connection.connection.driver_connection
    if driver is not None and not driver.in_transaction:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def _clean_slug(slug: str) -> str:
    if not isinstance(slug, str):
        raise InvalidInput("slug", "The newsletter's short name (slug) must be text.")
    value = slug.strip().lower()
    if not 2 <= len(value) <= 64 or not _SLUG.match(value):
        raise InvalidInput(
            "slug",
            f"{slug[:70]!r} cannot be a newsletter's short name (slug): use 2 to 64 lowercase "
            "letters, digits and dashes, starting and ending with a letter or digit, "
            "e.g. 'macau-weekly'.",
        )
    return value


def _slug_taken(slug: str) -> InvalidInput:
    return InvalidInput(
        "slug", f"There is already a newsletter called {slug!r}; choose another short name."
    )


_WEEKDAY_NAMES = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")


def _describe_weekdays(field: str) -> str | None:
    """'1-5' as 'Monday to Friday', '1,3' as 'Monday and Wednesday'; None for other shapes."""
    names = {name[:3].lower(): number for number, name in enumerate(_WEEKDAY_NAMES)}

    def day(value: str) -> str | None:
        number = names.get(value) if not value.isdigit() else int(value) % 7
        return _WEEKDAY_NAMES[number] if number is not None and number < 7 else None

    parts = []
    for part in field.split(","):
        ends = part.split("-")
        shown = [day(end) for end in ends]
        if len(ends) > 2 or None in shown:
            return None
        parts.append(" to ".join(str(name) for name in shown))
    return " and ".join(parts)


def _ordinal(number: int) -> str:
    if 10 <= number % 100 <= 20:
        return f"{number}th"
    suffix = {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")
    return f"{number}{suffix}"
