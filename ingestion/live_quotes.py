"""The `yfinance` producer mode: poll live prices within Yahoo's rate limits, as tick events.

Each poll is ONE batched request for every symbol (`yf.download(period="1d", interval="1m")`),
at most once per `min_interval_seconds` (default 30 s: Yahoo throttles clients that poll harder),
with the source's retry and exponential backoff on rate limits and transient errors. For each
symbol the newest complete one-minute bar becomes one event: price = its close, size = its volume,
event time = the bar's end. A bar already published is never published again, and its
`event_id` is derived from (symbol, bar time), so even a restarted poller cannot create a second
event for the same bar. Yahoo's minute bars carry no bid/ask: those fields are null.

Not reachable offline: tests feed constructed frames shaped like yfinance's.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import pandas as pd

from ingestion.sources.yahoo import with_retries, yf_download

log = logging.getLogger(__name__)
Record = tuple[bytes, bytes]


@dataclass
class YahooQuotePoller:
    symbols: Sequence[str]
    min_interval_seconds: float = 30.0
    download: Callable[..., pd.DataFrame] = yf_download  # injectable: tests pass constructed frames
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    retries: int = 5
    backoff_seconds: float = 2.0
    _last_bar: dict[str, pd.Timestamp] = field(default_factory=dict, init=False)

    def poll(self) -> list[dict[str, Any]]:
        """One request; the events for bars newer than the last published one, per symbol."""
        frame = with_retries(lambda: self.download(
            tickers=list(self.symbols), period="1d", interval="1m", auto_adjust=False, prepost=False,
            group_by="ticker", threads=False, progress=False, multi_level_index=True), self.symbols,
            attempts=self.retries, backoff_seconds=self.backoff_seconds, sleep=self.sleep)
        events = []
        for symbol in self.symbols:
            if frame is None or frame.empty or symbol not in frame.columns.get_level_values(0):
                log.warning("yfinance: no live data for %s (unknown symbol or market closed)", symbol)
                continue
            bars = cast(pd.DataFrame, frame[symbol]).dropna(subset=["Close"])
            if len(bars) < 2:  # the newest bar is still forming: publish only complete ones
                continue
            bar_time = pd.Timestamp(bars.index[-2])
            bar_time = bar_time.tz_localize("UTC") if bar_time.tzinfo is None else bar_time.tz_convert("UTC")
            if symbol in self._last_bar and bar_time <= self._last_bar[symbol]:
                continue
            row = bars.iloc[-2]
            self._last_bar[symbol] = bar_time
            events.append({
                "event_id": "yf-" + hashlib.sha1(f"{symbol}|{bar_time.isoformat()}".encode()).hexdigest()[:24],
                "event_time": (bar_time + pd.Timedelta(minutes=1)).isoformat(),
                "symbol": symbol, "price": float(row["Close"]), "size": int(row.get("Volume", 0) or 0),
                "bid": None, "ask": None, "source": "yfinance",
            })
        return events

    def records(self, polls: int | None = None) -> Iterator[Record]:
        """Poll forever (or `polls` times), no faster than `min_interval_seconds`."""
        n = 0
        while polls is None or n < polls:
            started = self.clock()
            for event in self.poll():
                yield event["symbol"].encode(), json.dumps(event).encode()
            n += 1
            if polls is None or n < polls:
                self.sleep(max(0.0, self.min_interval_seconds - (self.clock() - started)))
