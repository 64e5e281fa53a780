"""A user's directory of CSV files (header: symbol,timestamp,open,high,low,close[,adj_close],volume).

Strict: the first bad row stops the read with the file, the line and what is wrong, so a user
fixes their file rather than loading half of it. (Rows that land in the raw bucket and turn out
bad are the transform's business: it quarantines them and keeps going.)
"""
from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import pandas as pd

from ingestion.sources.base import MarketDataSource, SourceError, SourceName, conform, empty_frame
from tickerlake.core.datasets import BarInterval
from tickerlake.core.market import EXCHANGE_TZ

REQUIRED = ("symbol", "timestamp", "open", "high", "low", "close", "volume")
NUMBERS = ("open", "high", "low", "close", "adj_close", "dividends", "stock_splits")


@dataclass
class CsvDirectorySource(MarketDataSource):
    directory: Path = Path("data/csv")
    name: SourceName = field(default=SourceName.CSV, init=False)

    def bars(self, symbols: Sequence[str], start: date, end: date, interval: BarInterval) -> pd.DataFrame:
        directory = Path(self.directory)
        files = sorted(directory.glob("*.csv"))
        if not files:
            raise SourceError(f"csv: no *.csv files in {directory}")
        wanted = set(symbols)
        rows = []
        for path in files:
            rows += [r for r in self._read(path) if r["symbol"] in wanted]
        if not rows:
            return empty_frame()
        frame = pd.DataFrame(rows)
        if "adj_close" not in frame:
            frame["adj_close"] = frame["close"]
        frame["source"] = self.name.value
        frame = conform(frame)
        day = frame["timestamp"].dt.tz_convert(EXCHANGE_TZ).dt.date
        return frame[(day >= start) & (day < end)].reset_index(drop=True)

    @staticmethod
    def _read(path: Path) -> list[dict]:
        with path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
            if missing:
                raise SourceError(f"{path}:1: missing column(s) {', '.join(missing)}")
            rows = []
            for row in reader:
                where = f"{path}:{reader.line_num}"
                try:
                    rows.append(_parse(row))
                except ValueError as exc:
                    raise SourceError(f"{where}: {exc}") from None
            return rows


def _parse(row: dict) -> dict:
    out: dict = {"symbol": (row.get("symbol") or "").strip()}
    if not out["symbol"]:
        raise ValueError("symbol is empty")
    try:
        out["timestamp"] = pd.Timestamp(row["timestamp"])
    except (ValueError, TypeError):
        raise ValueError(f"timestamp: cannot parse {row['timestamp']!r}") from None
    if out["timestamp"].tzinfo is None:
        raise ValueError(f"timestamp: {row['timestamp']!r} has no time zone (use ISO 8601 with offset)")
    for column in NUMBERS:
        text = (row.get(column) or "").strip()
        if column not in row or (text == "" and column not in REQUIRED):
            continue
        try:
            out[column] = float(text)
        except ValueError:
            raise ValueError(f"{column}: cannot parse {text!r} as a number") from None
    try:
        out["volume"] = int(float(row["volume"]))
    except ValueError:
        raise ValueError(f"volume: cannot parse {row['volume']!r} as a number") from None
    if out["high"] < out["low"]:
        raise ValueError(f"high {out['high']} < low {out['low']}")
    if out["volume"] < 0 or min(out[c] for c in ("open", "high", "low", "close")) < 0:
        raise ValueError("negative price or volume")
    return out
