"""Daily bars land one object per symbol and month (tickerlake/core/names.py `RAW_SPAN`), on the
real S3 store: a backfill of part of a month replaces its own sessions and keeps the others, a
rerun writes the same bytes, and a write that raced another is retried instead of losing rows."""
from __future__ import annotations

import zlib
from datetime import date

import pytest

from ingestion.backfill import backfill
from ingestion.raw_objects import merged
from ingestion.sources.synthetic import SyntheticMarket
from tickerlake.core.names import Bucket, raw_ohlcv_key

MONTH = "2016-03"  # sessions no other test writes
FIRST, SECOND = (date(2016, 3, 7), date(2016, 3, 10)), (date(2016, 3, 14), date(2016, 3, 16))


def sessions_in(s3, key: str) -> list[str]:
    body = s3.get_object(Bucket=Bucket.RAW.value, Key=key)["Body"].read().decode()
    return [line.split(",")[1][:10] for line in body.splitlines()[1:]]


@pytest.fixture
def symbol(request) -> str:
    return f"RL{zlib.crc32(request.node.name.encode()) % 10_000}"  # a symbol of each test's own


def test_two_backfills_of_one_month_keep_each_others_sessions_and_a_rerun_writes_the_same_bytes(s3, symbol):
    market = SyntheticMarket(seed=3)
    key = raw_ohlcv_key("1d", market.name.value, symbol, f"{MONTH}-07")
    assert key.endswith(f"/symbol={symbol}/month={MONTH}/bars.csv")

    first = backfill(market, [symbol], *FIRST, "1d", s3)
    second = backfill(market, [symbol], *SECOND, "1d", s3)
    assert first.keys == second.keys == (key,)
    assert sessions_in(s3, key) == ["2016-03-07", "2016-03-08", "2016-03-09", "2016-03-14", "2016-03-15"]
    etag = s3.head_object(Bucket=Bucket.RAW.value, Key=key)["ETag"]

    backfill(market, [symbol], *FIRST, "1d", s3)  # a rerun of the first interval
    assert s3.head_object(Bucket=Bucket.RAW.value, Key=key)["ETag"] == etag

    whole = backfill(market, [symbol], date(2016, 3, 1), date(2016, 4, 1), "1d", s3)  # the whole month
    assert whole.objects == 1 and len(sessions_in(s3, key)) == whole.rows > 20  # none lost, none doubled


def test_a_write_that_raced_another_backfill_of_the_month_is_retried_and_keeps_both(s3, symbol):
    market = SyntheticMarket(seed=4)
    key = raw_ohlcv_key("1d", market.name.value, symbol, f"{MONTH}-07")
    backfill(market, [symbol], *FIRST, "1d", s3)
    raced = []

    class Racing:
        """The real store, but another backfill of the month lands between our read and our write."""

        def get_object(self, **kwargs):
            got = s3.get_object(**kwargs)
            if not raced:
                raced.append(True)
                backfill(market, [symbol], *SECOND, "1d", s3)
            return got

        def put_object(self, **kwargs):
            return s3.put_object(**kwargs)

    backfill(market, [symbol], date(2016, 3, 21), date(2016, 3, 23), "1d", Racing())
    assert raced  # the first conditional write failed (412) and the merge ran again on the new object
    assert sessions_in(s3, key) == ["2016-03-07", "2016-03-08", "2016-03-09", "2016-03-14", "2016-03-15",
                                    "2016-03-21", "2016-03-22"]


def test_a_row_without_a_session_is_kept_once_however_often_its_interval_is_rerun():
    header = "symbol,timestamp,open,high,low,close,adj_close,volume,dividends,stock_splits,source\n"
    bar = "X,2016-03-07T14:30:00+00:00,1,2,0.5,1.5,,10,0,0,s\n"
    undated = "X,,1,2,0.5,1.5,,10,0,0,s\n"
    torn = "X,2016-03-07T14:30:00+00:00,1\n"  # a hand edit: too few fields
    new = (header + bar + undated + torn).encode()
    once = merged(b"", new, date(2016, 3, 7), date(2016, 3, 8))
    assert merged(once, new, date(2016, 3, 7), date(2016, 3, 8)) == once
    assert once.decode().splitlines() == [header.strip(), bar.strip(), undated.strip(), torn.strip()]
