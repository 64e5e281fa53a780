"""Exchanges belong to symbols; calendars cover 1980 on; a date outside them is one line."""
from __future__ import annotations

from datetime import date

import pandas as pd
import pytest

from tickerlake.core import market
from tickerlake.core.market import CalendarRangeError, exchange_of, session_dates, sessions_in_range


@pytest.mark.parametrize("mic", sorted(market.EXCHANGES))
def test_each_declared_exchange_time_zone_is_its_calendars(mic):
    import exchange_calendars as xcals

    assert str(xcals.get_calendar(mic).tz) == market.EXCHANGES[mic].tz


def test_every_suffix_names_a_declared_exchange():
    assert set(market.SUFFIX_EXCHANGES.values()) <= set(market.EXCHANGES)


@pytest.mark.parametrize(("symbol", "mic"), [("AAPL", "XNYS"), ("BRK.B", "XNYS"), ("vod.l", "XLON"),
                                             ("7203.T", "XTKS"), ("SAP.DE", "XETR"), ("SHOP.TO", "XTSE"),
                                             ("^GSPC", "XNYS")])
def test_the_exchange_comes_from_the_symbols_suffix(symbol, mic):
    assert exchange_of(symbol).mic == mic


def test_the_setting_names_the_exchange_of_a_symbol_without_a_suffix(monkeypatch):
    monkeypatch.setenv("TICKERLAKE_MARKET_SYMBOL_EXCHANGES", "SAP=XETR, vod=xlon,FDAX=F=XETR")
    market.symbol_exchange_overrides.cache_clear()
    try:
        assert exchange_of("SAP").mic == "XETR" and exchange_of("VOD").mic == "XLON"
        assert exchange_of("FDAX=F").mic == "XETR"  # a symbol with "=" in it
    finally:
        monkeypatch.delenv("TICKERLAKE_MARKET_SYMBOL_EXCHANGES")
        market.symbol_exchange_overrides.cache_clear()


def test_a_bad_exchange_setting_is_one_line(monkeypatch):
    from tickerlake.core.errors import ConfigError
    from tickerlake.core.settings import load_settings

    monkeypatch.setenv("TICKERLAKE_MARKET_SYMBOL_EXCHANGES", "SAP=XXXX")
    with pytest.raises(ConfigError, match=r"^TICKERLAKE_MARKET_SYMBOL_EXCHANGES: 'SAP=XXXX': unknown exchange 'XXXX'"):
        load_settings()


def test_session_dates_are_in_each_symbols_exchange():
    # 23:30 UTC on 1 July: still 1 July in New York, already 2 July in Tokyo; London midnight in
    # summer (23:00 UTC on 30 June) is 1 July in London
    stamps = pd.Series(pd.to_datetime(["2024-07-01T23:30:00Z", "2024-07-01T23:30:00Z", "2024-06-30T23:00:00Z"]))
    days = session_dates(stamps, pd.Series(["AAPL", "7203.T", "VOD.L"]))
    assert days.tolist() == [date(2024, 7, 1), date(2024, 7, 2), date(2024, 7, 1)]


def test_calendars_cover_1980_on():
    sessions = sessions_in_range(date(1980, 1, 1), date(1980, 1, 8))
    assert sessions == [date(1980, 1, d) for d in (2, 3, 4, 7)]
    assert date(2002, 1, 2) in sessions_in_range(date(2002, 1, 1), date(2002, 1, 5))
    assert sessions_in_range(date(1995, 12, 22), date(1995, 12, 28), "XLON") == [
        date(1995, 12, 22), date(1995, 12, 27)]  # London's Christmas and Boxing Day


@pytest.mark.parametrize(("start", "end", "mic", "message"), [
    (date(1975, 1, 1), date(1975, 2, 1), "XNYS", "before 1980-01-01, the first day of the XNYS calendar"),
    (date(1990, 1, 1), date(1990, 2, 1), "XTKS", "before 1997-01-01, the first day of the XTKS calendar"),
    (date(2100, 1, 1), date(2100, 2, 1), "XNYS", "the last session of the XNYS calendar"),
])
def test_a_range_outside_the_calendar_is_one_line(start, end, mic, message):
    with pytest.raises(CalendarRangeError, match=message) as info:
        sessions_in_range(start, end, mic)
    assert "\n" not in str(info.value)
