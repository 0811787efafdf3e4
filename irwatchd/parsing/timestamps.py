"""Timestamp parsing for syslog, RFC 5424, ISO 8601 and Apache's access log format."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from functools import lru_cache

_MONTHS = {
    name: number
    for number, name in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"),
        start=1,
    )
}


_CACHED_TIMES = 512
"""Entries each memoised parser keeps. Log times repeat for every line written in the same
second, and lines come nearly in time order, so a few hundred seconds are enough. Each new
second evicts an entry, and with 4,096 the evicted ones left holes among the long-lived objects
allocated meanwhile: a scan of the 1,000,000-line auth.log of `bench/generate.py` peaked 2 MiB
higher, in the same time."""


# The datetimes these parsers return are immutable and safe to share.
@lru_cache(maxsize=_CACHED_TIMES)
def parse_iso8601(text: str) -> datetime | None:
    """Parse an RFC 3339 / ISO 8601 time; a time without an offset is taken as UTC."""
    candidate = text.strip()
    if candidate.endswith(("Z", "z")):
        candidate = candidate[:-1] + "+00:00"
    # fromisoformat accepts at most 6 fractional digits; RFC 5424 allows no more either,
    # but some writers print nanoseconds, so cut the fraction to microseconds.
    if "." in candidate:
        head, _, rest = candidate.partition(".")
        digits = len(rest) - len(rest.lstrip("0123456789"))
        candidate = head + "." + rest[: min(digits, 6)] + rest[digits:]
    try:
        parsed = datetime.fromisoformat(candidate)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return _within_range(parsed)


MIN_YEAR = 1000
MAX_YEAR = 9000
"""Times outside these years count as unparseable. Windows, expiry and UTC conversion add
and subtract durations, which raise OverflowError near `datetime`'s limits of years 1 and
9999, and an attacker writes the timestamps of many logs."""


def _within_range(moment: datetime) -> datetime | None:
    """Return `moment` when its UTC time lies between MIN_YEAR and MAX_YEAR, else None."""
    try:
        year = moment.astimezone(UTC).year
    except OverflowError:
        return None
    return moment if MIN_YEAR <= year <= MAX_YEAR else None


@lru_cache(maxsize=_CACHED_TIMES)
def parse_bsd(month: str, day: str, clock: str, year: str | None, now: datetime) -> datetime | None:
    """Parse a traditional syslog time ("Mar  8 15:14:19[.123456]"), with or without a year.

    Without a year, the year is the current one, or the previous one when that would put the
    line more than a day in the future (a December line read in January). The time is taken as
    UTC because the line carries no zone.
    """
    month_number = _MONTHS.get(month)
    if month_number is None:
        return None
    try:
        hours, minutes, seconds = clock.split(":")
        whole, _, fraction = seconds.partition(".")
        microsecond = int((fraction + "000000")[:6]) if fraction else 0
        base_year = int(year) if year else now.year
        parsed = datetime(
            base_year,
            month_number,
            int(day),
            int(hours),
            int(minutes),
            int(whole),
            microsecond,
            tzinfo=UTC,
        )
    except ValueError:
        return None
    if year is None and parsed - now > timedelta(days=1):
        try:
            parsed = parsed.replace(year=base_year - 1)
        except ValueError:  # 29 February in a year that has none
            return None
    return parsed


@lru_cache(maxsize=_CACHED_TIMES)
def parse_clf(text: str) -> datetime | None:
    """Parse Apache's `%t` time, for example `05/Mar/2024:09:20:03 +0000`."""
    try:
        date_part, _, offset = text.partition(" ")
        day, month, rest = date_part.split("/", 2)
        year, hours, minutes, seconds = rest.split(":")
        month_number = _MONTHS[month]
        sign = -1 if offset.startswith("-") else 1
        zone = timezone(sign * timedelta(hours=int(offset[1:3]), minutes=int(offset[3:5])))
        moment = datetime(
            int(year), month_number, int(day), int(hours), int(minutes), int(seconds), tzinfo=zone
        )
    except (ValueError, KeyError, IndexError):
        return None
    return _within_range(moment)


@lru_cache(maxsize=_CACHED_TIMES)
def format_rfc3339(moment: datetime | None) -> str | None:
    """Format a time as RFC 3339 in UTC with a `Z`, keeping microseconds when present."""
    if moment is None:
        return None
    utc = moment.astimezone(UTC)
    text = utc.isoformat(timespec="microseconds" if utc.microsecond else "seconds")
    return text.replace("+00:00", "Z")
