-- Grants on everything that exists now (the default privileges in 002 cover what comes later,
-- but not objects created before this version of the roles). Runs last; idempotent.
DO $$
DECLARE
    analyst text := current_setting('tickerlake.analyst_user');
    loader  text := current_setting('tickerlake.loader_user');
BEGIN
    EXECUTE format('GRANT SELECT ON ALL TABLES IN SCHEMA warehouse TO %I', analyst);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA warehouse TO %I', loader);
    -- The loader maintains the data, not the definitions: views are read-only to it.
    EXECUTE format('REVOKE INSERT, UPDATE, DELETE ON warehouse.v_latest_quote, warehouse.v_daily_top_movers, '
                   'warehouse.v_recent_anomalies, warehouse.v_indicator_snapshot FROM %I', loader);
END
$$;
