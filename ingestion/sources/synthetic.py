"""A deterministic, seeded market simulator: the offline default source.

Daily closes follow a geometric Brownian motion per symbol from a fixed epoch over the real NYSE
calendar (exchange-calendars: weekends, holidays and half days are respected). The i-th session's
random draws depend only on (seed, symbol, i), so any date range is generated identically on its
own: a backfill of one day equals that day cut out of a backfill of a year. One-minute bars bridge
each session's open to its close, so they agree with the daily bars.

Tests can ask for known anomalies (a return jump with a volume spike), gaps (missing bars) and bad
rows (each kind of invalid value the transform must quarantine).
"""
from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date

import numpy as np
import pandas as pd

from ingestion.sources.base import MarketDataSource, SourceError, SourceName, conform, empty_frame
from tickerlake.core.datasets import OHLCV_COLUMNS, BarInterval
from tickerlake.core.market import CALENDAR_START, EXCHANGE, exchange_calendar

EPOCH = CALENDAR_START


@dataclass(frozen=True)
class Anomaly:
    """A known anomaly: on `day` the price jumps by `jump` (a return) and volume × `volume_factor`.

    For minute bars the jump happens at minute `minute` of the session.
    """

    symbol: str
    day: date
    jump: float = 0.12
    volume_factor: float = 12.0
    minute: int = 120


# The kinds of bad row the transform must quarantine, with the reason it must give.
BAD_ROW_KINDS = {
    "high_below_low": "high < low",
    "negative_volume": "negative volume",
    "negative_price": "negative price",
    "null_symbol": "null symbol",
    "null_timestamp": "null timestamp",
    "unparsable_close": "unparsable close",
}


def _calendar():
    return exchange_calendar(EXCHANGE)


def sessions(start: date, end: date) -> pd.DatetimeIndex:
    """Exchange sessions with start <= session < end."""
    calendar = _calendar()
    last = pd.Timestamp(end) - pd.Timedelta(days=1)
    if pd.Timestamp(start) > last:
        return pd.DatetimeIndex([])
    if pd.Timestamp(start) < pd.Timestamp(EPOCH) or last > calendar.last_session:
        raise SourceError(
            f"synthetic: {start}..{end} is outside the synthetic market "
            f"({EPOCH}..{calendar.last_session.date()}, the {EXCHANGE} calendar from its epoch)"
        )
    return calendar.sessions_in_range(pd.Timestamp(start), last)


def _symbol_key(symbol: str) -> int:
    return zlib.crc32(symbol.encode())


@dataclass
class SyntheticMarket(MarketDataSource):
    seed: int = 42
    anomalies: Sequence[Anomaly] = ()
    gaps: Sequence[tuple[str, date]] = ()  # (symbol, session) pairs left out
    name: SourceName = field(default=SourceName.SYNTHETIC, init=False)

    # --- daily path -------------------------------------------------------------------------
    def _daily_path(self, symbol: str, until: date) -> pd.DataFrame:
        """Every session from EPOCH to `until` (exclusive) for one symbol."""
        days = sessions(EPOCH, until)
        n = len(days)
        key = _symbol_key(symbol)
        rng = np.random.default_rng([self.seed, key])
        draws = rng.standard_normal((n, 5))  # row i depends only on (seed, symbol, i)
        params = np.random.default_rng([self.seed, key, 1])
        p0 = params.uniform(20, 400)
        sigma = params.uniform(0.01, 0.03)
        base_volume = params.uniform(2e5, 5e6)
        mu = 0.0003

        log_ret = mu - sigma**2 / 2 + sigma * draws[:, 0]
        jumps = {a.day: a for a in self.anomalies if a.symbol == symbol}
        volume_factor = np.ones(n)
        for i, day in enumerate(days.date):
            if day in jumps:
                log_ret[i] = np.log1p(jumps[day].jump)
                volume_factor[i] = jumps[day].volume_factor
        close = p0 * np.exp(np.cumsum(log_ret))
        prev_close = np.concatenate([[p0], close[:-1]])
        open_ = prev_close * np.exp(0.25 * sigma * draws[:, 1])
        high = np.maximum(open_, close) * np.exp(0.5 * sigma * np.abs(draws[:, 2]))
        low = np.minimum(open_, close) * np.exp(-0.5 * sigma * np.abs(draws[:, 3]))
        volume = np.round(base_volume * np.exp(0.3 * draws[:, 4]) * volume_factor).astype("int64")
        return pd.DataFrame({
            "session": days.date,
            "timestamp": _calendar().opens.loc[days].to_numpy(),
            "open": open_, "high": high, "low": low, "close": close, "volume": volume,
            "sigma": sigma,
        })

    # --- public interface -------------------------------------------------------------------
    def last_close(self, symbol: str, before: date) -> float:
        """The symbol's close on the last session before `before` (where a live stream that
        continues this market starts)."""
        path = self._daily_path(symbol, before)
        if path.empty:
            raise ValueError(f"synthetic: no session of {symbol} before {before}")
        return float(path["close"].iloc[-1])

    def bars(self, symbols: Sequence[str], start: date, end: date, interval: BarInterval) -> pd.DataFrame:
        interval = BarInterval(interval)
        if not len(sessions(start, end)):
            return empty_frame()
        frames = []
        for symbol in symbols:
            path = self._daily_path(symbol, end)
            path = path[path["session"] >= start]
            if interval is BarInterval.DAILY:
                frame = path.drop(columns=["sigma"])
            else:
                frame = pd.concat([self._minutes(symbol, row) for row in path.itertuples()],
                                  ignore_index=True)
            frame["symbol"] = symbol
            gaps = {d for s, d in self.gaps if s == symbol}
            frame = frame[~frame["session"].isin(gaps)]
            frames.append(frame)
        out = pd.concat(frames, ignore_index=True)
        out["adj_close"] = out["close"]
        out["dividends"] = 0.0
        out["stock_splits"] = 0.0
        out["source"] = self.name.value
        return conform(out)

    def _minutes(self, symbol: str, day) -> pd.DataFrame:
        minutes = _calendar().session_minutes(pd.Timestamp(day.session))
        m = len(minutes)
        rng = np.random.default_rng([self.seed, _symbol_key(symbol), day.session.toordinal()])
        draws = rng.standard_normal((m, 4))
        step = day.sigma / np.sqrt(m)
        walk = np.concatenate([[0.0], np.cumsum(step * draws[:, 0])])
        t = np.arange(m + 1) / m
        bridge = walk - t * walk[-1]  # pinned to 0 at both ends
        log_path = np.log(day.open) + t * (np.log(day.close) - np.log(day.open)) + bridge
        anomaly = next((a for a in self.anomalies if a.symbol == symbol and a.day == day.session), None)
        volume_factor = np.ones(m)
        if anomaly is not None:
            at = min(anomaly.minute, m - 1)
            log_path[at + 1:] += np.log1p(anomaly.jump)
            volume_factor[at] = anomaly.volume_factor
        price = np.exp(log_path)
        open_, close = price[:-1], price[1:]
        high = np.maximum(open_, close) * np.exp(0.5 * step * np.abs(draws[:, 1]))
        low = np.minimum(open_, close) * np.exp(-0.5 * step * np.abs(draws[:, 2]))
        u_shape = 1.0 + 1.5 * (2 * np.arange(m) / max(m - 1, 1) - 1) ** 2  # busy open and close
        weights = u_shape / u_shape.sum()
        volume = np.maximum(1, np.round(day.volume * weights * np.exp(0.3 * draws[:, 3]) * volume_factor))
        return pd.DataFrame({"session": day.session, "timestamp": minutes, "open": open_, "high": high,
                             "low": low, "close": close, "volume": volume.astype("int64")})

    def bad_rows(self, symbol: str, day: date, interval: BarInterval) -> pd.DataFrame:
        """One bad row of each kind on `day`, as strings (as they would sit in a CSV), with the
        reason the transform must give in `expected_reason`."""
        good = self.bars([symbol], day, day + pd.Timedelta(days=1), interval)
        if good.empty:
            raise SourceError(f"synthetic: {day} is not a {EXCHANGE} session")
        base = good.iloc[0]
        rows = []
        for offset, (kind, reason) in enumerate(BAD_ROW_KINDS.items(), start=1):
            row = {c: base[c] for c in OHLCV_COLUMNS}
            # A distinct timestamp per row: a bad row must not collide with (or dedupe) a good one.
            row["timestamp"] = base["timestamp"] + pd.Timedelta(seconds=offset)
            if kind == "high_below_low":
                row["high"], row["low"] = base["low"] * 0.99, base["high"] * 1.01
            elif kind == "negative_volume":
                row["volume"] = -100
            elif kind == "negative_price":
                row["open"] = -abs(base["open"])
            elif kind == "null_symbol":
                row["symbol"] = None
            elif kind == "null_timestamp":
                row["timestamp"] = None
            elif kind == "unparsable_close":
                row["close"] = "n/a"
            row["expected_reason"] = reason
            rows.append(row)
        return pd.DataFrame(rows)
