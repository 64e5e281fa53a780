-- The warehouse's tables. One logical model, also in sql/snowflake/010_tables.sql; the columns
-- each load writes are listed in tickerlake/warehouse/datasets.py (a test checks they agree).
-- `date` is the exchange-calendar session date of the lake partition a row came from.
--
-- The two bar tables are partitioned by month of `date` (children warehouse.bars_daily_y2026m01,
-- ...): a load creates a month it has not seen without indexes, COPYs the month's rows, builds
-- the indexes once and attaches it (025_month_partitions.sql), instead of maintaining the indexes
-- row by row. A partitioned table's unique keys must include `date`; `date` follows from `ts`,
-- so the key means what it did.

-- Warehouses created before the bar tables were partitioned: their plain table is dropped with
-- the views over it (030 recreates the views) and its loads are forgotten, so the next load
-- reloads it from the lake, the system of record. Idempotent: a partitioned table is left alone.
DO $$
DECLARE
    name text;
BEGIN
    FOREACH name IN ARRAY ARRAY['bars_daily', 'bars_intraday'] LOOP
        IF EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                   WHERE n.nspname = 'warehouse' AND c.relname = name AND c.relkind = 'r') THEN
            EXECUTE format('DROP TABLE warehouse.%I CASCADE', name);
            IF to_regclass('warehouse.load_ledger') IS NOT NULL THEN
                IF to_regclass('warehouse.load_state') IS NOT NULL THEN
                    DELETE FROM warehouse.load_state WHERE dataset IN
                        (SELECT dataset FROM warehouse.load_ledger WHERE target = name);
                END IF;
                DELETE FROM warehouse.load_ledger WHERE target = name;
            END IF;
            RAISE NOTICE 'warehouse.% is now partitioned by month: the next load reloads it', name;
        END IF;
    END LOOP;
END
$$;

-- Daily bars with their indicators and anomaly flags (lake: the Iceberg table processed.bars_1d).
CREATE TABLE IF NOT EXISTS warehouse.bars_daily (
    symbol             text COLLATE "C" NOT NULL,  -- byte order: a month's key index sorts ~x faster
    ts                 timestamptz      NOT NULL,  -- bar open time
    date               date             NOT NULL,
    open               double precision,
    high               double precision,
    low                double precision,
    close              double precision,
    adj_close          double precision,
    volume             bigint,
    dividends          double precision,
    stock_splits       double precision,
    source             text,
    return_simple      double precision,
    return_log         double precision,
    sma_20             double precision,
    sma_50             double precision,
    ema_12             double precision,
    ema_26             double precision,
    macd               double precision,
    macd_signal        double precision,
    macd_hist          double precision,
    rsi_14             double precision,
    bb_upper           double precision,
    bb_middle          double precision,
    bb_lower           double precision,
    atr_14             double precision,
    vwap               double precision,
    volatility_20      double precision,
    return_zscore      double precision,
    volume_ratio       double precision,
    is_return_anomaly  boolean,
    is_volume_spike    boolean,
    PRIMARY KEY (symbol, ts, date)
) PARTITION BY RANGE (date);
CREATE INDEX IF NOT EXISTS bars_daily_date ON warehouse.bars_daily (date);

-- Intraday bars: 1-minute history from the batch lane (origin 'history', lake:
-- the Iceberg table processed.bars_1m) and live 1-/5-minute bars from the stream (origin 'stream',
-- lake: realtime/bars/interval=*/).
CREATE TABLE IF NOT EXISTS warehouse.bars_intraday (
    symbol        text COLLATE "C" NOT NULL,
    bar_interval  text COLLATE "C" NOT NULL CHECK (bar_interval IN ('1m', '5m')),
    origin        text COLLATE "C" NOT NULL CHECK (origin IN ('history', 'stream')),
    ts            timestamptz      NOT NULL,  -- bar open time
    date          date             NOT NULL,
    open          double precision,
    high          double precision,
    low           double precision,
    close         double precision,
    volume        bigint,
    vwap          double precision,
    trades        bigint,           -- stream bars only
    PRIMARY KEY (symbol, bar_interval, origin, ts, date)
) PARTITION BY RANGE (date);
CREATE INDEX IF NOT EXISTS bars_intraday_date ON warehouse.bars_intraday (date);

-- One row per anomaly (kind: return_zscore | volume_spike) (lake: the Iceberg table processed.anomalies).
CREATE TABLE IF NOT EXISTS warehouse.anomalies (
    symbol         text             NOT NULL,
    bar_interval   text             NOT NULL,
    kind           text             NOT NULL,
    ts             timestamptz      NOT NULL,
    date           date             NOT NULL,
    close          double precision,
    return_simple  double precision,
    return_zscore  double precision,
    volume         bigint,
    volume_ratio   double precision,
    PRIMARY KEY (symbol, bar_interval, kind, ts)
);
CREATE INDEX IF NOT EXISTS anomalies_date ON warehouse.anomalies (date);

-- Live quote/trade events as the stream wrote them (lake: realtime/ticks/date=/hour=/).
CREATE TABLE IF NOT EXISTS warehouse.ticks (
    event_id         text             PRIMARY KEY,
    event_time       timestamptz      NOT NULL,
    symbol           text             NOT NULL,
    price            double precision NOT NULL,
    size             bigint,
    bid              double precision,
    ask              double precision,
    source           text,
    kafka_partition  integer,
    kafka_offset     bigint,
    date             date             NOT NULL,  -- UTC date and hour of event_time
    hour             integer          NOT NULL
);
CREATE INDEX IF NOT EXISTS ticks_symbol_time ON warehouse.ticks (symbol, event_time DESC);
CREATE INDEX IF NOT EXISTS ticks_partition ON warehouse.ticks (date, hour);

-- The load ledger: every lake object loaded, so a rerun loads nothing twice (whatever the
-- warehouse's own load history says) and a changed object (new ETag) is reloaded.
CREATE TABLE IF NOT EXISTS warehouse.load_ledger (
    dataset     text        NOT NULL,  -- tickerlake.warehouse.datasets.Dataset name
    lake_partition text     NOT NULL,  -- the lake partition, e.g. date=2026-01-02
    bucket      text        NOT NULL,
    object_key  text        NOT NULL,
    etag        text        NOT NULL,
    row_count   bigint      NOT NULL,
    target      text        NOT NULL,  -- the warehouse table
    loaded_at   timestamptz NOT NULL DEFAULT now(),
    key_sum_hi  bigint,               -- the object's key checksum as loaded (tickerlake.warehouse.checksums)
    key_sum_lo  bigint,
    checked_at  timestamptz,          -- when the consistency check last verified it (NULL: not yet)
    PRIMARY KEY (dataset, bucket, object_key)
);
-- Ledgers created before the checksum columns existed get them here (idempotent).
ALTER TABLE warehouse.load_ledger ADD COLUMN IF NOT EXISTS key_sum_hi bigint;
ALTER TABLE warehouse.load_ledger ADD COLUMN IF NOT EXISTS key_sum_lo bigint;
ALTER TABLE warehouse.load_ledger ADD COLUMN IF NOT EXISTS checked_at timestamptz;
CREATE INDEX IF NOT EXISTS load_ledger_unchecked ON warehouse.load_ledger (dataset) WHERE checked_at IS NULL;

-- The Iceberg snapshot each dataset was last loaded to in full: a load that finds its table
-- still there has nothing to do.
CREATE TABLE IF NOT EXISTS warehouse.load_state (
    dataset     text        NOT NULL,
    snapshot_id bigint      NOT NULL,
    loaded_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (dataset)
);
