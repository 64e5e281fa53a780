"""Schemas of the lake's datasets: the one place their columns and types are spelled."""
from __future__ import annotations

from enum import Enum

import pyarrow as pa


class BarInterval(str, Enum):
    """Bar sizes the batch lane handles."""

    DAILY = "1d"
    MINUTE = "1m"

    def __str__(self) -> str:
        return self.value


# Raw OHLCV bars, as every source returns them and as they land (CSV) in the raw bucket.
OHLCV = pa.schema([
    pa.field("symbol", pa.string(), nullable=False),
    pa.field("timestamp", pa.timestamp("us", tz="UTC"), nullable=False),  # bar open time
    pa.field("open", pa.float64()),
    pa.field("high", pa.float64()),
    pa.field("low", pa.float64()),
    pa.field("close", pa.float64()),
    pa.field("adj_close", pa.float64()),  # split- and dividend-adjusted close
    pa.field("volume", pa.int64()),
    pa.field("dividends", pa.float64()),  # cash dividend paid that day (0 if none)
    pa.field("stock_splits", pa.float64()),  # split ratio that day (0 if none)
    pa.field("source", pa.string(), nullable=False),
])
OHLCV_COLUMNS = OHLCV.names

# The same columns as Spark DDL, for reading the raw CSV with an enforced schema: every column is
# read as a string first so that an unparsable value is quarantined with its reason instead of
# silently becoming NULL.
OHLCV_RAW_DDL = ", ".join(f"`{name}` STRING" for name in OHLCV_COLUMNS)

# Indicator columns the transform adds, in output order (see spark_jobs/indicators.py).
INDICATOR_COLUMNS = [
    "return_simple", "return_log",
    "sma_20", "sma_50", "ema_12", "ema_26",
    "macd", "macd_signal", "macd_hist",
    "rsi_14",
    "bb_upper", "bb_middle", "bb_lower",
    "atr_14", "vwap", "volatility_20",
    "return_zscore", "volume_ratio",
    "is_return_anomaly", "is_volume_spike",
]


# Quote/trade events on the ticks topic (JSON, keyed by symbol).
TICK = pa.schema([
    pa.field("event_id", pa.string(), nullable=False),  # unique per event: the dedup key
    pa.field("event_time", pa.timestamp("us", tz="UTC"), nullable=False),
    pa.field("symbol", pa.string(), nullable=False),
    pa.field("price", pa.float64(), nullable=False),
    pa.field("size", pa.int64(), nullable=False),
    pa.field("bid", pa.float64()),
    pa.field("ask", pa.float64()),
    pa.field("source", pa.string(), nullable=False),
])
