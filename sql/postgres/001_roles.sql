-- Roles of the Postgres warehouse. Idempotent: safe to run on every init.
-- Names and passwords arrive as session settings (set by minio_init/warehouse.py), so this file
-- holds no secret. The owner (TICKERLAKE_PG_USER) owns every object; two login roles use them:
--   analyst: reads the warehouse's tables and views, writes nothing.
--   loader:  writes the warehouse's tables (the load DAG), owns nothing, cannot change the schema.
DO $$
DECLARE
    role_name text;
    password  text;
BEGIN
    FOREACH role_name IN ARRAY ARRAY['analyst', 'loader'] LOOP
        password  := current_setting(format('tickerlake.%s_password', role_name));
        role_name := current_setting(format('tickerlake.%s_user', role_name));
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = role_name) THEN
            EXECUTE format('CREATE ROLE %I LOGIN PASSWORD %L', role_name, password);
        ELSE
            -- Keep the role in step with the configured password (rotation = change .env, re-init).
            EXECUTE format('ALTER ROLE %I LOGIN PASSWORD %L', role_name, password);
        END IF;
        EXECUTE format('GRANT CONNECT ON DATABASE %I TO %I', current_database(), role_name);
    END LOOP;
    -- Belt and braces: even a table granted by mistake cannot be written by the analyst.
    EXECUTE format('ALTER ROLE %I SET default_transaction_read_only = on',
                   current_setting('tickerlake.analyst_user'));
END
$$;
