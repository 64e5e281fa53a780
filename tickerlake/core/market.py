"""Exchanges, their time zones and calendars: the one place they are named.

A bar's session date is its open time in its exchange's time zone, and the sessions a series
must have come from that exchange's calendar (exchange-calendars: weekends, holidays, half days).
The exchange belongs to the symbol: Yahoo Finance's ticker suffixes name it (`VOD.L` is London,
`7203.T` Tokyo, `SAP.DE` Xetra), a symbol without a known suffix trades on the NYSE, and
`TICKERLAKE_MARKET_SYMBOL_EXCHANGES` (`SAP=XETR,VOD=XLON`) names it for symbols without one.

Calendars cover `HISTORY_START` (1980-01-01, or the exchange calendar's own first day if later)
to a year from today; a date outside that is one `CalendarRangeError` line, not a traceback.
"""
from __future__ import annotations

import functools
from collections.abc import Iterable
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, NamedTuple

from tickerlake.core.errors import TickerlakeError

if TYPE_CHECKING:
    import exchange_calendars
    import pandas as pd

EXCHANGE = "XNYS"  # a symbol without a known suffix, the live stream, the DAGs' schedules
EXCHANGE_TZ = "America/New_York"
# The synthetic market's epoch: its price paths start here (changing it changes every price).
CALENDAR_START = date(2015, 1, 2)
# The oldest history tickerlake handles end to end (yfinance serves daily bars from the 1980s).
HISTORY_START = date(1980, 1, 1)


class Exchange(NamedTuple):
    mic: str  # ISO 10383 code, as exchange-calendars names the calendar
    tz: str  # IANA time zone of its sessions (tests/test_market.py checks it against the calendar)


EXCHANGES: dict[str, Exchange] = {e.mic: e for e in (
    Exchange("XNYS", "America/New_York"), Exchange("XTSE", "America/Toronto"),
    Exchange("XMEX", "America/Mexico_City"), Exchange("BVMF", "America/Sao_Paulo"),
    Exchange("XLON", "Europe/London"), Exchange("XDUB", "Europe/Dublin"),
    Exchange("XETR", "Europe/Berlin"), Exchange("XFRA", "Europe/Berlin"),
    Exchange("XPAR", "Europe/Paris"), Exchange("XAMS", "Europe/Amsterdam"),
    Exchange("XBRU", "Europe/Brussels"), Exchange("XMIL", "Europe/Rome"),
    Exchange("XMAD", "Europe/Madrid"), Exchange("XLIS", "Europe/Lisbon"),
    Exchange("XSWX", "Europe/Zurich"), Exchange("XWBO", "Europe/Vienna"),
    Exchange("XSTO", "Europe/Stockholm"), Exchange("XOSL", "Europe/Oslo"),
    Exchange("XCSE", "Europe/Copenhagen"), Exchange("XHEL", "Europe/Helsinki"),
    Exchange("XWAR", "Europe/Warsaw"), Exchange("XIST", "Europe/Istanbul"),
    Exchange("XTAE", "Asia/Tel_Aviv"), Exchange("XJSE", "Africa/Johannesburg"),
    Exchange("XTKS", "Asia/Tokyo"), Exchange("XHKG", "Asia/Hong_Kong"),
    Exchange("XSHG", "Asia/Shanghai"), Exchange("XKRX", "Asia/Seoul"),
    Exchange("XTAI", "Asia/Taipei"), Exchange("XSES", "Asia/Singapore"),
    Exchange("XBOM", "Asia/Kolkata"), Exchange("XASX", "Australia/Sydney"),
    Exchange("XNZE", "Pacific/Auckland"),
)}

# Yahoo Finance's ticker suffixes (https://help.yahoo.com/kb/SLN2310.html) -> exchange.
SUFFIX_EXCHANGES: dict[str, str] = {
    ".TO": "XTSE", ".MX": "XMEX", ".SA": "BVMF", ".L": "XLON", ".IR": "XDUB", ".DE": "XETR",
    ".F": "XFRA", ".PA": "XPAR", ".AS": "XAMS", ".BR": "XBRU", ".MI": "XMIL", ".MC": "XMAD",
    ".LS": "XLIS", ".SW": "XSWX", ".VI": "XWBO", ".ST": "XSTO", ".OL": "XOSL", ".CO": "XCSE",
    ".HE": "XHEL", ".WA": "XWAR", ".IS": "XIST", ".TA": "XTAE", ".JO": "XJSE", ".T": "XTKS",
    ".HK": "XHKG", ".SS": "XSHG", ".KS": "XKRX", ".TW": "XTAI", ".SI": "XSES", ".BO": "XBOM",
    ".NS": "XBOM", ".AX": "XASX", ".NZ": "XNZE",
}


class CalendarRangeError(TickerlakeError):
    """A date the exchange's calendar does not cover."""


def _suffix(symbol: str) -> str:
    dot = symbol.rfind(".")
    return symbol[dot:] if dot > 0 else ""


@functools.lru_cache(maxsize=1)
def symbol_exchange_overrides() -> dict[str, str]:
    """`TICKERLAKE_MARKET_SYMBOL_EXCHANGES`, validated by its settings class."""
    from tickerlake.core.settings import MarketSettings

    return MarketSettings().exchange_by_symbol


def exchange_of(symbol: str) -> Exchange:
    """The exchange a symbol trades on: the setting, else its Yahoo suffix, else the NYSE."""
    symbol = symbol.upper()
    mic = symbol_exchange_overrides().get(symbol) or SUFFIX_EXCHANGES.get(_suffix(symbol), EXCHANGE)
    return EXCHANGES[mic]


def exchanges_of(symbols: Iterable[str]) -> dict[Exchange, list[str]]:
    """Symbols grouped by exchange, each group sorted."""
    groups: dict[Exchange, list[str]] = {}
    for symbol in sorted(set(symbols)):
        groups.setdefault(exchange_of(symbol), []).append(symbol)
    return groups


def session_dates(timestamps: "pd.Series", symbols: "pd.Series") -> "pd.Series":
    """Each bar's session date: its timestamp (tz-aware or UTC) in its symbol's exchange's zone."""
    import pandas as pd

    stamps = pd.to_datetime(timestamps, utc=True, errors="coerce")
    out = pd.Series([None] * len(stamps), index=stamps.index, dtype=object)
    names = symbols.fillna("").astype(str)
    zones = names.map({name: exchange_of(name).tz for name in names.unique()})  # once per symbol
    for tz, index in zones.groupby(zones).groups.items():
        out.loc[index] = stamps.loc[index].dt.tz_convert(str(tz)).dt.date
    return out


@functools.lru_cache(maxsize=16)
def first_day(mic: str = EXCHANGE) -> date:
    """The first day the exchange's calendar covers here: HISTORY_START, or the calendar's own
    first day if later (exchange-calendars has Tokyo from 1997, Shanghai from 1990)."""
    import exchange_calendars as xcals

    minimum = xcals.get_calendar(mic).bound_min()  # builds the default calendar once (cached here)
    return max(HISTORY_START, minimum.date()) if minimum is not None else HISTORY_START


@functools.lru_cache(maxsize=16)
def exchange_calendar(mic: str = EXCHANGE) -> "exchange_calendars.ExchangeCalendar":
    """The exchange's calendar from `first_day` to a year from today (built once: about 0.7 s)."""
    import exchange_calendars as xcals

    return xcals.get_calendar(mic, start=first_day(mic).isoformat())


def sessions_in_range(start: date, end: date, mic: str = EXCHANGE) -> list[date]:
    """The exchange's sessions in [start, end) (end exclusive); one CalendarRangeError line for
    a range the calendar does not cover."""
    import pandas as pd

    last = pd.Timestamp(end) - pd.Timedelta(days=1)
    if pd.Timestamp(start) > last:
        return []
    calendar = exchange_calendar(mic)
    if start < first_day(mic):
        raise CalendarRangeError(f"{start}..{end}: before {first_day(mic)}, the first day of the {mic} "
                                 f"calendar (tickerlake covers {HISTORY_START} on where the calendar does)")
    if last > calendar.last_session:
        raise CalendarRangeError(f"{start}..{end}: after {calendar.last_session.date()}, the last session "
                                 f"of the {mic} calendar (exchange-calendars covers a year ahead)")
    first = max(pd.Timestamp(start), calendar.first_session)  # 1980-01-01 was no session
    return [d.date() for d in calendar.sessions_in_range(first, last)] if first <= last else []


def last_closed_session(now: "datetime | None" = None) -> date:
    """The latest NYSE session whose close is at or before `now` (default: the wall clock)."""
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
