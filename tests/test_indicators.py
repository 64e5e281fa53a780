"""Every indicator equals TA-Lib's on generated data: <= 1e-9 after warm-up, NULL exactly where
TA-Lib gives NaN. TA-Lib (the `ta-lib` package) is the reference; the pipeline never calls it."""
from __future__ import annotations

from datetime import date

import numpy as np
import pytest
import talib

from ingestion.sources.synthetic import Anomaly, SyntheticMarket
from spark_jobs import indicators

TOLERANCE = 1e-9


def talib_reference(bars, interval: str) -> dict[str, np.ndarray]:
    c, h, low = (bars[k].to_numpy(dtype=float) for k in ("close", "high", "low"))
    macd, signal, hist = talib.MACD(c, 12, 26, 9)
    upper, middle, lower = talib.BBANDS(c, 20, 2.0, 2.0, 0)
    log_returns = np.concatenate([[np.nan], np.log(c[1:] / c[:-1])])
    volatility = np.concatenate([[np.nan], talib.STDDEV(log_returns[1:], 20, 1.0)])
    return {
        "return_simple": talib.ROCP(c, 1),
        "sma_20": talib.SMA(c, 20), "sma_50": talib.SMA(c, 50),
        "ema_12": talib.EMA(c, 12), "ema_26": talib.EMA(c, 26),
        "macd": macd, "macd_signal": signal, "macd_hist": hist,
        "rsi_14": talib.RSI(c, 14),
        "bb_upper": upper, "bb_middle": middle, "bb_lower": lower,
        "atr_14": talib.ATR(h, low, c, 14),
        "volatility_20": volatility * np.sqrt(indicators.PERIODS_PER_YEAR[interval]),
    }


def assert_matches_talib(computed, reference: dict[str, np.ndarray]) -> None:
    for column, expected in reference.items():
        actual = computed[column].to_numpy(dtype=float)
        assert np.array_equal(np.isnan(actual), np.isnan(expected)), \
            f"{column}: NULL at rows {np.flatnonzero(np.isnan(actual) != np.isnan(expected))[:5]}"
        assert np.nanmax(np.abs(actual - expected)) <= TOLERANCE, column


@pytest.mark.parametrize("seed", [1, 7, 2024])
def test_daily_indicators_equal_talib(seed):
    bars = SyntheticMarket(seed=seed).bars(["AAA"], date(2023, 1, 1), date(2025, 1, 1), "1d")
    assert len(bars) == 502  # two NYSE years
    assert_matches_talib(indicators.compute(bars, "1d"), talib_reference(bars, "1d"))


def test_minute_indicators_equal_talib():
    bars = SyntheticMarket(seed=3).bars(["BBB"], date(2025, 11, 26), date(2025, 12, 2), "1m")
    assert len(bars) == 390 + 210 + 390  # Thanksgiving's Friday is a half day
    assert_matches_talib(indicators.compute(bars, "1m"), talib_reference(bars, "1m"))


def test_warm_up_rows_are_null_exactly_as_in_talib():
    bars = SyntheticMarket(seed=5).bars(["CCC"], date(2024, 1, 1), date(2024, 6, 1), "1d")
    out = indicators.compute(bars, "1d")
    first_valid = {c: int(np.argmax(out[c].notna().to_numpy())) for c in
                   ("sma_20", "sma_50", "ema_12", "ema_26", "macd", "macd_signal", "rsi_14", "atr_14",
                    "bb_upper", "volatility_20")}
    assert first_valid == {"sma_20": 19, "sma_50": 49, "ema_12": 11, "ema_26": 25, "macd": 33,
                           "macd_signal": 33, "rsi_14": 14, "atr_14": 14, "bb_upper": 19,
                           "volatility_20": 20}


def test_a_600_bar_lookback_continues_the_full_history_exactly():
    """The transform computes an interval from the 600 bars before it: same values as the full
    history (the EMA/RSI/ATR seeds' weight has decayed below 1e-15)."""
    bars = SyntheticMarket(seed=11).bars(["DDD"], date(2020, 1, 1), date(2025, 1, 1), "1d")
    full = indicators.compute(bars, "1d")
    tail = indicators.compute(bars.iloc[-650:].reset_index(drop=True), "1d").iloc[-50:]
    for column in ("ema_12", "ema_26", "macd", "macd_signal", "rsi_14", "atr_14"):
        assert np.allclose(tail[column].to_numpy(), full[column].iloc[-50:].to_numpy(), rtol=0, atol=TOLERANCE)


def test_injected_anomaly_is_flagged_and_quiet_days_are_not():
    day = date(2024, 6, 3)
    market = SyntheticMarket(seed=9, anomalies=[Anomaly("EEE", day, jump=0.15, volume_factor=10)])
    out = indicators.compute(market.bars(["EEE"], date(2024, 1, 1), date(2024, 9, 1), "1d"), "1d")
    flagged = out.loc[out["is_return_anomaly"], "timestamp"].dt.date.tolist()
    spikes = out.loc[out["is_volume_spike"], "timestamp"].dt.date.tolist()
    assert day in flagged and day in spikes
    assert len(flagged) <= 2 and len(spikes) <= 2  # GBM noise rarely crosses 3 sigma


def test_intraday_vwap_restarts_each_session():
    bars = SyntheticMarket(seed=2).bars(["FFF"], date(2025, 1, 6), date(2025, 1, 8), "1m")
    out = indicators.compute(bars, "1m")
    first = out.groupby(out["timestamp"].dt.date).head(1)
    typical = (first["high"] + first["low"] + first["close"]) / 3
    assert np.allclose(first["vwap"], typical)


def test_naive_utc_timestamps_as_spark_hands_them_over_give_the_same_result():
    bars = SyntheticMarket(seed=2).bars(["GGG"], date(2025, 1, 6), date(2025, 1, 8), "1m")
    naive = bars.assign(timestamp=bars["timestamp"].dt.tz_localize(None))
    a, b = indicators.compute(bars, "1m"), indicators.compute(naive, "1m")
    assert np.allclose(a["vwap"], b["vwap"])


def test_of_duplicate_bars_the_latest_raw_object_wins_and_lookback_rows_are_kept():
    import pandas as pd

    from spark_jobs.transform_bars import NUMBERS, newest_per_bar

    bars = SyntheticMarket(seed=5).bars(["DUP"], date(2026, 3, 2), date(2026, 3, 5), "1d").reset_index(drop=True)
    bars["source_file"] = "s3a://raw/ohlcv/1d/month=2026-03.csv"
    bars.loc[0, "source_file"] = None  # a lookback row, from the table: no object
    later = bars.iloc[[2]].assign(close=bars.loc[2, "close"] + 1.0, source_file="s3a://raw/ohlcv/1d/month=2026-03~b.csv")
    lower = bars.iloc[[1]].assign(close=bars.loc[1, "close"] - 1.0)  # same object: the lower values win
    mixed = pd.concat([later, bars, lower]).sample(frac=1.0, random_state=3)

    out = newest_per_bar(mixed)

    assert list(out["timestamp"]) == sorted(bars["timestamp"])
    assert "source_file" not in out.columns and set(NUMBERS) <= set(out.columns)
    assert out.loc[0, "close"] == bars.loc[0, "close"]
    assert out.loc[1, "close"] == bars.loc[1, "close"] - 1.0
    assert out.loc[2, "close"] == bars.loc[2, "close"] + 1.0
