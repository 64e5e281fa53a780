"""The warehouse lane: load the lake's Parquet into Snowflake or, when no Snowflake is configured,
into the Postgres warehouse, behind one interface (`Warehouse`); see docs/warehouse.md."""
from __future__ import annotations

from typing import Callable

from tickerlake.settings import Settings
from tickerlake.warehouse.base import Backend, Warehouse


def open_warehouse(settings: Settings, snowflake_connect: Callable[[], object] | None = None) -> Warehouse:
    """Snowflake when a connection is given or its account is configured, else Postgres."""
    if snowflake_connect is not None or settings.snowflake.configured:
        from tickerlake.warehouse.snowflake import SnowflakeWarehouse

        return SnowflakeWarehouse(settings.snowflake, connect=snowflake_connect)
    from tickerlake.warehouse.postgres import PostgresWarehouse

    return PostgresWarehouse(settings.pg)


__all__ = ["Backend", "Warehouse", "open_warehouse"]
