"""Alpha Vantage (https://www.alphavantage.co/documentation/): daily adjusted and intraday bars.

- Daily: `TIME_SERIES_DAILY_ADJUSTED` (raw OHLC, the adjusted close, dividends, split
  coefficients), `outputsize=full`. If the key's plan does not include it (Alpha Vantage answers
  "premium endpoint"), `TIME_SERIES_DAILY` once per run with `adj_close` NULL, and one warning.
  A daily bar is stamped at midnight of its symbol's exchange, as the Yahoo source does.
- Intraday (1m): `TIME_SERIES_INTRADAY`, one request per symbol and calendar month (`month=`),
  regular hours, unadjusted; stamped in the time zone the reply's metadata names.
- The API key comes from `TICKERLAKE_ALPHAVANTAGE_API_KEY` or the Airflow connection
  `alphavantage_default` (its password). It is sent as a query parameter, so it is never put in a
  log line or an error message: errors name the function and symbol, not the URL.
- Limits: every request takes a token from one limiter shared by all processes on the host (a
  SQLite bucket in the state directory: requests per minute and per day, the free tier's 5 and 25
  by default). A throttle reply (`Note`, or `Information` about the call frequency) is retried
  with exponential backoff (tenacity); the API's own "daily rate limit" reply and this host's
  daily budget used up are one line each (no retry: it would not help before tomorrow).
- An unknown symbol (`Error Message` "Invalid API call") and a bad key are one line each.
"""
from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

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

DAILY_ADJUSTED, DAILY, INTRADAY = "TIME_SERIES_DAILY_ADJUSTED", "TIME_SERIES_DAILY", "TIME_SERIES_INTRADAY"
FIELDS = {"1. open": "open", "2. high": "high", "3. low": "low", "4. close": "close"}
DAILY_ADJUSTED_FIELDS = {**FIELDS, "5. adjusted close": "adj_close", "6. volume": "volume",
                         "7. dividend amount": "dividends", "8. split coefficient": "split_coefficient"}
PLAIN_FIELDS = {**FIELDS, "5. volume": "volume"}
TIME_ZONES = {"US/Eastern": "America/New_York"}  # the metadata's legacy zone names


class Throttled(Exception):
    """Alpha Vantage asked us to slow down (a `Note`, or an `Information` about frequency)."""


class RedactApiKey(logging.Filter):
    """The API key travels in the query string (the only way Alpha Vantage takes it), and
    urllib3 logs each request line at DEBUG: the key's value is replaced before any handler sees it."""

    PATTERN = re.compile(r"(apikey=)[^&\s\"']+", re.IGNORECASE)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "apikey=" in message.lower():
            record.msg, record.args = self.PATTERN.sub(r"\1***", message), None
        return True


# on the logger that writes the request lines (a filter on a logger sees only its own records)
logging.getLogger("urllib3.connectionpool").addFilter(RedactApiKey())


def http_get(url: str, params: dict[str, str], timeout: float) -> Any:
    import requests

    response = requests.get(url, params=params, timeout=timeout)
    response.raise_for_status()
    return response.json()


def shared_limiter(state_dir: Path, per_minute: int, per_day: int):
    """One pyrate-limiter bucket per host (SQLite with a file lock): every task's requests count."""
    from pyrate_limiter import Duration, Limiter, Rate, SQLiteBucket

    if per_day <= per_minute:  # pyrate-limiter wants limits that grow with their interval
        raise SourceError(f"alphavantage: {per_day} requests per day must be more than {per_minute} per minute")
    state_dir.mkdir(parents=True, exist_ok=True)
    rates = [Rate(per_minute, Duration.MINUTE)]
    if per_day < per_minute * 24 * 60:  # else the minute's rate is the tighter one all day
        rates.append(Rate(per_day, Duration.DAY))
    bucket = SQLiteBucket.init_from_file(rates, db_path=str(state_dir / "alphavantage-requests.sqlite"),
                                         table=f"requests_{per_minute}_{per_day}", use_file_lock=True)
    return Limiter(bucket)


@dataclass
class AlphaVantageSource(MarketDataSource):
    api_key: str = field(default="", repr=False)  # a secret: never in a repr, a log or an error
    url: str = "https://www.alphavantage.co/query"
    requests_per_minute: int = 5
    requests_per_day: int = 25
    retries: int = 4
    backoff_seconds: float = 15.0
    state_dir: Path = Path(".state")
    timeout_seconds: float = 30.0
    get: Callable[[str, dict[str, str], float], Any] = http_get
    sleep: Callable[[float], None] = time.sleep
    name: SourceName = field(default=SourceName.ALPHAVANTAGE, init=False)
    _daily_function: str = field(default=DAILY_ADJUSTED, init=False)
    _limiter: Any = field(default=None, init=False, repr=False)

    @classmethod
    def from_settings(cls, api_key: str | None = None, **options: Any) -> "AlphaVantageSource":
        """From TICKERLAKE_ALPHAVANTAGE_*; `api_key` (an Airflow connection's) wins over the setting."""
        from tickerlake.core.settings import AlphaVantageSettings, StackSettings

        settings = AlphaVantageSettings()
        key = api_key or settings.api_key.get_secret_value()
        if not key:
            raise SourceError("alphavantage: no API key: set TICKERLAKE_ALPHAVANTAGE_API_KEY or the "
                              "Airflow connection alphavantage_default (its password)")
        return cls(api_key=key, url=settings.url, requests_per_minute=settings.requests_per_minute,
                   requests_per_day=settings.requests_per_day, retries=settings.retries,
                   backoff_seconds=settings.backoff_seconds, state_dir=StackSettings().state_dir, **options)

    def bars(self, symbols: Sequence[str], start: date, end: date, interval: BarInterval) -> pd.DataFrame:
        interval = BarInterval(interval)
        frames = [self._daily(symbol, start, end) if interval is BarInterval.DAILY
                  else self._intraday(symbol, start, end) for symbol in symbols]
        frames = [f for f in frames if not f.empty]
        return conform(pd.concat(frames, ignore_index=True)) if frames else empty_frame()

    # --- series -----------------------------------------------------------------------------
    def _daily(self, symbol: str, start: date, end: date) -> pd.DataFrame:
        reply = self._call(self._daily_function, symbol, outputsize="full")
        if reply is None:  # the adjusted series is premium for this key: the plain one instead
            self._daily_function = DAILY
            log.warning("alphavantage: %s is not in this key's plan; using %s (adj_close NULL)",
                        DAILY_ADJUSTED, DAILY)
            reply = self._call(DAILY, symbol, outputsize="full")
        frame = _frame(reply, "Time Series (Daily)", symbol,
                       DAILY_ADJUSTED_FIELDS if self._daily_function == DAILY_ADJUSTED else PLAIN_FIELDS)
        if frame.empty:
            return frame
        days = pd.to_datetime(frame["timestamp"])
        frame = frame[(days.dt.date >= start) & (days.dt.date < end)].copy()
        frame["timestamp"] = pd.to_datetime(frame["timestamp"]).dt.tz_localize(exchange_of(symbol).tz)
        if "split_coefficient" in frame:
            # Alpha Vantage's 1.0 means "no split"; tickerlake (like yfinance) writes 0 for none
            frame["stock_splits"] = frame.pop("split_coefficient").where(lambda s: s != 1.0, 0.0)
        return frame

    def _intraday(self, symbol: str, start: date, end: date) -> pd.DataFrame:
        months = list(pd.period_range(start, end - pd.Timedelta(days=1), freq="M")) if end > start else []
        frames = []
        for month in months:
            reply = self._call(INTRADAY, symbol, interval="1min", month=str(month), outputsize="full",
                               adjusted="false", extended_hours="false")
            frame = _frame(reply, "Time Series (1min)", symbol, PLAIN_FIELDS)
            if frame.empty:
                continue
            zone = (reply.get("Meta Data") or {}).get("6. Time Zone", "US/Eastern")
            stamps = pd.to_datetime(frame["timestamp"]).dt.tz_localize(TIME_ZONES.get(zone, zone))
            frame["timestamp"] = stamps
            local = stamps.dt.tz_convert(exchange_of(symbol).tz).dt.date
            frames.append(frame[(local >= start) & (local < end)])
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    # --- one request ------------------------------------------------------------------------
    def _call(self, function: str, symbol: str, **params: str) -> Any:
        """The reply of one request; None when the function is premium for this key."""
        import tenacity

        def warn(state: tenacity.RetryCallState) -> None:
            log.warning("alphavantage: throttled on %s %s (attempt %d/%d); retrying in %.0fs", function,
                        symbol, state.attempt_number, self.retries + 1, state.upcoming_sleep)

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type((Throttled, ConnectionError, TimeoutError)),
            stop=tenacity.stop_after_attempt(self.retries + 1),
            wait=tenacity.wait_exponential(multiplier=self.backoff_seconds, min=self.backoff_seconds),
            sleep=self.sleep, before_sleep=warn, reraise=True)
        try:
            return retrying(self._request, function, symbol, params)
        except Throttled as exc:
            raise SourceUnavailable(f"alphavantage: still throttled on {function} {symbol} after "
                              f"{self.retries + 1} attempts: {exc}") from None
        except (ConnectionError, TimeoutError) as exc:
            raise SourceUnavailable(f"alphavantage: {function} {symbol}: {type(exc).__name__} after "
                              f"{self.retries + 1} attempts") from None

    def _request(self, function: str, symbol: str, params: dict[str, str]) -> Any:
        if self._limiter is None:
            self._limiter = shared_limiter(self.state_dir, self.requests_per_minute, self.requests_per_day)
        if not self._limiter.try_acquire("alphavantage", blocking=True, timeout=120):
            raise SourceUnavailable(f"alphavantage: the request limit (TICKERLAKE_ALPHAVANTAGE_REQUESTS_PER_MINUTE="
                              f"{self.requests_per_minute}, _PER_DAY={self.requests_per_day}) is used up on "
                              "this host; rerun later, or raise it for a premium key")
        query = {"function": function, "symbol": symbol, "datatype": "json", **params, "apikey": self.api_key}
        import requests

        try:
            reply = self.get(self.url, query, self.timeout_seconds)
        # requests' messages carry the URL, and with it the key: only the error's type is kept
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise ConnectionError(type(exc).__name__) from None
        except (requests.RequestException, ValueError) as exc:
            raise SourceError(f"alphavantage: {function} {symbol}: {type(exc).__name__}") from None
        return check_reply(reply, function, symbol)


def check_reply(reply: Any, function: str, symbol: str) -> Any:
    """The reply, or: Throttled (retry), None (the adjusted daily series is premium for this key:
    fall back), SourceError (one line: unknown symbol, refused key, another premium endpoint)."""
    if not isinstance(reply, dict):
        raise SourceError(f"alphavantage: {function} {symbol}: the reply is not a JSON object")
    if "Error Message" in reply:
        message = str(reply["Error Message"])
        if "apikey" in message.lower() or "api key" in message.lower():
            raise SourceError("alphavantage: the API key was refused (TICKERLAKE_ALPHAVANTAGE_API_KEY or the "
                              "alphavantage_default connection)")
        raise SourceError(f"alphavantage: no data for symbol {symbol!r} ({function}: unknown or delisted "
                          "symbol? Alpha Vantage names non-US listings like TSCO.LON)")
    for note in ("Note", "Information"):
        if note in reply:
            text = str(reply[note])
            lower = text.lower()
            # Every one of these replies links to .../premium/: tell them apart by their wording.
            if "premium endpoint" in lower:
                if function == DAILY_ADJUSTED:
                    return None
                raise SourceError(f"alphavantage: {function} is a premium endpoint for this key (symbol {symbol})")
            if "api key" in lower and ("invalid" in lower or "missing" in lower):
                raise SourceError("alphavantage: the API key was refused (TICKERLAKE_ALPHAVANTAGE_API_KEY or "
                                  "the alphavantage_default connection)")
            if "rate limit" in lower and "per day" in lower and "call frequency" not in lower:
                raise SourceError(f"alphavantage: the key's daily request limit is used up ({function} {symbol}): "
                                  "rerun tomorrow, or use a premium key")
            raise Throttled(text[:200])  # the call frequency (per minute), or a note we do not know
    return reply


def _frame(reply: dict, series: str, symbol: str, fields: dict[str, str]) -> pd.DataFrame:
    if series not in reply:
        raise SourceError(f"alphavantage: {symbol}: the reply has no {series!r} (keys: {', '.join(sorted(reply))})")
    rows = [{"timestamp": stamp, **{fields[k]: v for k, v in values.items() if k in fields}}
            for stamp, values in reply[series].items()]
    if not rows:
        return pd.DataFrame()
    frame = pd.DataFrame(rows)
    for column in frame.columns.drop("timestamp"):
        frame[column] = pd.to_numeric(frame[column], errors="raise")
    frame["symbol"] = symbol
    frame["source"] = SourceName.ALPHAVANTAGE.value
    return frame.sort_values("timestamp", kind="stable").reset_index(drop=True)
