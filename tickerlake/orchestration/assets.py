"""Airflow Assets: the lake's datasets as the scheduler sees them (imported by DAG files only)."""
from __future__ import annotations

from airflow.sdk import Asset

from tickerlake.core.names import PROCESSED_BARS_ASSET_URI, RAW_OHLCV_ASSET_URI, REALTIME_ASSET_URI

RAW_OHLCV = Asset(name="raw_ohlcv", uri=RAW_OHLCV_ASSET_URI)
PROCESSED_BARS = Asset(name="processed_bars", uri=PROCESSED_BARS_ASSET_URI)
REALTIME_TICKS = Asset(name="realtime_ticks", uri=REALTIME_ASSET_URI)
