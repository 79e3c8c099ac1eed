"""The one clock: now, time zones, what a time typed without a zone means, and local display.

Instants are kept as aware UTC datetimes everywhere (the database, the services, the
queue). A zone enters only at the edges: where a person types a time (a time without a
zone or offset is read on the newsletter's wall clock, on every front end) and where one
is shown (a date in an email, a time on a page). Both edges call this module, and take
the zone as a parameter, so that a reader's own zone can replace the newsletter's.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from newsletter.core.validation import InvalidInput, clean_time_zone

# Every time read from outside (API, CLI, dashboard forms, article files) is within these
# years: the far ends of the calendar overflow when moved between zones or shown, and no
# newsletter sends before 1970 or plans past 9000 (far-future times stay usable as
# "nothing is due before then" windows).
FIRST_YEAR = 1970
LAST_YEAR = 9000
_EXAMPLE = "such as 2026-11-26 07:00 (on the newsletter's clock) or 2026-11-26T07:00+08:00"


def utcnow() -> datetime:
    """Now, as an aware UTC datetime: the one reading of the clock the services default to.

    Service functions take `now=` so that tests pass a fixed instant instead.
    """
    return datetime.now(UTC)


def zone(time_zone: str | ZoneInfo) -> ZoneInfo:
    """The zone of an IANA name (Europe/Lisbon, Asia/Macau), or InvalidInput("time_zone")."""
    if isinstance(time_zone, ZoneInfo):
        return time_zone
    if not time_zone or not time_zone.strip():
        raise InvalidInput("time_zone", "Please choose a time zone, such as Asia/Macau.")
    # Which names are accepted is validation's rule; this is where they become zones.
    return ZoneInfo(clean_time_zone(time_zone, default=""))


def to_utc(
    value: str | datetime | None,
    *,
    time_zone: str | ZoneInfo,
    field: str,
    label: str | None = None,
) -> datetime | None:
    """The instant a typed time names, as aware UTC; without a zone it is on `time_zone`'s clock.

    `value` is ISO 8601 text (2026-11-26 07:00, 2026-11-26T07:00:00+08:00, …Z; a date
    alone is its midnight) or a datetime. A time with a zone or an offset is taken as
    given. A local time the clocks skip (01:30 on the night they jump from 01:00 to 02:00)
    never happened there: it is refused, for the editor to say which instant they mean,
    rather than moved by a guess. A local time the clocks repeat (when they fall back) is
    the first of the two, as the wall clock first reached it.

    Anything unreadable is InvalidInput(field, a sentence naming `label`, or the field).
    """
    if value is None:
        return None
    label = label or field
    moment = _parse(value, field=field, label=label) if isinstance(value, str) else value
    if not FIRST_YEAR <= moment.year <= LAST_YEAR:
        raise InvalidInput(
            field, f"{_sentence(label)} must be between {FIRST_YEAR} and {LAST_YEAR}."
        )
    if moment.tzinfo is not None and moment.utcoffset() is not None:
        return moment.astimezone(UTC)
    local = zone(time_zone)
    wall = moment.replace(tzinfo=None)
    aware = wall.replace(tzinfo=local, fold=0)
    # A skipped time does not survive the round trip: it comes back an hour off.
    if aware.astimezone(UTC).astimezone(local).replace(tzinfo=None) != wall:
        raise InvalidInput(
            field,
            f"{wall:%Y-%m-%d %H:%M} does not exist in {local.key}: the clocks jump over it "
            "that night. Give a time after the change, or one with an offset.",
        )
    return aware.astimezone(UTC)


def in_zone(moment: datetime, time_zone: str | ZoneInfo) -> datetime:
    """An instant on the wall clock of a zone, for showing it (its date, its hour).

    A zone name this machine does not know (stored before its tz database lost it, say),
    or an instant the zone's offset would push off the calendar, shows the instant in UTC
    rather than failing a page or an email.
    """
    if moment.tzinfo is None:
        raise ValueError("a timezone-aware datetime is needed, got a naive one")
    try:
        local = zone(time_zone)
    except InvalidInput:
        local = ZoneInfo("UTC")
    try:
        return moment.astimezone(local)
    except OverflowError:
        # A date at the calendar's very end (stored before times were bounded) has no
        # wall-clock time past it: it is shown as it was stored, in UTC.
        return moment.astimezone(UTC)


def local_text(moment: datetime, time_zone: str | ZoneInfo) -> str:
    """An instant as an editor reads it on a zone's clock: 2026-11-26 07:00 Asia/Macau (UTC+8)."""
    return f"{in_zone(moment, time_zone):%Y-%m-%d %H:%M} {zone_label(time_zone, moment)}"


def zone_label(time_zone: str | ZoneInfo, at: datetime) -> str:
    """A zone as people can tell it apart: Asia/Macau (UTC+8), Asia/Kolkata (UTC+5:30).

    Never an abbreviation: "CST" is China's, Cuba's and Chicago's. The offset is the one
    in force at `at` (Europe/Lisbon is UTC+0 in winter, UTC+1 in summer).
    """
    name = str(time_zone)
    try:
        zone(time_zone)
    except InvalidInput:
        # A zone this machine does not know is shown in UTC by in_zone: the label says so.
        return "UTC"
    if name in ("UTC", "Etc/UTC"):
        return "UTC"
    return f"{name} ({utc_offset_text(in_zone(at, time_zone).utcoffset() or timedelta(0))})"


def utc_offset_text(offset: timedelta) -> str:
    """An offset from UTC as it is written for people: UTC+8, UTC-3, UTC+5:30, UTC+0."""
    minutes = int(offset.total_seconds() // 60)
    sign = "-" if minutes < 0 else "+"
    hours, rest = divmod(abs(minutes), 60)
    return f"UTC{sign}{hours}" + (f":{rest:02d}" if rest else "")


def _parse(text: str, *, field: str, label: str) -> datetime:
    text = text.strip()
    if not text:
        raise InvalidInput(field, f"Give {label} (a date and time, {_EXAMPLE}).")
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(
            field,
            f"{_sentence(label)} is not a date and time ({text[:40]!r}); "
            f"write it in ISO 8601, {_EXAMPLE}.",
        ) from None


def _sentence(label: str) -> str:
    """A label at the start of a sentence: 'the sending time' → 'The sending time'."""
    return label[:1].upper() + label[1:]
