"""The warehouse lane: load the lake's Parquet into Snowflake or the Postgres warehouse behind one
interface (`Warehouse`); which one is decided here only (`choose_backend`). See docs/warehouse.md."""
from __future__ import annotations

import logging
from collections.abc import Callable

from tickerlake.core.errors import ConfigError
from tickerlake.core.settings import Settings, WarehouseBackend
from tickerlake.warehouse.base import Backend, Warehouse

log = logging.getLogger(__name__)


def choose_backend(settings: Settings, snowflake_connect: Callable[[], object] | None = None
                   ) -> tuple[Backend, str]:
    """The backend TICKERLAKE_WAREHOUSE_BACKEND asks for, and why (for the log line)."""
    wanted = settings.warehouse.backend
    snowflake_ready = snowflake_connect is not None or settings.snowflake.configured
    why_snowflake = ("the Airflow connection snowflake_default" if snowflake_connect is not None
                     else "TICKERLAKE_SNOWFLAKE_ACCOUNT")
    if wanted is WarehouseBackend.POSTGRES:
        return Backend.POSTGRES, "TICKERLAKE_WAREHOUSE_BACKEND=postgres"
    if wanted is WarehouseBackend.SNOWFLAKE:
        if not snowflake_ready:
            raise ConfigError("TICKERLAKE_WAREHOUSE_BACKEND=snowflake but neither the Airflow connection "
                              "snowflake_default nor TICKERLAKE_SNOWFLAKE_ACCOUNT is set")
        return Backend.SNOWFLAKE, f"TICKERLAKE_WAREHOUSE_BACKEND=snowflake, via {why_snowflake}"
    if snowflake_ready:
        return Backend.SNOWFLAKE, f"auto: {why_snowflake} is set"
    return Backend.POSTGRES, "auto: no Snowflake connection or account configured"


def open_warehouse(settings: Settings, snowflake_connect: Callable[[], object] | None = None) -> Warehouse:
    """The chosen backend's warehouse, connected; logs the choice and its reason once."""
    backend, why = choose_backend(settings, snowflake_connect)
    log.info("warehouse backend: %s (%s)", backend, why)
    if backend is Backend.SNOWFLAKE:
        from tickerlake.warehouse.snowflake import SnowflakeWarehouse

        return SnowflakeWarehouse(settings.snowflake, connect=snowflake_connect)
    from tickerlake.warehouse.postgres import PostgresWarehouse

    return PostgresWarehouse(settings.pg)


__all__ = ["Backend", "Warehouse", "choose_backend", "open_warehouse"]
