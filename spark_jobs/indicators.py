"""Technical indicators for one symbol's bars, following TA-Lib's conventions exactly.

Pure pandas/numpy (no Spark, no TA-Lib at run time): the transform calls `compute` per symbol
through `applyInPandas`, and tests compare every column with the `ta-lib` package. TA-Lib's rules
reproduced here:

- SMA(n): NULL for the first n-1 bars.
- EMA(n): seeded with the SMA of the first n values, then prev + k·(x - prev), k = 2/(n+1).
- MACD(12, 26, 9): both EMAs are seeded at the slow EMA's first bar (index 25): the fast EMA with
  the SMA of the 12 values ending there, not at index 11 as a standalone EMA(12) would be; the
  signal is an EMA(9) of the MACD line seeded with its first 9 values; all three are NULL for the
  first 33 bars.
- RSI(14), ATR(14): Wilder smoothing, seeded with the simple average of the first 14 changes /
  true ranges (true range starts at the second bar); NULL for the first 14 bars.
- Bollinger Bands(20, 2): SMA(20) ± 2 population standard deviations.

Indicators TA-Lib does not define, with the convention chosen here:

- return_simple = close/prev_close - 1 (TA-Lib ROCP(1)); return_log = ln(close/prev_close).
- vwap: intraday bars, cumulative within the session (the `date` column where the bars have it,
  else the session of each bar in its exchange's zone); daily bars, over the last 20 bars;
  typical price (high+low+close)/3.
- volatility_20: population standard deviation of log returns over 20 bars (TA-Lib STDDEV),
  annualised by sqrt(252) for daily and sqrt(252·390) for minute bars.
- return_zscore: the bar's simple return against the mean and sample standard deviation of the 20
  bars before it; is_return_anomaly when |z| > 3.
- volume_ratio: volume over the mean volume of the 20 bars before; is_volume_spike when > 3.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from tickerlake.core.market import session_dates

ZSCORE_WINDOW = 20
ZSCORE_LIMIT = 3.0
VOLUME_SPIKE_RATIO = 3.0
PERIODS_PER_YEAR = {"1d": 252, "1m": 252 * 390}


def _sma(x: np.ndarray, n: int) -> np.ndarray:
    return pd.Series(x).rolling(n, min_periods=n).mean().to_numpy()


def _recursive(seed: float, rest: np.ndarray, alpha: float) -> np.ndarray:
    """y0 = seed; y_i = y_{i-1} + alpha·(x_i - y_{i-1}) (pandas' ewm, adjust=False, is that)."""
    series = pd.Series(np.concatenate([[seed], rest]))
    return series.ewm(alpha=alpha, adjust=False).mean().to_numpy()


def ema(x: np.ndarray, n: int, first: int | None = None) -> np.ndarray:
    """TA-Lib EMA; `first` is the index of the first output (default n-1), seeded with the SMA
    of the n values ending there."""
    first = n - 1 if first is None else first
    out = np.full(len(x), np.nan)
    if len(x) <= first:
        return out
    seed = x[first - n + 1:first + 1].mean()
    out[first:] = _recursive(seed, x[first + 1:], 2.0 / (n + 1))
    return out


def macd(x: np.ndarray, fast: int = 12, slow: int = 26, signal: int = 9):
    n = len(x)
    line = np.full(n, np.nan)
    sig = np.full(n, np.nan)
    start = slow - 1  # where both EMAs begin
    first = start + signal - 1  # the first bar with all three outputs
    if n <= first:
        return line, sig, line - sig
    raw = ema(x, fast, first=start) - ema(x, slow, first=start)
    sig = ema(raw[start:], signal)
    sig = np.concatenate([np.full(start, np.nan), sig])
    line = raw.copy()
    line[:first] = np.nan
    return line, sig, line - sig


def _wilder(values: np.ndarray, n: int, first: int) -> np.ndarray:
    """Wilder smoothing of `values` whose first defined element is at index 1: seeded with the
    mean of values[1..n] at index n (= `first`)."""
    out = np.full(len(values), np.nan)
    if len(values) <= first:
        return out
    seed = values[1:n + 1].mean()
    out[first:] = _recursive(seed, values[first + 1:], 1.0 / n)
    return out


def rsi(x: np.ndarray, n: int = 14) -> np.ndarray:
    change = np.diff(x, prepend=np.nan)
    gain = np.where(change > 0, change, 0.0)
    loss = np.where(change < 0, -change, 0.0)
    avg_gain, avg_loss = _wilder(gain, n, n), _wilder(loss, n, n)
    total = avg_gain + avg_loss
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(np.abs(total) < 1e-14, 0.0, 100.0 * avg_gain / total)
    out[np.isnan(total)] = np.nan
    return out


def true_range(high: np.ndarray, low: np.ndarray, close: np.ndarray) -> np.ndarray:
    prev = np.concatenate([[np.nan], close[:-1]])
    tr = np.maximum.reduce([high - low, np.abs(high - prev), np.abs(low - prev)])
    tr[0] = np.nan
    return tr


def atr(high: np.ndarray, low: np.ndarray, close: np.ndarray, n: int = 14) -> np.ndarray:
    return _wilder(true_range(high, low, close), n, n)


def bollinger(x: np.ndarray, n: int = 20, k: float = 2.0):
    rolling = pd.Series(x).rolling(n, min_periods=n)
    middle = rolling.mean().to_numpy()
    std = rolling.std(ddof=0).to_numpy()
    return middle + k * std, middle, middle - k * std


def compute(bars: pd.DataFrame, interval: str) -> pd.DataFrame:
    """Add every indicator column to one symbol's bars (any order in; sorted by time out)."""
    df = bars.sort_values("timestamp", kind="stable").reset_index(drop=True)
    close = df["close"].to_numpy(dtype="float64")
    high = df["high"].to_numpy(dtype="float64")
    low = df["low"].to_numpy(dtype="float64")
    volume = df["volume"].to_numpy(dtype="float64")
    prev = np.concatenate([[np.nan], close[:-1]])

    df["return_simple"] = close / prev - 1.0
    df["return_log"] = np.log(close / prev)
    df["sma_20"] = _sma(close, 20)
    df["sma_50"] = _sma(close, 50)
    df["ema_12"] = ema(close, 12)
    df["ema_26"] = ema(close, 26)
    df["macd"], df["macd_signal"], df["macd_hist"] = macd(close)
    df["rsi_14"] = rsi(close)
    df["bb_upper"], df["bb_middle"], df["bb_lower"] = bollinger(close)
    df["atr_14"] = atr(high, low, close)

    typical = (high + low + close) / 3.0
    if interval == "1m":
        if "date" in df:  # the transform's bars carry their session date
            session = df["date"]
        else:
            stamps = pd.to_datetime(df["timestamp"])
            if stamps.dt.tz is None:  # naive: UTC
                stamps = stamps.dt.tz_localize("UTC")
            session = session_dates(stamps, df["symbol"])  # in the symbol's exchange's time zone
        pv = pd.Series(typical * volume).groupby(session).cumsum()
        vol = pd.Series(volume).groupby(session).cumsum()
        df["vwap"] = (pv / vol).to_numpy()
    else:
        pv = pd.Series(typical * volume).rolling(20, min_periods=20).sum()
        df["vwap"] = (pv / pd.Series(volume).rolling(20, min_periods=20).sum()).to_numpy()
    log_returns = pd.Series(df["return_log"])
    df["volatility_20"] = (log_returns.rolling(20, min_periods=20).std(ddof=0)
                           * np.sqrt(PERIODS_PER_YEAR[interval])).to_numpy()

    returns = pd.Series(df["return_simple"])
    before = returns.shift(1).rolling(ZSCORE_WINDOW, min_periods=ZSCORE_WINDOW)
    std = before.std(ddof=1)
    df["return_zscore"] = ((returns - before.mean()) / std.where(std > 0)).to_numpy()
    mean_volume = pd.Series(volume).shift(1).rolling(ZSCORE_WINDOW, min_periods=ZSCORE_WINDOW).mean()
    df["volume_ratio"] = (pd.Series(volume) / mean_volume.where(mean_volume > 0)).to_numpy()
    df["is_return_anomaly"] = (df["return_zscore"].abs() > ZSCORE_LIMIT).fillna(False).astype(bool)
    df["is_volume_spike"] = (df["volume_ratio"] > VOLUME_SPIKE_RATIO).fillna(False).astype(bool)
    return df
