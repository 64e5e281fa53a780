"""The data-quality gate on processed bars, with great-expectations.

`run_gate` reads the bars of [start, end) from the processed Iceberg table at the snapshot the
interval's transform committed (it records its summary, with that snapshot id, at
`processed/transform/...`; without one, or once the maintenance expired it, the current snapshot),
so what is validated is what the transform wrote, not what a later writer left. It runs the
suite, stores the result with that snapshot id as JSON in the lake next to the data
(`processed/quality/...`) and returns it. `run_gate` raises
`QualityGateFailed` naming the failed expectations, so the Airflow task fails (no provider that
only logs). Freshness is measured against each symbol's exchange calendar (tickerlake/core/market.py:
London symbols against London's sessions): a weekend or holiday interval expects no rows and passes.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from datetime import date
from typing import Any

import pandas as pd

from tickerlake.core.datasets import BARS
from tickerlake.core.errors import TickerlakeError
from tickerlake.core.market import EXCHANGE, exchange_of, exchanges_of, sessions_in_range
from tickerlake.core.names import Bucket, quality_key, transform_result_key
from tickerlake.core.settings import Settings, get_settings

log = logging.getLogger(__name__)
SUITE_NAME = "processed_bars"


class QualityGateFailed(TickerlakeError):
    pass


@dataclass(frozen=True)
class GateResult:
    success: bool
    rows: int
    failed: tuple[str, ...]
    result_key: str
    details: dict[str, Any]


def expected_sessions(start: date, end: date, mic: str = EXCHANGE) -> list[date]:
    return sessions_in_range(start, end, mic)


def build_suite(sessions: list[date]):
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    import great_expectations.expectations as gxe

    suite = gx.ExpectationSuite(name=SUITE_NAME)
    add = suite.add_expectation
    add(gxe.ExpectTableColumnsToMatchSet(column_set=BARS.column_names, exact_match=True))
    required = [c.name for c in BARS.columns if not c.nullable]
    for column in [*required, "open", "high", "low", "close", "volume"]:
        add(gxe.ExpectColumnValuesToNotBeNull(column=column))
    add(gxe.ExpectCompoundColumnsToBeUnique(column_list=list(BARS.keys)))
    for a, b in (("high", "low"), ("high", "open"), ("high", "close"), ("open", "low"), ("close", "low")):
        add(gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A=a, column_B=b, or_equal=True,
                                                        ignore_row_if="either_value_is_missing"))
    for column in ("open", "high", "low", "close"):
        add(gxe.ExpectColumnValuesToBeBetween(column=column, min_value=0, strict_min=True))
    add(gxe.ExpectColumnValuesToBeBetween(column="volume", min_value=0))
    add(gxe.ExpectColumnValuesToBeBetween(column="rsi_14", min_value=0, max_value=100))
    add(gxe.ExpectColumnValuesToBeBetween(column="atr_14", min_value=0))
    # Freshness against the exchange calendar: every session of the interval is there, and
    # nothing is dated on a day the exchange was closed.
    days = [d.isoformat() for d in sessions]
    add(gxe.ExpectColumnValuesToBeInSet(column="date_text", value_set=days or ["<no session>"]))
    if days:
        add(gxe.ExpectColumnDistinctValuesToContainSet(column="date_text", value_set=days))
        add(gxe.ExpectTableRowCountToBeBetween(min_value=1))
    return suite


def validate_frame(frame: pd.DataFrame, start: date, end: date) -> dict[str, Any]:
    """Run the suite on a frame of processed bars, per exchange (each symbol against its own
    exchange's calendar); returns GX's results as one JSON-able dict."""
    frame = frame.copy()
    frame["date_text"] = pd.to_datetime(frame["date"]).dt.date.astype(str) if len(frame) else []
    # no rows at all: the default exchange's sessions say whether that is right (a rule with a
    # limit: an interval of London symbols only on a day only London was closed fails it)
    groups = exchanges_of(frame["symbol"].dropna().astype(str)) if len(frame) else {}
    results, exchanges = [], []
    default = exchange_of("")
    groups.setdefault(default, [])
    for exchange, symbols in sorted(groups.items()):
        part = frame[frame["symbol"].isin(symbols) | (frame["symbol"].isna() if exchange == default else False)]
        if exchange == default and not symbols and len(groups) > 1 and part.empty:
            continue  # only other exchanges' symbols: nothing to check against the NYSE
        payload = _validate(part, expected_sessions(start, end, exchange.mic))
        for item in payload["results"]:
            item["exchange"] = exchange.mic
        results += payload["results"]
        exchanges.append({"exchange": exchange.mic, "symbols": symbols, "success": payload["success"]})
    return {"success": all(e["success"] for e in exchanges), "exchanges": exchanges, "results": results}


def _validate(frame: pd.DataFrame, sessions: list[date]) -> dict[str, Any]:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx

    context = gx.get_context(mode="ephemeral")  # must exist before a suite is built
    suite = build_suite(sessions)
    asset = context.data_sources.add_pandas("processed").add_dataframe_asset("bars")
    batch = asset.add_batch_definition_whole_dataframe("interval").get_batch(
        batch_parameters={"dataframe": frame})
    result = batch.validate(suite)
    payload = result.to_json_dict()
    # date_text is a helper column for the calendar checks, not part of the data's schema
    for item in payload["results"]:
        config = item["expectation_config"]
        if config["type"] == "expect_table_columns_to_match_set":
            observed = [c for c in item["result"].get("observed_value", []) if c != "date_text"]
            item["result"]["observed_value"] = observed
            item["success"] = set(observed) == set(config["kwargs"]["column_set"])
    payload["success"] = all(item["success"] for item in payload["results"])
    return payload


def failed_expectations(payload: dict[str, Any]) -> tuple[str, ...]:
    failed = []
    for item in payload["results"]:
        if not item["success"]:
            kwargs = item["expectation_config"]["kwargs"]
            target = kwargs.get("column") or kwargs.get("column_list") or \
                (f"{kwargs['column_A']}>={kwargs['column_B']}" if "column_A" in kwargs else "table")
            where = f"@{item['exchange']}" if len({i.get("exchange") for i in payload["results"]}) > 1 else ""
            failed.append(f"{item['expectation_config']['type']}({target}){where}")
    return tuple(failed)


def transform_snapshot(settings: Settings, interval: str, start: date, end: date) -> int | None:
    """The bars snapshot the interval's last transform committed (spark_jobs/transform_bars.py
    records it), None when no transform recorded one (a lake from before, or a manual run)."""
    from tickerlake.core.clients import s3_client

    s3 = s3_client(settings.s3)
    key = transform_result_key(interval, start.isoformat(), end.isoformat())
    try:
        body = s3.get_object(Bucket=Bucket.PROCESSED.value, Key=key)["Body"].read()
    except s3.exceptions.NoSuchKey:
        return None
    snapshot = json.loads(body).get("bars_snapshot")
    return int(snapshot) if snapshot is not None else None


def read_processed(settings: Settings, interval: str, start: date, end: date,
                   snapshot_id: int | None = None) -> tuple[pd.DataFrame, int | None]:
    """The bars of [start, end) in `processed.bars_<interval>` at `snapshot_id` (if the table
    still has it: the maintenance may have expired it), else its current snapshot; and the id read."""
    from pyiceberg.exceptions import NoSuchTableError

    from tickerlake.core.iceberg import iceberg_catalog
    from tickerlake.core.names import Table

    try:
        table = iceberg_catalog(settings).load_table(str(Table.bars(interval)))
    except NoSuchTableError:
        return pd.DataFrame(columns=BARS.column_names), None
    snapshot = table.snapshot_by_id(snapshot_id) if snapshot_id is not None else None
    if snapshot is None and snapshot_id is not None:
        log.warning("snapshot %s of %s is gone (expired): validating the current snapshot", snapshot_id,
                    Table.bars(interval))
    snapshot = snapshot or table.current_snapshot()
    if snapshot is None:
        return pd.DataFrame(columns=BARS.column_names), None
    # the partition filter prunes files by the manifests' bounds: only the interval's are read
    scan = table.scan(row_filter=f"date >= '{start.isoformat()}' AND date < '{end.isoformat()}'",
                      snapshot_id=snapshot.snapshot_id)
    frame = scan.to_arrow().to_pandas()
    return frame[BARS.column_names], snapshot.snapshot_id


def run_gate(interval: str, start: date, end: date, settings: Settings | None = None) -> GateResult:
    from tickerlake.core.clients import s3_client

    settings = settings or get_settings()
    # the snapshot the transform committed: not a later writer's table, whatever ran in between
    frame, snapshot_id = read_processed(settings, interval, start, end,
                                        transform_snapshot(settings, interval, start, end))
    payload = validate_frame(frame, start, end)
    payload["snapshot_id"] = snapshot_id  # what was validated: the table's state at that snapshot
    key = quality_key(interval, start.isoformat(), end.isoformat())
    s3_client(settings.s3).put_object(Bucket=Bucket.PROCESSED.value, Key=key,
                                      Body=json.dumps(payload, indent=2, default=str).encode(),
                                      ContentType="application/json")
    failed = failed_expectations(payload)
    result = GateResult(payload["success"], len(frame), failed, key, payload)
    if not result.success:
        raise QualityGateFailed(
            f"quality gate failed for {interval} bars {start}..{end}: {', '.join(failed)} "
            f"(result: s3://{Bucket.PROCESSED.value}/{key})")
    return result
