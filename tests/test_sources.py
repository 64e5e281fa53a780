"""Market-data sources: one OHLCV contract; synthetic is deterministic and calendar-true;
yfinance (a FAKE: constructed responses shaped like yfinance's, no network) is batched, retried
and explicit about adjustment; CSV errors name the file and line."""
from __future__ import annotations

import logging
from datetime import date

import numpy as np
import pandas as pd
import pytest
from botocore.exceptions import ClientError

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
    with pytest.raises(SourceError, match="outside the synthetic market"):
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
    assert bars[["symbol", "close", "volume"]].values.tolist() == [["AAPL", 10.5, 100]]
    assert bars["adj_close"].isna().all()  # the file has no adjusted close: unknown, not the close


DOWNLOAD = "Date,Open,High,Low,Close,Adj Close,Volume\n"


def test_csv_reads_the_usual_download_layout_with_the_symbol_from_the_file_name(tmp_path):
    (tmp_path / "aapl.csv").write_text(DOWNLOAD + "2024-07-01,10,11,9,10.5,10.25,100\n"
                                       "2024-07-02,10.5,11,10,10.75,10.5,120\n")
    (tmp_path / "VOD.L.csv").write_text(DOWNLOAD.replace(",Adj Close", "") + "2024-07-01,70,72,69,71,5000\n")
    bars = CsvDirectorySource(tmp_path).bars(["AAPL", "VOD.L"], date(2024, 7, 1), date(2024, 7, 3), "1d")
    assert bars[["symbol", "close", "adj_close"]].fillna(-1).values.tolist() == [
        ["AAPL", 10.5, 10.25], ["AAPL", 10.75, 10.5], ["VOD.L", 71.0, -1]]
    # a date alone is a session date at the symbol's exchange: London midnight in summer is
    # 23:00 UTC the day before, which must not move the bar to 30 June
    stamps = bars.set_index("symbol")["timestamp"]
    assert stamps["VOD.L"] == pd.Timestamp("2024-06-30T23:00:00Z")
    assert stamps["AAPL"].iloc[0] == pd.Timestamp("2024-07-01T04:00:00Z")
    assert len(CsvDirectorySource(tmp_path).bars(["VOD.L"], date(2024, 7, 1), date(2024, 7, 2), "1d")) == 1


def test_csv_symbols_match_whatever_their_case(tmp_path):
    (tmp_path / "mixed.csv").write_text(HEADER + "aapl,2025-03-03T14:30:00+00:00,10,11,9,10.5,100\n")
    bars = CsvDirectorySource(tmp_path).bars(["AAPL"], date(2025, 3, 3), date(2025, 3, 4), "1d")
    assert bars["symbol"].tolist() == ["AAPL"]


def test_csv_returns_only_bars_of_the_requested_interval(tmp_path):
    (tmp_path / "daily.csv").write_text(HEADER + "AAPL,2025-03-03T14:30:00+00:00,10,11,9,10.5,100\n")
    minutes = "".join(f"MSFT,2025-03-03T14:3{m}:00+00:00,10,11,9,10.5,100\n" for m in range(3))
    (tmp_path / "minutes.csv").write_text(HEADER + minutes)
    source = CsvDirectorySource(tmp_path)
    assert source.bars(["AAPL", "MSFT"], date(2025, 3, 3), date(2025, 3, 4), "1d")["symbol"].tolist() == ["AAPL"]
    assert source.bars(["AAPL", "MSFT"], date(2025, 3, 3), date(2025, 3, 4), "1m")["symbol"].tolist() == ["MSFT"] * 3


def test_csv_daily_download_with_a_repeated_date_is_still_daily_and_headers_ignore_case(tmp_path):
    (tmp_path / "AAPL.csv").write_text(DOWNLOAD + "2024-07-01,10,11,9,10.5,10.25,100\n" * 2)
    (tmp_path / "ours.csv").write_text("Symbol,Timestamp,Open,High,Low,Close,Volume\n"
                                       "MSFT,2024-07-01T13:30:00+00:00,10,11,9,10.5,100\n")
    bars = CsvDirectorySource(tmp_path).bars(["AAPL", "MSFT"], date(2024, 7, 1), date(2024, 7, 2), "1d")
    assert bars["symbol"].tolist() == ["AAPL", "AAPL", "MSFT"]  # the repeat is the transform's to drop


def test_csv_adj_close_does_not_depend_on_how_symbols_are_batched(tmp_path):
    (tmp_path / "with.csv").write_text("symbol,timestamp,open,high,low,close,adj_close,volume\n"
                                       "AAPL,2025-03-03T14:30:00+00:00,10,11,9,10.5,10.25,100\n")
    (tmp_path / "without.csv").write_text(HEADER + "MSFT,2025-03-03T14:30:00+00:00,10,11,9,10.5,100\n")
    source = CsvDirectorySource(tmp_path)
    together = source.bars(["AAPL", "MSFT"], date(2025, 3, 3), date(2025, 3, 4), "1d").set_index("symbol")
    alone = source.bars(["MSFT"], date(2025, 3, 3), date(2025, 3, 4), "1d").set_index("symbol")
    assert pd.isna(together.loc["MSFT", "adj_close"]) and pd.isna(alone.loc["MSFT", "adj_close"])
    assert together.loc["AAPL", "adj_close"] == 10.25


def test_csv_with_neither_layout_names_both(tmp_path):
    (tmp_path / "x.csv").write_text("when,price\n2024-01-02,1\n")
    with pytest.raises(SourceError, match=r"x.csv:1: missing column\(s\) .*expected symbol,timestamp.* or Date,Open"):
        CsvDirectorySource(tmp_path).bars(["X"], date(2024, 1, 1), date(2024, 1, 5), "1d")


def test_backfill_warns_about_a_requested_symbol_with_no_bars(tmp_path, caplog):
    from ingestion.backfill import backfill

    (tmp_path / "AAPL.csv").write_text(DOWNLOAD + "2024-07-01,10,11,9,10.5,10.25,100\n")
    written = []

    class Bucket:  # no object store needed to see what would be written
        def get_object(self, **kwargs):  # a new lake: no month object yet
            raise ClientError({"Error": {"Code": "NoSuchKey"}}, "GetObject")

        def put_object(self, **kwargs):
            written.append(kwargs["Key"])

    result = backfill(CsvDirectorySource(tmp_path), ["AAPL", "MSFT"], date(2024, 7, 1), date(2024, 7, 2), "1d",
                      Bucket())
    assert result.missing == ("MSFT",)
    assert written == ["ohlcv/interval=1d/source=csv/symbol=AAPL/month=2024-07/bars.csv"]
    assert "csv returned no 1d bar of MSFT" in caplog.text


@pytest.mark.parametrize(("line", "message"), [
    ("AAPL,2025-03-03T14:30:00+00:00,10,11,9,abc,100", "bad.csv:3: close: cannot parse 'abc' as a number"),
    ("AAPL,yesterday,10,11,9,10,100", "bad.csv:3: timestamp: cannot parse 'yesterday'"),
    ("AAPL,2025-03-03T14:30:00,10,11,9,10,100", "bad.csv:3: timestamp: '2025-03-03T14:30:00' has no time zone"),
    ("AAPL,2025-03-03,10,11,9,10,abc", "bad.csv:3: volume: cannot parse 'abc' as a number"),
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


# --- Alpha Vantage (a FAKE: tests/fake_alphavantage.py, a loopback server with constructed replies)

def alphavantage(fake, tmp_path, **options):
    from ingestion.sources.alphavantage import AlphaVantageSource
    from tests.fake_alphavantage import API_KEY

    defaults = {"api_key": API_KEY, "url": fake.url, "requests_per_minute": 1000, "requests_per_day": 100_000,
                "retries": 3, "backoff_seconds": 0.01, "state_dir": tmp_path}
    return AlphaVantageSource(**(defaults | options))


def test_alphavantage_daily_adjusted_bars_keep_raw_and_adjusted_prices(tmp_path):
    from tests.fake_alphavantage import FakeAlphaVantage, price

    with FakeAlphaVantage({"IBM": (date(2024, 1, 1), date(2024, 1, 31))}) as fake:
        bars = alphavantage(fake, tmp_path).bars(["IBM"], date(2024, 1, 8), date(2024, 1, 13), "1d")
    assert list(bars.columns) == list(OHLCV_COLUMNS)
    days = [date(2024, 1, d) for d in range(8, 13)]
    assert bars["close"].tolist() == [price("IBM", d) for d in days]
    assert np.allclose(bars["adj_close"], bars["close"] * 0.98, atol=1e-4)
    assert (bars["stock_splits"] == 0).all() and (bars["source"] == "alphavantage").all()
    # a daily bar is its session's date at the exchange (New York midnight, in UTC)
    assert bars["timestamp"].iloc[0] == pd.Timestamp("2024-01-08T05:00:00Z")
    assert [q["function"] for q in fake.queries] == ["TIME_SERIES_DAILY_ADJUSTED"]
    assert fake.queries[0]["outputsize"] == "full"


def test_alphavantage_intraday_asks_month_by_month(tmp_path):
    from tests.fake_alphavantage import FakeAlphaVantage

    with FakeAlphaVantage({"IBM": (date(2024, 1, 1), date(2024, 3, 31))}) as fake:
        bars = alphavantage(fake, tmp_path).bars(["IBM"], date(2024, 1, 31), date(2024, 2, 2), "1m")
    assert [q["month"] for q in fake.queries] == ["2024-01", "2024-02"]
    assert {q["interval"] for q in fake.queries} == {"1min"}
    assert len(bars) == 2 * 3  # Jan 31 and Feb 1, three bars each in the fake
    assert bars["timestamp"].iloc[0] == pd.Timestamp("2024-01-31T14:30:00Z")  # 09:30 New York


def test_alphavantage_retries_a_throttle_reply_with_backoff(tmp_path, caplog):
    from tests.fake_alphavantage import FakeAlphaVantage

    slept: list[float] = []
    with FakeAlphaVantage({"IBM": (date(2024, 1, 1), date(2024, 1, 31))}) as fake:
        fake.throttle_next = 2
        bars = alphavantage(fake, tmp_path, backoff_seconds=1.0, sleep=slept.append).bars(
            ["IBM"], date(2024, 1, 8), date(2024, 1, 9), "1d")
    assert len(bars) == 1 and len(fake.queries) == 3
    assert slept == [1.0, 2.0]  # exponential
    assert "throttled on TIME_SERIES_DAILY_ADJUSTED IBM (attempt 1/4)" in caplog.text


def test_alphavantage_gives_up_on_throttling_in_one_line(tmp_path):
    from tests.fake_alphavantage import FakeAlphaVantage

    with FakeAlphaVantage({"IBM": (date(2024, 1, 1), date(2024, 1, 31))}) as fake:
        fake.throttle_next = 10
        with pytest.raises(SourceError, match=r"^alphavantage: still throttled on TIME_SERIES_DAILY_ADJUSTED IBM "
                                              r"after 4 attempts: Thank you"):
            alphavantage(fake, tmp_path, sleep=lambda s: None).bars(["IBM"], date(2024, 1, 8), date(2024, 1, 9), "1d")


def test_alphavantage_daily_limit_reply_is_one_line_not_a_retry_nor_a_fallback(tmp_path):
    from tests.fake_alphavantage import API_KEY, FakeAlphaVantage

    with FakeAlphaVantage({"IBM": (date(2024, 1, 1), date(2024, 1, 31))}) as fake:
        fake.daily_limit_reached = True
        source = alphavantage(fake, tmp_path, sleep=lambda s: None)
        with pytest.raises(SourceError, match=r"^alphavantage: the key's daily request limit is used up"):
            source.bars(["IBM"], date(2024, 1, 8), date(2024, 1, 9), "1d")
    assert len(fake.queries) == 1  # neither retried nor taken for a premium endpoint
    assert API_KEY not in repr(source)


def test_alphavantage_unknown_symbol_and_bad_key_are_one_line_without_the_key(tmp_path):
    from tests.fake_alphavantage import API_KEY, FakeAlphaVantage

    with FakeAlphaVantage({"IBM": (date(2024, 1, 1), date(2024, 1, 31))}) as fake:
        with pytest.raises(SourceError, match=r"^alphavantage: no data for symbol 'NOPE' ") as unknown:
            alphavantage(fake, tmp_path).bars(["IBM", "NOPE"], date(2024, 1, 8), date(2024, 1, 9), "1d")
        with pytest.raises(SourceError, match=r"^alphavantage: the API key was refused") as refused:
            alphavantage(fake, tmp_path, api_key="wrong-key-123").bars(["IBM"], date(2024, 1, 8), date(2024, 1, 9),
                                                                       "1d")
    assert API_KEY not in str(unknown.value) and "wrong-key-123" not in str(refused.value)
    assert "\n" not in str(unknown.value) + str(refused.value)


def test_alphavantage_key_stays_out_of_urllib3s_debug_log(tmp_path, caplog):
    from tests.fake_alphavantage import API_KEY, FakeAlphaVantage

    caplog.set_level(logging.DEBUG, logger="urllib3")
    with FakeAlphaVantage({"IBM": (date(2024, 1, 1), date(2024, 1, 31))}) as fake:
        alphavantage(fake, tmp_path).bars(["IBM"], date(2024, 1, 8), date(2024, 1, 9), "1d")
    request_lines = [r.getMessage() for r in caplog.records if r.name == "urllib3.connectionpool"]
    assert any("apikey=***" in line for line in request_lines), request_lines  # the request line is logged
    assert API_KEY not in caplog.text


def test_alphavantage_without_the_adjusted_series_falls_back_to_the_plain_one(tmp_path, caplog):
    from tests.fake_alphavantage import FakeAlphaVantage

    with FakeAlphaVantage({"IBM": (date(2024, 1, 1), date(2024, 1, 31)),
                           "MSFT": (date(2024, 1, 1), date(2024, 1, 31))}) as fake:
        fake.adjusted_is_premium = True
        bars = alphavantage(fake, tmp_path).bars(["IBM", "MSFT"], date(2024, 1, 8), date(2024, 1, 9), "1d")
    assert bars["adj_close"].isna().all() and len(bars) == 2
    # asked once, then the plain series for every symbol
    assert [q["function"] for q in fake.queries] == ["TIME_SERIES_DAILY_ADJUSTED", "TIME_SERIES_DAILY",
                                                     "TIME_SERIES_DAILY"]
    assert "not in this key's plan" in caplog.text


def test_alphavantage_requests_share_one_limiter_across_sources(tmp_path):
    """Two sources (as two mapped tasks) on one host draw from one bucket: the third request
    within the minute waits, and with no budget left the error names the settings."""
    from ingestion.sources import alphavantage as av
    from tests.fake_alphavantage import FakeAlphaVantage

    with FakeAlphaVantage({"IBM": (date(2024, 1, 1), date(2024, 1, 31))}) as fake:
        first = alphavantage(fake, tmp_path, requests_per_minute=2)
        second = alphavantage(fake, tmp_path, requests_per_minute=2)
        first.bars(["IBM"], date(2024, 1, 8), date(2024, 1, 9), "1d")
        second.bars(["IBM"], date(2024, 1, 8), date(2024, 1, 9), "1d")
        limiter = av.shared_limiter(tmp_path, 2, 100_000)
        assert limiter.try_acquire("alphavantage", blocking=True, timeout=1) is False  # the minute's two are used
    assert len(fake.queries) == 2


def test_alphavantage_key_from_settings_or_a_clear_line(monkeypatch):
    from ingestion.sources.base import source_for

    monkeypatch.delenv("TICKERLAKE_ALPHAVANTAGE_API_KEY", raising=False)
    monkeypatch.setattr("tickerlake.core.settings.AlphaVantageSettings.model_config",
                        {**__import__("tickerlake.core.settings", fromlist=["x"]).AlphaVantageSettings.model_config,
                         "env_file": None})
    with pytest.raises(SourceError, match="no API key: set TICKERLAKE_ALPHAVANTAGE_API_KEY or the Airflow connection"):
        source_for("alphavantage")
    monkeypatch.setenv("TICKERLAKE_ALPHAVANTAGE_API_KEY", "from-the-environment")
    assert source_for("alphavantage").api_key == "from-the-environment"
    assert source_for("alphavantage", api_key="from-a-connection").api_key == "from-a-connection"
