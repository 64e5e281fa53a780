"""Snapshot the realtime Iceberg bar tables as Parquet objects for the warehouse load.

The stream keeps `realtime.bars_1m` / `bars_5m` current with MERGE, so their data files come and
go; the load needs stable objects. This writes one object per (interval, date),
`realtime/bars/interval=1m/date=D/bars.parquet`, sorted, and only when its content changed (the
SHA-256 of the content is kept in the object's metadata), so an unchanged day keeps its ETag and
the load skips it.
"""
from __future__ import annotations

import hashlib
import io

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tickerlake.core.names import REALTIME_BARS_PREFIX, Bucket, Table
from tickerlake.core.settings import Settings

LIVE_BAR_TABLES = {"1m": Table.LIVE_BARS_1M, "5m": Table.LIVE_BARS_5M}
COLUMNS = ["symbol", "window_start", "open", "high", "low", "close", "volume", "vwap", "trades"]


def live_bars_key(interval: str, day: str) -> str:
    return f"{REALTIME_BARS_PREFIX}/interval={interval}/date={day}/bars.parquet"


def _parquet_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()


def export_live_bars(settings: Settings, s3) -> dict[str, int]:
    """Write changed (interval, date) snapshots; returns key -> rows for the objects written."""
    from pyiceberg.exceptions import NoSuchTableError

    from tickerlake.core.iceberg import iceberg_catalog

    catalog, written = iceberg_catalog(settings), {}
    for interval, table_name in LIVE_BAR_TABLES.items():
        try:
            table = catalog.load_table(str(table_name)).scan().to_arrow()
        except NoSuchTableError:  # the stream has not run yet: nothing to snapshot
            continue
        for day in sorted(set(table.column("date").to_pylist())):
            rows = table.filter(pc.equal(table.column("date"), day)).select(COLUMNS)
            rows = rows.sort_by([("symbol", "ascending"), ("window_start", "ascending")])
            body = _parquet_bytes(rows)
            digest = hashlib.sha256(body).hexdigest()
            key = live_bars_key(interval, day.isoformat())
            try:
                head = s3.head_object(Bucket=Bucket.REALTIME.value, Key=key)
                if head.get("Metadata", {}).get("sha256") == digest:
                    continue
            except s3.exceptions.ClientError:
                pass  # not there yet
            s3.put_object(Bucket=Bucket.REALTIME.value, Key=key, Body=body, Metadata={"sha256": digest})
            written[key] = rows.num_rows
    return written
