-- The symbol dimension: one row per instrument the lake has seen.
CREATE TABLE IF NOT EXISTS warehouse.dim_symbol (
    symbol      text PRIMARY KEY,
    name        text,
    exchange    text,
    currency    text NOT NULL DEFAULT 'USD',
    first_seen  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE warehouse.dim_symbol IS 'One row per instrument the lake has seen (symbol dimension).';
