"""The market's time zone and exchange calendar: the one place they are named.

Session dates are the exchange's local dates (a bar's session is its open time in New York);
sessions come from exchange-calendars' NYSE calendar (weekends, holidays and half days).
"""
from __future__ import annotations

import functools
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import exchange_calendars

EXCHANGE = "XNYS"
EXCHANGE_TZ = "America/New_York"
# The first session the calendar is built from: the synthetic market's epoch and the oldest
# history the quality gate can check.
CALENDAR_START = date(2015, 1, 2)


@functools.lru_cache(maxsize=4)
def exchange_calendar(start: date = CALENDAR_START) -> "exchange_calendars.ExchangeCalendar":
    import exchange_calendars as xcals

    return xcals.get_calendar(EXCHANGE, start=start.isoformat())


def sessions_in_range(start: date, end: date) -> list[date]:
    """The exchange's sessions in [start, end) (end exclusive)."""
    import pandas as pd

    last = pd.Timestamp(end) - pd.Timedelta(days=1)
    if pd.Timestamp(start) > last:
        return []
    calendar = exchange_calendar(min(start, CALENDAR_START))
    return [d.date() for d in calendar.sessions_in_range(pd.Timestamp(start), last)]


def last_closed_session(now: "datetime | None" = None) -> date:
    """The latest session whose close is at or before `now` (default: the wall clock)."""
    import pandas as pd

    moment = pd.Timestamp(now or datetime.now(UTC))
    if moment.tzinfo is None:
        moment = moment.tz_localize(UTC)
    calendar = exchange_calendar()
    # the session before the one in progress, or the one that closed last when the market is
    # shut; a session that closed exactly at `moment` counts as closed.
    session = calendar.minute_to_past_session(moment.floor("min"))
    following = calendar.next_session(session)
    if calendar.session_close(following) <= moment:
        session = following
    return session.date()


def sessions_behind(latest: date | None, now: "datetime | None" = None) -> int:
    """How many closed sessions are missing after `latest` (0: up to date; a weekend or a holiday
    is never late). `latest` None (no data at all) counts every session since CALENDAR_START."""
    from datetime import timedelta

    expected = last_closed_session(now)
    after = (latest + timedelta(days=1)) if latest else CALENDAR_START
    return len(sessions_in_range(after, expected + timedelta(days=1)))
