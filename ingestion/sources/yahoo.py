"""Yahoo Finance through yfinance: batched multi-ticker history with retries.

`auto_adjust=False` on purpose: raw OHLC stays as traded, `adj_close` carries the split- and
dividend-adjusted close, and `actions=True` keeps the dividends and splits columns, so nothing is
lost and adjustment can be recomputed. Rate limits and transient network errors are retried with
exponential backoff; a ticker with no data is an error that names it.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any, cast

import pandas as pd

from ingestion.sources.base import (
    MarketDataSource,
    SourceError,
    SourceName,
    SourceUnavailable,
    conform,
    empty_frame,
)
from tickerlake.core.datasets import BarInterval
from tickerlake.core.market import exchange_of

log = logging.getLogger(__name__)

COLUMN_MAP = {"Open": "open", "High": "high", "Low": "low", "Close": "close", "Adj Close": "adj_close",
              "Volume": "volume", "Dividends": "dividends", "Stock Splits": "stock_splits"}


def _transient_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [ConnectionError, TimeoutError]
    try:
        from yfinance.exceptions import YFRateLimitError

        errors.append(YFRateLimitError)
    except ImportError:  # older yfinance
        pass
    try:
        import requests

        errors += [requests.ConnectionError, requests.Timeout]
    except ImportError:
        pass
    return tuple(errors)


def with_retries(call: Callable[[], pd.DataFrame], symbols: Sequence[str], *, attempts: int,
                 backoff_seconds: float, sleep: Callable[[float], None] = time.sleep) -> pd.DataFrame:
    """`call()`, retried with exponential backoff (tenacity) on rate limits and transient network
    errors; after `attempts` one SourceUnavailable naming the symbols and the last error."""
    import tenacity

    def warn(state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        log.warning("yfinance: %s (attempt %d/%d); retrying in %.0fs", type(exc).__name__,
                    state.attempt_number, attempts, state.upcoming_sleep)

    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(_transient_errors()),
        stop=tenacity.stop_after_attempt(attempts),
        wait=tenacity.wait_exponential(multiplier=backoff_seconds, exp_base=2, min=backoff_seconds),
        sleep=sleep, before_sleep=warn, reraise=True)
    try:
        return retrying(call)
    except _transient_errors() as exc:
        raise SourceUnavailable(f"yfinance: gave up on {', '.join(symbols)} after {attempts} "
                          f"attempts: {type(exc).__name__}: {exc}") from None


def yf_download(**kwargs: Any) -> pd.DataFrame:
    import yfinance as yf

    return yf.download(**kwargs)


@dataclass
class YahooFinanceSource(MarketDataSource):
    batch_size: int = 50  # tickers per request
    retries: int = 5
    backoff_seconds: float = 2.0
    download: Callable[..., pd.DataFrame] = yf_download  # injectable: tests pass recorded frames
    sleep: Callable[[float], None] = time.sleep
    name: SourceName = field(default=SourceName.YFINANCE, init=False)

    def bars(self, symbols: Sequence[str], start: date, end: date, interval: BarInterval) -> pd.DataFrame:
        interval = BarInterval(interval)
        frames = []
        for i in range(0, len(symbols), self.batch_size):
            batch = list(symbols[i:i + self.batch_size])
            frames.append(self._batch(batch, start, end, interval))
        frames = [f for f in frames if not f.empty]
        return conform(pd.concat(frames, ignore_index=True)) if frames else empty_frame()

    def _batch(self, symbols: list[str], start: date, end: date, interval: BarInterval) -> pd.DataFrame:
        raw = self.with_retries(lambda: self.download(
            tickers=symbols, start=start.isoformat(), end=end.isoformat(), interval=interval.value,
            auto_adjust=False, actions=True, group_by="ticker", threads=True, progress=False,
            multi_level_index=True, repair=False,
        ), symbols)
        if raw is None or raw.empty:
            raise SourceError(f"yfinance: no data for {', '.join(symbols)} in {start}..{end} "
                              "(unknown symbols, or no sessions in the range)")
        frames = []
        for symbol in symbols:
            if symbol not in raw.columns.get_level_values(0):
                raise SourceError(f"yfinance: no data for ticker {symbol!r} (unknown or delisted symbol?)")
            part = cast(pd.DataFrame, raw[symbol]).rename(columns=COLUMN_MAP)
            part = part.dropna(how="all", subset=[c for c in ("open", "high", "low", "close") if c in part])
            if part.empty:
                raise SourceError(f"yfinance: no data for ticker {symbol!r} in {start}..{end} "
                                  "(unknown or delisted symbol?)")
            part = part.reset_index().rename(columns={"Date": "timestamp", "Datetime": "timestamp"})
            part["symbol"] = symbol
            frames.append(part)
        out = pd.concat(frames, ignore_index=True)
        # Daily bars come as naive exchange-local dates: stamp them at midnight of the symbol's
        # exchange (VOD.L at London midnight), in UTC, so the session date is the date Yahoo gave.
        ts = pd.to_datetime(out["timestamp"])
        if ts.dt.tz is None:
            ts = pd.concat([ts[out["symbol"] == symbol].dt.tz_localize(exchange_of(symbol).tz).dt.tz_convert("UTC")
                            for symbol in out["symbol"].unique()]).sort_index()
        out["timestamp"] = ts.dt.tz_convert("UTC")
        out["source"] = self.name.value
        return out

    def with_retries(self, call: Callable[[], pd.DataFrame], symbols: list[str]) -> pd.DataFrame:
        return with_retries(call, symbols, attempts=self.retries, backoff_seconds=self.backoff_seconds,
                            sleep=self.sleep)
