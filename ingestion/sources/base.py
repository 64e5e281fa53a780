"""The market-data source interface and the OHLCV frame contract."""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from datetime import date
from enum import StrEnum

import pandas as pd

from tickerlake.core.datasets import OHLCV, OHLCV_COLUMNS, BarInterval, Kind
from tickerlake.core.errors import TickerlakeError


class SourceName(StrEnum):
    SYNTHETIC = "synthetic"  # deterministic simulated market: the offline default
    YFINANCE = "yfinance"
    CSV = "csv"
    ALPHAVANTAGE = "alphavantage"


class SourceError(TickerlakeError):
    """Bad input from a source (unknown ticker, bad CSV row, a refused key): the message names it.
    Retrying does not help: the backfill task fails at once."""


class SourceUnavailable(SourceError):
    """The source could not be reached or kept throttling after our own retries: Airflow's retry
    (minutes later) may succeed."""


class MarketDataSource(ABC):
    name: SourceName

    @abstractmethod
    def bars(self, symbols: Sequence[str], start: date, end: date, interval: BarInterval) -> pd.DataFrame:
        """Bars whose session date is in [start, end), as an `OHLCV` frame sorted by (symbol, timestamp)."""


def empty_frame() -> pd.DataFrame:
    return conform(pd.DataFrame({c: [] for c in OHLCV_COLUMNS}))


def conform(frame: pd.DataFrame) -> pd.DataFrame:
    """Columns in schema order with schema dtypes (timestamps UTC), rows sorted."""
    out = frame.reindex(columns=OHLCV_COLUMNS)
    out["timestamp"] = pd.to_datetime(out["timestamp"], utc=True)
    for column in OHLCV.columns:
        if column.kind is Kind.BIGINT:
            out[column.name] = out[column.name].astype("Int64")
        elif column.kind is Kind.DOUBLE:
            out[column.name] = out[column.name].astype("float64")
    out[["dividends", "stock_splits"]] = out[["dividends", "stock_splits"]].fillna(0.0)
    return out.sort_values(["symbol", "timestamp"], kind="stable").reset_index(drop=True)


def source_for(name: SourceName | str, **options) -> MarketDataSource:
    name = SourceName(name)
    if name is SourceName.SYNTHETIC:
        from ingestion.sources.synthetic import SyntheticMarket

        return SyntheticMarket(**options)
    if name is SourceName.YFINANCE:
        from ingestion.sources.yahoo import YahooFinanceSource

        return YahooFinanceSource(**options)
    if name is SourceName.ALPHAVANTAGE:
        from ingestion.sources.alphavantage import AlphaVantageSource

        return AlphaVantageSource.from_settings(**options)
    from ingestion.sources.csv_dir import CsvDirectorySource

    return CsvDirectorySource(**options)
