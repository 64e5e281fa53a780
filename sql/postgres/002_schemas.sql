-- Schemas of the Postgres warehouse.
--   warehouse: the tables and views analysts query (read-only for the analyst role, written by
--              the loader role)
--   public:    the Iceberg JDBC catalog's own tables (iceberg_tables, iceberg_namespace_properties),
--              shared by Spark and pyiceberg; not for analysts.
CREATE SCHEMA IF NOT EXISTS warehouse;

REVOKE CREATE ON SCHEMA public FROM PUBLIC;

DO $$
DECLARE
    analyst text := current_setting('tickerlake.analyst_user');
    loader  text := current_setting('tickerlake.loader_user');
    owner   text := current_setting('tickerlake.owner');
BEGIN
    EXECUTE format('GRANT USAGE ON SCHEMA warehouse TO %I, %I', analyst, loader);
    -- Tables and views created later by the owner get the same grants without another statement.
    EXECUTE format('ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA warehouse GRANT SELECT ON TABLES TO %I',
                   owner, analyst);
    EXECUTE format('ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA warehouse '
                   'GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO %I', owner, loader);
END
$$;
