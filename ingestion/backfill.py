"""Backfill historical bars into the raw bucket as CSV: one object per (source, symbol, month)
(tickerlake/core/names.py).

Keys come from the session date of each bar (never the wall clock), so a rerun of the same
interval writes byte-identical objects to the same keys. An interval that covers part of a
month's object replaces that object's rows of its own sessions and keeps the rest
(ingestion/raw_objects.py).
"""
from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, timedelta

import pandas as pd

from ingestion.raw_objects import write_object
from ingestion.sources.base import MarketDataSource
from tickerlake.core.datasets import OHLCV_COLUMNS, BarInterval
from tickerlake.core.market import session_dates
from tickerlake.core.names import RAW_SPAN, RawSpan, invalid_symbols, raw_ohlcv_key

log = logging.getLogger(__name__)
PUT_WORKERS = 8


@dataclass(frozen=True)
class BackfillResult:
    objects: int
    rows: int
    keys: tuple[str, ...]
    missing: tuple[str, ...] = ()  # requested symbols the source returned no bar of


def to_csv_bytes(frame: pd.DataFrame) -> bytes:
    """Deterministic CSV: schema column order, ISO-8601 timestamps with offset, round-trip floats."""
    out = frame.reindex(columns=OHLCV_COLUMNS).copy()
    out["timestamp"] = [t.isoformat() if isinstance(t, pd.Timestamp) and not pd.isna(t) else ""
                        for t in out["timestamp"]]
    return out.to_csv(index=False, lineterminator="\n").encode()


def backfill(source: MarketDataSource, symbols: Sequence[str], start: date, end: date,
             interval: BarInterval, s3, *, extra_rows: pd.DataFrame | None = None) -> BackfillResult:
    """Write [start, end) of `symbols` to the raw bucket. `extra_rows` (tests, demos) are appended
    to the file of their (symbol, date), e.g. the synthetic source's bad rows."""
    frame = source.bars(symbols, start, end, interval)
    if extra_rows is not None and not extra_rows.empty:
        frame = pd.concat([frame.astype(object), extra_rows.reindex(columns=OHLCV_COLUMNS).astype(object)],
                          ignore_index=True)
    returned = set(frame["symbol"].dropna().astype(str)) if not frame.empty else set()
    missing = tuple(s for s in symbols if s not in returned)
    if missing:
        log.warning("%s returned no %s bar of %s in %s..%s (end exclusive): unknown symbol, no session "
                    "in the range, or no file of that interval", source.name.value, BarInterval(interval).value,
                    ", ".join(missing), start, end)
    if frame.empty:
        return BackfillResult(0, 0, (), missing)
    # A bad row may lack its symbol or timestamp: it goes with the file it was appended for.
    symbol = frame["symbol"].ffill() if frame["symbol"].isna().any() else frame["symbol"]
    # the session date in the symbol's exchange's time zone (tickerlake/core/market.py)
    days = session_dates(frame["timestamp"], symbol).ffill()
    bar_interval = BarInterval(interval).value
    span = RAW_SPAN[bar_interval]
    parts: dict[str, list[pd.DataFrame]] = defaultdict(list)
    spans: dict[str, tuple[date, date]] = {}
    for (sym, day), part in frame.groupby([symbol, days], sort=True):
        assert isinstance(day, date)  # session_dates gives dates; groupby drops the missing
        key = raw_ohlcv_key(bar_interval, source.name.value, str(sym), day.isoformat())
        parts[key].append(part)
        spans[key] = span_of(span, day)

    def put(key: str) -> str:
        first, after = spans[key]
        write_object(s3, key, to_csv_bytes(pd.concat(parts[key])), whole=start <= first and after <= end,
                     start=start, end=end)
        return key

    # The objects go out concurrently: a PUT waits ~7 ms on the store (boto3 clients are
    # thread-safe; the workers stay under its default pool of 10 connections). map() raises the
    # first failure.
    with ThreadPoolExecutor(max_workers=PUT_WORKERS) as pool:
        keys = list(pool.map(put, parts))
    return BackfillResult(len(keys), len(frame), tuple(keys), missing)


def span_of(span: RawSpan, day: date) -> tuple[date, date]:
    """The sessions [first, after) an object of `span` holding `day` covers."""
    if span is RawSpan.DAY:
        return day, day + timedelta(days=1)
    first = day.replace(day=1)
    return first, (first + timedelta(days=32)).replace(day=1)


# --- What the backfill DAG wires together ------------------------------------------------------

DEFAULT_SYMBOLS = ("AAPL", "MSFT", "NVDA", "AMZN", "GOOGL")


@dataclass(frozen=True)
class BackfillJob:
    """One mapped task's work: a batch of symbols over [start, end)."""

    source: str
    interval: str
    symbols: tuple[str, ...]
    start: str  # ISO dates: JSON-able for XCom
    end: str
    inject_bad_rows: bool = False

    def to_dict(self) -> dict:
        return {"source": self.source, "interval": self.interval, "symbols": list(self.symbols),
                "start": self.start, "end": self.end, "inject_bad_rows": self.inject_bad_rows}


def plan_jobs(source: str, interval: str, symbols: Sequence[str], start: date, end: date,
              batch_size: int, inject_bad_rows: bool = False) -> list[dict]:
    """Split the symbols into batches (one mapped task each), for the range [start, end)."""
    from ingestion.sources.base import SourceName

    SourceName(source)  # a clear error for an unknown source, before any task is mapped
    BarInterval(interval)
    if end <= start:
        raise ValueError(f"backfill range is empty: start {start} >= end {end}")
    unique = list(dict.fromkeys(s.strip().upper() for s in symbols if s.strip()))
    if not unique:
        raise ValueError("no symbols to backfill")
    if bad := invalid_symbols(unique):
        raise ValueError(f"symbols: {', '.join(repr(b) for b in bad)} not a symbol "
                         f"(letters, digits, and . ^ = - only, at most 20 characters)")
    batches = [tuple(unique[i:i + batch_size]) for i in range(0, len(unique), batch_size)]
    return [BackfillJob(source, interval, batch, start.isoformat(), end.isoformat(),
                        inject_bad_rows and i == 0).to_dict() for i, batch in enumerate(batches)]


def run_job(job: dict, source_options: dict | None = None) -> dict:
    """Run one batch against the configured S3 store; returns counts for the task log/XCom."""
    from ingestion.sources.base import source_for
    from tickerlake.core.clients import s3_client
    from tickerlake.core.metrics import push_run
    from tickerlake.core.settings import get_settings

    source = source_for(job["source"], **(source_options or {}))
    start, end = date.fromisoformat(job["start"]), date.fromisoformat(job["end"])
    extra = None
    if job.get("inject_bad_rows"):
        from ingestion.sources.synthetic import SyntheticMarket, sessions

        days = sessions(start, end)
        if not isinstance(source, SyntheticMarket):
            raise ValueError("inject_bad_rows needs the synthetic source")
        if len(days):
            extra = source.bad_rows(job["symbols"][0], days[0].date(), BarInterval(job["interval"]))
    began = time.monotonic()
    result = backfill(source, job["symbols"], start, end, BarInterval(job["interval"]),
                      s3_client(get_settings().s3), extra_rows=extra)
    push_run("ohlcv_backfill", {"interval": job["interval"], "source": job["source"],
                                "batch": job["symbols"][0] if job["symbols"] else "none"},
             rows=result.rows, seconds=time.monotonic() - began, partitions=result.objects,
             settings=get_settings().monitoring)
    return {"objects": result.objects, "rows": result.rows, "symbols": job["symbols"],
            "missing": list(result.missing)}
