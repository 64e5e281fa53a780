-- Month partitions of the bar tables, made by the loader without DDL rights of its own.
--
-- A load that brings a month the warehouse has no child for (tickerlake.warehouse.postgres):
--   1. warehouse.begin_month(parent, day) creates the month's child, with no index, in the
--      load's transaction, and returns its name (NULL if the month exists: load into the parent);
--   2. the load COPYs the month's rows into the child. With wal_level = minimal (the local stack
--      and docker-compose set it) a table created in the same transaction is not WAL-logged row
--      by row but synced once at commit;
--   3. warehouse.attach_month(parent, day) builds the parent's indexes on the child, each in one
--      sorted pass, and attaches it (the CHECK constraint spares ATTACH its validation scan).
-- Measured: COPY into an indexed table reaches about 170-190k rows/s on two cores, into an
-- index-less heap 470k (docs/warehouse.md).
--
-- Both run as the owner (SECURITY DEFINER): the child is the owner's, and gets the default
-- privileges of 002_schemas.sql, so the loader can fill it but never drop or alter it.

CREATE OR REPLACE FUNCTION warehouse.month_child(parent text, day date) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT parent || '_y' || to_char(day, 'YYYY') || 'm' || to_char(day, 'MM')
$$;

CREATE OR REPLACE FUNCTION warehouse.begin_month(parent text, day date) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    child text := warehouse.month_child(parent, day);
    first date := date_trunc('month', day)::date;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_partitioned_table p JOIN pg_class c ON c.oid = p.partrelid
                   JOIN pg_namespace n ON n.oid = c.relnamespace
                   WHERE n.nspname = 'warehouse' AND c.relname = parent) THEN
        RAISE EXCEPTION 'warehouse.% is not a table partitioned by month', parent;
    END IF;
    -- two loads bringing the same month: the second waits here, then finds the month made
    PERFORM pg_advisory_xact_lock(hashtext('warehouse.' || child));
    IF to_regclass(format('warehouse.%I', child)) IS NOT NULL THEN
        RETURN NULL;
    END IF;
    EXECUTE format('CREATE TABLE warehouse.%I (LIKE warehouse.%I INCLUDING DEFAULTS INCLUDING CONSTRAINTS, '
                   'CONSTRAINT %I CHECK (date >= %L AND date < %L))',
                   child, parent, child || '_month', first, (first + interval '1 month')::date);
    RETURN child;
END
$$;

CREATE OR REPLACE FUNCTION warehouse.attach_month(parent text, day date) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    child text := warehouse.month_child(parent, day);
    first date := date_trunc('month', day)::date;
    parent_oid oid := to_regclass(format('warehouse.%I', parent));
    child_oid oid := to_regclass(format('warehouse.%I', child));
    item record;
BEGIN
    IF child_oid IS NULL OR parent_oid IS NULL
       OR EXISTS (SELECT 1 FROM pg_inherits WHERE inhrelid = child_oid)
       OR NOT EXISTS (SELECT 1 FROM pg_partitioned_table WHERE partrelid = parent_oid) THEN
        RAISE EXCEPTION 'warehouse.% is not a detached month of warehouse.%', child, parent;
    END IF;
    -- The parent's keys and indexes, built on the child before ATTACH, which then adopts them
    -- (built inside ATTACH they would hold the parent's lock for the whole build).
    FOR item IN SELECT con.oid FROM pg_constraint con
                WHERE con.conrelid = parent_oid AND con.contype IN ('p', 'u') LOOP
        EXECUTE format('ALTER TABLE warehouse.%I ADD %s', child, pg_get_constraintdef(item.oid));
    END LOOP;
    FOR item IN SELECT i.indexrelid FROM pg_index i
                WHERE i.indrelid = parent_oid
                  AND NOT EXISTS (SELECT 1 FROM pg_constraint con WHERE con.conindid = i.indexrelid) LOOP
        EXECUTE regexp_replace(pg_get_indexdef(item.indexrelid), ' INDEX \S+ ON ONLY \S+ ',
                               format(' INDEX ON warehouse.%I ', child));
    END LOOP;
    EXECUTE format('ALTER TABLE warehouse.%I ATTACH PARTITION warehouse.%I FOR VALUES FROM (%L) TO (%L)',
                   parent, child, first, (first + interval '1 month')::date);
END
$$;

DO $$
DECLARE
    loader text := current_setting('tickerlake.loader_user');
BEGIN
    REVOKE ALL ON FUNCTION warehouse.begin_month(text, date), warehouse.attach_month(text, date) FROM PUBLIC;
    EXECUTE format('GRANT EXECUTE ON FUNCTION warehouse.begin_month(text, date), '
                   'warehouse.attach_month(text, date) TO %I', loader);
END
$$;
