"""Market-data sources: one OHLCV contract; synthetic is deterministic and calendar-true;
yfinance (a FAKE: constructed responses shaped like yfinance's, no network) is batched, retried
and explicit about adjustment; CSV errors name the file and line."""
from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

from ingestion.sources.base import SourceError
from ingestion.sources.csv_dir import CsvDirectorySource
from ingestion.sources.synthetic import BAD_ROW_KINDS, SyntheticMarket
from ingestion.sources.yahoo import YahooFinanceSource
from tickerlake.core.datasets import OHLCV_COLUMNS

# --- synthetic -------------------------------------------------------------------------------

def test_synthetic_is_deterministic_and_any_range_is_a_slice_of_a_longer_one():
    market = SyntheticMarket(seed=42)
    year = market.bars(["AAPL", "MSFT"], date(2025, 1, 1), date(2026, 1, 1), "1d")
    day = market.bars(["AAPL", "MSFT"], date(2025, 7, 1), date(2025, 7, 2), "1d")
    cut = year[year["timestamp"].dt.date == date(2025, 7, 1)].reset_index(drop=True)
    pd.testing.assert_frame_equal(day, cut)
    assert not SyntheticMarket(seed=43).bars(["AAPL"], date(2025, 7, 1), date(2025, 7, 2), "1d").equals(day)


def test_synthetic_follows_the_nyse_calendar():
    bars = SyntheticMarket().bars(["AAPL"], date(2025, 12, 20), date(2026, 1, 6), "1d")
    days = set(bars["timestamp"].dt.tz_convert("America/New_York").dt.date)
    assert date(2025, 12, 25) not in days and date(2026, 1, 1) not in days  # holidays
    assert all(d.weekday() < 5 for d in days)
    minutes = SyntheticMarket().bars(["AAPL"], date(2025, 12, 24), date(2025, 12, 25), "1m")
    assert len(minutes) == 210  # Christmas Eve closes at 13:00


@pytest.mark.parametrize("interval", ["1d", "1m"])
def test_synthetic_bars_keep_ohlc_invariants_and_the_schema(interval):
    bars = SyntheticMarket(seed=5).bars(["A", "B", "C"], date(2025, 3, 3), date(2025, 3, 8), interval)
    assert list(bars.columns) == OHLCV_COLUMNS
    assert str(bars["timestamp"].dt.tz) == "UTC"
    assert (bars["high"] >= bars[["open", "close"]].max(axis=1)).all()
    assert (bars["low"] <= bars[["open", "close"]].min(axis=1)).all()
    assert (bars[["open", "high", "low", "close"]] > 0).all().all() and (bars["volume"] > 0).all()
    assert not bars.duplicated(["symbol", "timestamp"]).any()


def test_synthetic_gaps_and_bad_rows_on_request():
    market = SyntheticMarket(gaps=[("AAPL", date(2025, 3, 4))])
    days = market.bars(["AAPL"], date(2025, 3, 3), date(2025, 3, 6), "1d")["timestamp"].dt.date.tolist()
    assert days == [date(2025, 3, 3), date(2025, 3, 5)]
    bad = market.bad_rows("AAPL", date(2025, 3, 3), "1d")
    assert sorted(bad["expected_reason"]) == sorted(BAD_ROW_KINDS.values())


def test_synthetic_outside_the_calendar_is_a_clear_error():
    with pytest.raises(SourceError, match="outside the XNYS calendar"):
        SyntheticMarket().bars(["AAPL"], date(1990, 1, 1), date(1990, 2, 1), "1d")


# --- yfinance (FAKE responses) ---------------------------------------------------------------

def fake_yfinance_frame(tickers: list[str], days: list[str], empty: tuple[str, ...] = ()) -> pd.DataFrame:
    """Shaped like yf.download(group_by="ticker", actions=True, auto_adjust=False)."""
    index = pd.DatetimeIndex(pd.to_datetime(days), name="Date")
    fields = ["Open", "High", "Low", "Close", "Adj Close", "Volume", "Dividends", "Stock Splits"]
    columns = pd.MultiIndex.from_product([tickers, fields], names=["Ticker", "Price"])
    rng = np.random.default_rng(0)
    data = np.empty((len(days), len(columns)))
    for t, ticker in enumerate(tickers):
        base = 100 + t + rng.random(len(days))
        block = [base, base + 1, base - 1, base + 0.5, base + 0.4, 1e6 + t, 0.0, 0.0]
        for f, values in enumerate(block):
            data[:, t * len(fields) + f] = np.nan if ticker in empty else values
    return pd.DataFrame(data, index=index, columns=columns)


def test_yfinance_batches_tickers_and_keeps_raw_and_adjusted_prices():
    calls = []

    def download(**kwargs):
        calls.append(kwargs)
        return fake_yfinance_frame(kwargs["tickers"], ["2025-03-03", "2025-03-04"])

    source = YahooFinanceSource(batch_size=2, download=download, sleep=lambda s: None)
    bars = source.bars(["AAPL", "MSFT", "NVDA"], date(2025, 3, 3), date(2025, 3, 5), "1d")
    assert [c["tickers"] for c in calls] == [["AAPL", "MSFT"], ["NVDA"]]
    assert all(c["auto_adjust"] is False and c["actions"] is True for c in calls)
    assert list(bars.columns) == OHLCV_COLUMNS and len(bars) == 6
    assert (bars["adj_close"] != bars["close"]).all()  # both kept
    # Daily bars are dated at New York midnight, stored in UTC.
    assert bars["timestamp"].iloc[0] == pd.Timestamp("2025-03-03 05:00", tz="UTC")
    assert set(bars["source"]) == {"yfinance"}


def test_yfinance_retries_rate_limits_with_exponential_backoff():
    from yfinance.exceptions import YFRateLimitError

    attempts, sleeps = [], []

    def download(**kwargs):
        attempts.append(1)
        if len(attempts) < 3:
            raise YFRateLimitError()
        return fake_yfinance_frame(kwargs["tickers"], ["2025-03-03"])

    source = YahooFinanceSource(download=download, sleep=sleeps.append, backoff_seconds=2.0)
    assert len(source.bars(["AAPL"], date(2025, 3, 3), date(2025, 3, 4), "1d")) == 1
    assert sleeps == [2.0, 4.0]


def test_yfinance_gives_up_with_one_clear_line():
    def download(**kwargs):
        raise ConnectionError("connection reset")

    source = YahooFinanceSource(download=download, sleep=lambda s: None, retries=3)
    with pytest.raises(SourceError, match=r"yfinance: gave up on AAPL after 3 attempts: ConnectionError"):
        source.bars(["AAPL"], date(2025, 3, 3), date(2025, 3, 4), "1d")


def test_yfinance_unknown_ticker_is_named():
    def download(**kwargs):
        return fake_yfinance_frame(kwargs["tickers"], ["2025-03-03"], empty=("NOPEX",))

    source = YahooFinanceSource(download=download, sleep=lambda s: None)
    with pytest.raises(SourceError, match="no data for ticker 'NOPEX'"):
        source.bars(["AAPL", "NOPEX"], date(2025, 3, 3), date(2025, 3, 4), "1d")


# --- csv -------------------------------------------------------------------------------------

HEADER = "symbol,timestamp,open,high,low,close,volume\n"


def test_csv_directory_reads_good_files(tmp_path):
    (tmp_path / "a.csv").write_text(HEADER + "AAPL,2025-03-03T14:30:00+00:00,10,11,9,10.5,100\n"
                                    "MSFT,2025-03-03T14:30:00+00:00,20,21,19,20.5,200\n")
    bars = CsvDirectorySource(tmp_path).bars(["AAPL"], date(2025, 3, 3), date(2025, 3, 4), "1d")
    assert bars[["symbol", "close", "adj_close", "volume"]].values.tolist() == [["AAPL", 10.5, 10.5, 100]]


@pytest.mark.parametrize(("line", "message"), [
    ("AAPL,2025-03-03T14:30:00+00:00,10,11,9,abc,100", "bad.csv:3: close: cannot parse 'abc' as a number"),
    ("AAPL,yesterday,10,11,9,10,100", "bad.csv:3: timestamp: cannot parse 'yesterday'"),
    ("AAPL,2025-03-03T14:30:00,10,11,9,10,100", "bad.csv:3: timestamp: '2025-03-03T14:30:00' has no time zone"),
    ("AAPL,2025-03-03T14:30:00+00:00,10,9,11,10,100", "bad.csv:3: high 9.0 < low 11.0"),
    (",2025-03-03T14:30:00+00:00,10,11,9,10,100", "bad.csv:3: symbol is empty"),
])
def test_csv_bad_row_names_the_file_and_line(tmp_path, line, message):
    good = "AAPL,2025-03-02T14:30:00+00:00,10,11,9,10,100\n"
    (tmp_path / "bad.csv").write_text(HEADER + good + line + "\n")
    with pytest.raises(SourceError) as info:
        CsvDirectorySource(tmp_path).bars(["AAPL"], date(2025, 3, 1), date(2025, 3, 5), "1d")
    assert str(info.value).endswith(message) or message in str(info.value)
    assert str(info.value).startswith(str(tmp_path / "bad.csv"))
