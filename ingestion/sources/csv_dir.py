"""A user's directory of CSV files, in either of two layouts (recognised by the header):

- tickerlake's own: `symbol,timestamp,open,high,low,close[,adj_close],volume[,dividends,stock_splits]`,
  any number of symbols per file, timestamps ISO 8601 with an offset (a date alone: a daily bar);
- the usual download (Yahoo Finance, most brokers): one file per symbol named after it
  (`AAPL.csv`, `VOD.L.csv`), `Date,Open,High,Low,Close[,Adj Close],Volume` (or `Datetime` for
  intraday bars); a date alone is a daily bar of that session.

A daily bar dated without a time is stamped at midnight of its symbol's exchange (the session
date is then that date, whatever the exchange's time zone: tickerlake/core/market.py). Symbols
match whatever their case (they are upper-cased, as the backfill plans them). A file holds the
bars of one interval: daily when every bar is at its exchange's midnight (a date alone) or no
symbol has two bars on one session date, else intraday; a request for one interval returns only
files of that interval (a minute file with one bar a day would pass for daily: the rule's limit).
`adj_close` is NULL where a file has no adjusted close (never silently the close).

Strict: the first bad row stops the read with the file, the line and what is wrong, so a user
fixes their file rather than loading half of it. (Rows that land in the raw bucket and turn out
bad are the transform's business: it quarantines them and keeps going.)
"""
from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import pandas as pd

from ingestion.sources.base import MarketDataSource, SourceError, SourceName, conform, empty_frame
from tickerlake.core.datasets import BarInterval
from tickerlake.core.market import exchange_of, session_dates

REQUIRED = ("symbol", "timestamp", "open", "high", "low", "close", "volume")
NUMBERS = ("open", "high", "low", "close", "adj_close", "dividends", "stock_splits")
# The download layout's headers -> tickerlake's columns.
DOWNLOAD_COLUMNS = {"date": "timestamp", "datetime": "timestamp", "open": "open", "high": "high",
                    "low": "low", "close": "close", "adj close": "adj_close", "adj_close": "adj_close",
                    "volume": "volume", "dividends": "dividends", "stock splits": "stock_splits"}
DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass
class CsvDirectorySource(MarketDataSource):
    directory: Path = Path("data/csv")
    name: SourceName = field(default=SourceName.CSV, init=False)

    def bars(self, symbols: Sequence[str], start: date, end: date, interval: BarInterval) -> pd.DataFrame:
        directory = Path(self.directory)
        files = sorted(set(directory.glob("*.csv")) | set(directory.glob("*.CSV")))
        if not files:
            raise SourceError(f"csv: no *.csv files in {directory}")
        wanted = {s.upper() for s in symbols}
        frames = []
        for path in files:
            frame = self._read(path, wanted)
            if not frame.empty and file_interval(frame) is BarInterval(interval):
                frames.append(frame)
        if not frames:
            return empty_frame()
        frame = pd.concat(frames, ignore_index=True)
        frame["source"] = self.name.value
        frame = conform(frame)
        day = session_dates(frame["timestamp"], frame["symbol"])
        return frame[(day >= start) & (day < end)].reset_index(drop=True)

    @staticmethod
    def _read(path: Path, wanted: set[str]) -> pd.DataFrame:
        with path.open(newline="", encoding="utf-8-sig") as handle:  # a BOM is common in exports
            reader = csv.DictReader(handle)
            header = [h.strip() for h in reader.fieldnames or []]
            lowered = [h.lower() for h in header]
            download = "symbol" not in lowered and any(h in ("date", "datetime") for h in lowered)
            if download:
                file_symbol = path.stem.strip().upper()
                if file_symbol not in wanted:
                    return pd.DataFrame()
                rename = {h: DOWNLOAD_COLUMNS[h.lower()] for h in header if h.lower() in DOWNLOAD_COLUMNS}
                missing = [c for c in REQUIRED if c != "symbol" and c not in rename.values()]
            else:  # tickerlake's layout, whatever the header's case
                rename = {h: h.lower() for h in header}
                missing = [c for c in REQUIRED if c not in lowered]
            if missing:
                layouts = ("symbol,timestamp,open,high,low,close,volume or "
                           "Date,Open,High,Low,Close,Adj Close,Volume")
                raise SourceError(f"{path}:1: missing column(s) {', '.join(missing)} (expected {layouts})")
            rows = []
            for row in reader:
                row = {rename[k.strip()]: v for k, v in row.items() if k is not None and k.strip() in rename}
                if download:
                    row["symbol"] = file_symbol
                elif (symbol := (row.get("symbol") or "").strip().upper()) and symbol not in wanted:
                    continue  # another symbol's row (an empty symbol is an error, below)
                try:
                    rows.append(_parse(row))
                except ValueError as exc:
                    raise SourceError(f"{path}:{reader.line_num}: {exc}") from None
            frame = pd.DataFrame(rows)
            if not frame.empty and "adj_close" not in frame:
                frame["adj_close"] = float("nan")  # not given: unknown, never the close
            return frame


def file_interval(frame: pd.DataFrame) -> BarInterval:
    """Daily when every bar is at midnight of its exchange (a date alone, as downloads write
    daily bars), or when no symbol has two bars on one session date (daily bars stamped at the
    open); else intraday."""
    stamps = pd.to_datetime(frame["timestamp"], utc=True)
    zones = frame["symbol"].map(lambda s: exchange_of(s).tz)
    local_midnight = all((stamps[zones == tz].dt.tz_convert(tz) == stamps[zones == tz].dt.tz_convert(tz)
                          .dt.normalize()).all() for tz in zones.unique())
    if local_midnight:
        return BarInterval.DAILY
    days = session_dates(frame["timestamp"], frame["symbol"])
    return BarInterval.MINUTE if pd.DataFrame({"s": frame["symbol"], "d": days}).duplicated().any() \
        else BarInterval.DAILY


def _timestamp(text: str, symbol: str) -> pd.Timestamp:
    if DATE_ONLY.match(text):  # a session date: midnight at the symbol's exchange
        return pd.Timestamp(text).tz_localize(exchange_of(symbol).tz)
    try:
        stamp = pd.Timestamp(text)
    except (ValueError, TypeError):
        raise ValueError(f"timestamp: cannot parse {text!r}") from None
    if stamp.tzinfo is None:
        raise ValueError(f"timestamp: {text!r} has no time zone (use ISO 8601 with offset, or a date alone)")
    return stamp


def _parse(row: dict) -> dict:
    out: dict = {"symbol": (row.get("symbol") or "").strip().upper()}
    if not out["symbol"]:
        raise ValueError("symbol is empty")
    out["timestamp"] = _timestamp((row.get("timestamp") or "").strip(), out["symbol"])
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
