-- Analyst views (the same four in sql/snowflake/020_views.sql).

-- The latest quote per symbol, from the live ticks.
CREATE OR REPLACE VIEW warehouse.v_latest_quote AS
SELECT DISTINCT ON (symbol)
       symbol, event_time, price, bid, ask, size, source
FROM warehouse.ticks
ORDER BY symbol, event_time DESC, event_id DESC;

-- Each session's ten largest moves (by absolute simple return), ranked.
CREATE OR REPLACE VIEW warehouse.v_daily_top_movers AS
SELECT date, mover_rank, symbol, close, return_simple, volume
FROM (
    SELECT date, symbol, close, return_simple, volume,
           rank() OVER (PARTITION BY date ORDER BY abs(return_simple) DESC, symbol) AS mover_rank
    FROM warehouse.bars_daily
    WHERE return_simple IS NOT NULL
) ranked
WHERE mover_rank <= 10;

-- Anomalies with their age in days: the last N days are `WHERE days_ago <= N`.
CREATE OR REPLACE VIEW warehouse.v_recent_anomalies AS
SELECT (current_date - date) AS days_ago, date, ts, symbol, bar_interval, kind,
       close, return_simple, return_zscore, volume, volume_ratio
FROM warehouse.anomalies;

-- Each symbol's latest daily bar with its indicators.
CREATE OR REPLACE VIEW warehouse.v_indicator_snapshot AS
SELECT DISTINCT ON (symbol)
       symbol, date, close, return_simple, sma_20, sma_50, ema_12, ema_26, macd, macd_signal,
       macd_hist, rsi_14, bb_upper, bb_middle, bb_lower, atr_14, vwap, volatility_20,
       is_return_anomaly, is_volume_spike
FROM warehouse.bars_daily
ORDER BY symbol, ts DESC;
