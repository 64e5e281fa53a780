-- Roles of the Postgres warehouse. Idempotent: safe to run on every init.
-- Names and the password arrive as session settings (set by minio_init/warehouse.py), so this file
-- holds no secret.

-- The analyst: reads the warehouse's tables and views, writes nothing.
DO $$
DECLARE
    analyst  text := current_setting('tickerlake.analyst_user');
    password text := current_setting('tickerlake.analyst_password');
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = analyst) THEN
        EXECUTE format('CREATE ROLE %I LOGIN PASSWORD %L', analyst, password);
    ELSE
        -- Keep the role in step with the configured password (rotation = change .env, re-init).
        EXECUTE format('ALTER ROLE %I LOGIN PASSWORD %L', analyst, password);
    END IF;
    EXECUTE format('ALTER ROLE %I SET default_transaction_read_only = on', analyst);
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO %I', current_database(), analyst);
END
$$;
