"""The producer's `yfinance` mode, on constructed responses shaped like `yf.download(period="1d",
interval="1m", group_by="ticker")` (Yahoo Finance is not reachable from here: these frames are
FAKE responses, built by the test)."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from ingestion.live_quotes import YahooQuotePoller
from ingestion.sources.base import SourceError


def minute_frame(tickers: list[str], minutes: int, start: str = "2026-11-20 14:30",
                 missing: tuple[str, ...] = ()) -> pd.DataFrame:
    index = pd.date_range(start, periods=minutes, freq="1min", tz="UTC", name="Datetime")
    fields = ["Open", "High", "Low", "Close", "Adj Close", "Volume"]
    columns = pd.MultiIndex.from_product([tickers, fields], names=["Ticker", "Price"])
    data = np.arange(len(index) * len(columns), dtype=float).reshape(len(index), len(columns)) + 100
    frame = pd.DataFrame(data, index=index, columns=columns)
    for ticker in missing:
        frame.loc[:, ticker] = np.nan
    return frame


class FakeYahoo:
    """Returns the queued frames in turn; records each request's arguments."""

    def __init__(self, *frames):
        self.frames, self.calls = list(frames), []

    def __call__(self, **kwargs):
        self.calls.append(kwargs)
        item = self.frames.pop(0)
        if isinstance(item, BaseException):
            raise item
        return item


def test_one_batched_request_per_poll_and_one_event_per_complete_bar():
    fake = FakeYahoo(minute_frame(["AAPL", "MSFT"], 5))
    events = YahooQuotePoller(["AAPL", "MSFT"], download=fake).poll()
    assert len(fake.calls) == 1 and fake.calls[0]["tickers"] == ["AAPL", "MSFT"]
    assert fake.calls[0]["interval"] == "1m"
    assert [e["symbol"] for e in events] == ["AAPL", "MSFT"]
    aapl = events[0]
    frame = minute_frame(["AAPL", "MSFT"], 5)
    # The newest bar (14:34) is still forming: the event is the 14:33 bar, stamped at its end.
    assert aapl["event_time"] == "2026-11-20T14:34:00+00:00"
    assert aapl["price"] == frame[("AAPL", "Close")].iloc[-2]
    assert aapl["size"] == int(frame[("AAPL", "Volume")].iloc[-2])
    assert aapl["bid"] is None and aapl["ask"] is None and aapl["source"] == "yfinance"


def test_a_bar_is_published_once_even_across_pollers():
    first, later = minute_frame(["AAPL"], 5), minute_frame(["AAPL"], 6)
    poller = YahooQuotePoller(["AAPL"], download=FakeYahoo(first, first, later))
    once = poller.poll()
    assert poller.poll() == []  # same bars again: nothing new
    newer = poller.poll()
    assert len(once) == len(newer) == 1 and newer[0]["event_time"] > once[0]["event_time"]
    # A restarted poller that sees the same bar gives it the same event_id (the stream's dedup key).
    again = YahooQuotePoller(["AAPL"], download=FakeYahoo(first)).poll()
    assert again[0]["event_id"] == once[0]["event_id"]


def test_an_unknown_symbol_is_skipped_and_the_others_still_flow():
    fake = FakeYahoo(minute_frame(["AAPL", "NOPE"], 4, missing=("NOPE",)))
    assert [e["symbol"] for e in YahooQuotePoller(["AAPL", "NOPE"], download=fake).poll()] == ["AAPL"]


def test_rate_limits_are_retried_with_backoff_and_polls_are_spaced():
    from yfinance.exceptions import YFRateLimitError

    waits = []
    fake = FakeYahoo(YFRateLimitError(), minute_frame(["AAPL"], 3), minute_frame(["AAPL"], 4))
    poller = YahooQuotePoller(["AAPL"], download=fake, sleep=waits.append, clock=lambda: 0.0,
                              min_interval_seconds=30)
    records = list(poller.records(polls=2))
    assert waits == [2.0, 30.0]  # one backoff after the rate limit, then the poll interval
    assert [json.loads(v)["symbol"] for _, v in records] == ["AAPL", "AAPL"]
    assert all(k == b"AAPL" for k, _ in records)  # keyed by symbol


def test_giving_up_is_one_clear_line():
    fake = FakeYahoo(*[ConnectionError("reset")] * 2)
    with pytest.raises(SourceError, match="yfinance: gave up on AAPL after 2 attempts"):
        YahooQuotePoller(["AAPL"], download=fake, retries=2, sleep=lambda s: None).poll()
