"""Fuzz of the batch transform: malformed CSV rows (wrong field counts, separators, encodings,
non-numbers, NaN/inf, huge fields, times off their session) in raw objects beside good bars."""
from __future__ import annotations

import argparse
from datetime import date

import pytest

from ingestion.backfill import to_csv_bytes
from ingestion.sources.synthetic import SyntheticMarket
from spark_jobs import transform_bars
from tests.fuzz_inputs import CSV_MALFORMED, malformed_csv_rows
from tickerlake.core.names import Bucket, Table, quarantine_prefix, raw_ohlcv_key

# The fuzz writes one object per session (each holds one kind of malformed row): the per-day layout
# of daily bars that lakes from before 2026-12-07 hold, which the transform still reads.
from tickerlake.core.names import legacy_raw_ohlcv_key as day_key

pytestmark = pytest.mark.spark

SOURCE = "fuzz"  # a source of its own: the transform reads and files only these objects
SYMBOL = "FZZ"
RANGE = (date(2018, 3, 1), date(2018, 5, 1))  # sessions no other test writes
PER_KIND = 100


def test_every_malformed_csv_row_is_quarantined_with_a_reason_and_good_bars_are_kept(stack, settings, spark, s3):
    good = SyntheticMarket(seed=29).bars([SYMBOL], *RANGE, "1d").assign(source=SOURCE)
    kinds = list(CSV_MALFORMED)
    assert len(good) > len(kinds) + 1
    header, *lines = to_csv_bytes(good).decode().splitlines()
    expected: dict[str, int] = {}  # object key -> malformed rows in it
    kept_days, utf16 = [], ""
    days = list(good["timestamp"].dt.tz_convert("America/New_York").dt.date)
    for n, (line, day) in enumerate(zip(lines, days)):
        key = day_key("1d", SOURCE, SYMBOL, day.isoformat())
        if n < len(kinds):  # this session's object: its good bar and 100 malformed rows of one kind
            bad = malformed_csv_rows(line.split(","), PER_KIND, seed=n)[kinds[n]]
            body = b"\n".join([header.encode(), line.encode(), *bad]) + b"\n"
            expected[key] = len(bad)
            kept_days.append(day)
        elif n == len(kinds):  # a whole object in UTF-16: nothing in it is readable as UTF-8 text
            body = f"{header}\n{line}\n".encode("utf-16")
            expected[key] = 1  # its one bar line, unreadable
            utf16 = key
        else:
            body = f"{header}\n{line}\n".encode()
            kept_days.append(day)
        s3.put_object(Bucket=Bucket.RAW.value, Key=key, Body=body)

    args = argparse.Namespace(start=RANGE[0], end=RANGE[1], interval="1d", source=SOURCE,
                              lookback_bars=transform_bars.DEFAULT_LOOKBACK_BARS)
    summary = transform_bars.run(spark, args)  # the transform keeps running: no exception
    assert summary["quarantined"] == sum(expected.values()) == PER_KIND * len(kinds) + expected[utf16]

    quarantine = (spark.read.parquet(Bucket.PROCESSED.s3a(quarantine_prefix("1d")))
                  .where(f"source_file LIKE '%/source={SOURCE}/%'").toPandas())
    assert quarantine["reason"].notna().all()
    per_object = quarantine.groupby(quarantine["source_file"].str.split("/raw/", n=1).str[-1]).size().to_dict()
    assert per_object == expected  # every row, in the object it came from
    reasons = {kinds[n]: set(quarantine.loc[quarantine["source_file"].str.endswith(
        day_key("1d", SOURCE, SYMBOL, day.isoformat())), "reason"])
        for n, day in enumerate(kept_days[:len(kinds)])}
    eleven = "malformed CSV row: not 11 fields"
    assert reasons["too few fields"] == reasons["too many fields"] == reasons["semicolon separated"] == {eleven}
    assert reasons["NaN price"] == {"non-finite open"} and reasons["infinite price"] == {"non-finite close"}
    assert reasons["huge number"] == {"non-finite open"}  # 10^400 parses as infinity
    assert reasons["volume out of range"] == {"volume out of range"}
    assert reasons["huge symbol"] == reasons["symbol with SQL"] == reasons["Latin-1 symbol"] == {"invalid symbol"}
    assert reasons["far-future timestamp"] == reasons["far-past timestamp"] == \
        {"timestamp not on its file's session date"}
    assert reasons["missing source"] == {"null source"}

    # Nothing else lost: every good bar, with its values, is in the processed table.
    bars = spark.table(f"{settings.iceberg.catalog}.{Table.BARS_1D}").where(f"symbol = '{SYMBOL}'").toPandas()
    columns = ["open", "high", "low", "close", "volume"]
    sent = good.assign(date=days)
    sent = sent[sent["date"].isin(kept_days)]
    assert sorted(map(tuple, bars[["date", *columns]].values.tolist())) == \
        sorted(map(tuple, sent[["date", *columns]].values.tolist()))


def test_a_month_objects_bad_rows_are_quarantined_under_the_interval_once_per_rerun(stack, spark, s3):
    source, symbol, interval = "fuzzmonth", "FZM", (date(2016, 5, 10), date(2016, 5, 12))
    good = SyntheticMarket(seed=31).bars([symbol], date(2016, 5, 1), date(2016, 6, 1), "1d").assign(source=source)
    header, *lines = to_csv_bytes(good).decode().splitlines()
    fields = next(line for line in lines if line.split(",")[1].startswith("2016-05-10")).split(",")
    bad = [",".join(fields[:4]),  # too few fields (its timestamp files it under its session)
           ",".join([*fields[:1], "2150-05-10T14:30:00+00:00", *fields[2:]]),  # a session in another month
           ",".join([*fields[:1], "soon", *fields[2:]])]
    key = raw_ohlcv_key("1d", source, symbol, "2016-05-01")
    s3.put_object(Bucket=Bucket.RAW.value, Key=key, Body="\n".join([header, *lines, *bad, ""]).encode())
    args = argparse.Namespace(start=interval[0], end=interval[1], interval="1d", source=source,
                              lookback_bars=transform_bars.DEFAULT_LOOKBACK_BARS)

    for _ in range(2):  # a rerun replaces the interval's quarantine: the same three rows
        summary = transform_bars.run(spark, args)
        assert (summary["rows"], summary["quarantined"]) == (2, 3)  # the month's other sessions: not this run's
        quarantine = (spark.read.parquet(Bucket.PROCESSED.s3a(quarantine_prefix("1d")))
                      .where(f"source_file LIKE '%/source={source}/%'").toPandas())
        assert sorted(quarantine["reason"]) == ["malformed CSV row: not 11 fields",
                                                "timestamp not in its file's month", "unparsable timestamp: soon"]
        assert set(quarantine["date"].astype(str)) == {"2016-05-10"}  # the interval's first session
