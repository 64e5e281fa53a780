"""The market-data source interface and the OHLCV frame contract."""
from __future__ import annotations

from abc import ABC, abstractmethod
from datetime import date
from enum import Enum
from typing import Sequence

import pandas as pd

from tickerlake.errors import TickerlakeError
from tickerlake.schemas import OHLCV, OHLCV_COLUMNS, BarInterval


class SourceName(str, Enum):
    SYNTHETIC = "synthetic"  # deterministic simulated market: the offline default
    YFINANCE = "yfinance"
    CSV = "csv"

    def __str__(self) -> str:
        return self.value


class SourceError(TickerlakeError):
    """Bad input from a source (unknown ticker, bad CSV row): the message names it."""


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
    for field in OHLCV:
        if field.name in ("symbol", "source", "timestamp"):
            continue
        if field.name == "volume":
            out[field.name] = out[field.name].astype("Int64")
        else:
            out[field.name] = out[field.name].astype("float64")
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
    from ingestion.sources.csv_dir import CsvDirectorySource

    return CsvDirectorySource(**options)
