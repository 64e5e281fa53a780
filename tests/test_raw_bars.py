"""The transform's reading and checking of raw CSV objects (spark_jobs/raw_bars.py), without Spark:
the per-symbol Python step runs exactly this. tests/test_csv_fuzz.py covers it through the job."""
from __future__ import annotations

from datetime import UTC, datetime

from spark_jobs import raw_bars

HEADER = "symbol,timestamp,open,high,low,close,adj_close,volume,dividends,stock_splits,source"
KEY = "ohlcv/interval=1m/source=synthetic/symbol=AAPL/month=2026-01/bars.csv"


def _row(time: str = "2026-01-02T14:30:00+00:00", symbol: str = "AAPL", o: str = "10.0", h: str = "11.0",
         low: str = "9.5", c: str = "10.5") -> str:
    return f"{symbol},{time},{o},{h},{low},{c},,1000,0.0,0.0,synthetic"


def _check(*lines: str, key: str = KEY):
    body = "\n".join([HEADER, *lines, ""]).encode()
    return raw_bars.check(raw_bars.read_object(body), key, "AAPL")


def test_an_unclosed_quote_spoils_its_own_line_only():
    checked = _check(_row(), '"' + _row("2026-01-02T14:31:00+00:00"), _row("2026-01-02T14:32:00+00:00"))
    assert list(checked["reason"]) == [None, "invalid symbol", None]


def test_lines_of_white_space_or_nul_bytes_are_skipped_and_a_short_line_is_malformed():
    checked = _check(_row(), "   ", "\x00", "AAPL,2026-01-02T14:31:00+00:00,1.0")
    assert list(checked["reason"]) == [None, "malformed CSV row: not 11 fields"]


def test_a_row_of_another_symbol_than_its_objects_is_quarantined():
    checked = _check(_row(), _row("2026-01-02T14:31:00+00:00", symbol="MSFT"))
    assert list(checked["reason"]) == [None, "symbol not its object's (AAPL)"]


def test_padded_numbers_and_times_without_an_offset_parse_as_utc():
    checked = _check(_row("2026-01-02T14:30:00", o=" 10.0 "), _row("2026-01-02T14:31:00+00:00", c="1,5"))
    assert checked["reason"].iat[0] is None and checked["open"].iat[0] == 10.0
    assert checked["timestamp"].iat[0] == datetime(2026, 1, 2, 14, 30, tzinfo=UTC)
    assert checked["reason"].iat[1] == "malformed CSV row: not 11 fields"  # "1,5": one field too many


def test_rules_apply_in_order_and_the_first_failing_one_is_the_reason():
    checked = _check(_row(o="NaN", h="-1"), _row("2026-01-02T14:31:00+00:00", h="9.0", low="9.5"),
                     _row("2026-01-02T14:32:00+00:00", o="abc"), _row("2026-02-02T14:33:00+00:00"),
                     _row("soon"))
    assert list(checked["reason"]) == ["non-finite open", "high < low", "unparsable open",
                                       "timestamp not in its file's month", "unparsable timestamp: soon"]


def test_a_close_slightly_above_the_high_widens_it_and_records_the_original():
    checked = _check(_row(c="11.05"), _row("2026-01-02T14:31:00+00:00", c="11.5"))
    assert checked["reason"].iat[0] is None and checked["high"].iat[0] == 11.05
    assert checked["repair"].iat[0] == "high 11.0 widened to 11.05"
    assert checked["reason"].iat[1] == "open/close outside [low, high] by more than 1%"


def test_a_month_objects_row_off_its_month_is_filed_by_the_run_and_a_day_objects_under_its_date():
    month = _check(_row(), _row("2026-03-02T14:31:00+00:00"))
    assert month["filed"].iat[1] == -1 and month["filed"].iat[0] == month["day"].iat[0]
    day_key = "ohlcv/interval=1d/source=synthetic/symbol=AAPL/date=2026-01-02/bars.csv"
    day = _check(_row("2026-01-05T14:31:00+00:00"), key=day_key)
    assert day["reason"].iat[0] == "timestamp not on its file's session date"
    assert day["filed"].iat[0] == (datetime(2026, 1, 2) - datetime(1970, 1, 1)).days
