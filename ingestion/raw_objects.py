"""Write one raw CSV object, whole or merged into what is there.

A raw object holds a symbol's month (tickerlake/core/names.py `RAW_SPAN`), so a backfill of
part of a month rewrites the rows of its own sessions and keeps the others: read, merge, and write
back only if nobody wrote the object in between (a conditional PUT: `If-Match` on the ETag read,
`If-None-Match: *` for a new object; AWS S3, MinIO and SeaweedFS enforce both). Two runs of the
same month at once (the backfill DAG runs up to four) then retry instead of losing one's rows.
"""
from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from datetime import date

import pandas as pd
from botocore.exceptions import ClientError
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from tickerlake.core.market import session_dates
from tickerlake.core.names import Bucket

# What a store answers when the object changed since it was read (S3: 412; 409 while another
# conditional write of the same key is in flight).
CONFLICT_CODES = {"PreconditionFailed", "ConditionalRequestConflict", "412", "409"}


class ObjectChanged(Exception):
    """The object was written by someone else between our read and our write."""


def _csv_bytes(rows: Iterable[list[str]], header: list[str]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")  # what pandas' to_csv writes: QUOTE_MINIMAL
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode("utf-8", "surrogateescape")


def _records(body: bytes) -> tuple[list[str], list[list[str]]]:
    text = body.decode("utf-8", "surrogateescape")  # bytes that are not UTF-8 are kept as they were
    header, *rows = list(csv.reader(io.StringIO(text))) or [[]]
    return header, rows


def merged(existing: bytes, new: bytes, start: date, end: date) -> bytes:
    """`existing` without the rows of sessions in [start, end), plus `new` (this run's rows of
    those sessions), ordered by session date; deterministic, so a rerun writes the same bytes.

    A row whose session cannot be told (no parsable timestamp, or not the object's number of
    fields: a hand edit) is kept, once: the same line from a rerun replaces it instead of doubling
    it. The transform quarantines such rows with their reason."""
    header, new_rows = _records(new)
    old_header, old_rows = _records(existing) if existing else (header, [])
    if old_header != header:
        raise ValueError(f"columns {old_header} are not the backfill's {header}")
    rows = old_rows + new_rows
    where = {name: header.index(name) for name in ("symbol", "timestamp")}

    def field(row: list[str], name: str) -> str:
        return row[where[name]] if len(row) == len(header) else ""

    days = session_dates(pd.Series([field(r, "timestamp") for r in rows]),
                         pd.Series([field(r, "symbol") for r in rows])).tolist()
    keep, seen_undated = [], set()
    for n, (row, day) in enumerate(zip(rows, days, strict=True)):
        fresh = n >= len(old_rows)
        if pd.isna(day):  # no session to tell (the helper gives NaT or None)
            line = tuple(row)
            if line not in seen_undated:
                seen_undated.add(line)
                keep.append((row, "~"))  # after every date, in the order met
        elif fresh or not (start <= day < end):
            keep.append((row, day.isoformat()))
    keep.sort(key=lambda pair: pair[1])  # stable: within a day, the order written
    return _csv_bytes((row for row, _ in keep), header)


def write_object(s3, key: str, body: bytes, whole: bool, start: date, end: date) -> None:
    """PUT `body` to `key`: as it is when it covers the object's whole span (`whole`), else merged
    into the object's other sessions under a conditional write, retried on a conflict."""
    if whole:
        s3.put_object(Bucket=Bucket.RAW.value, Key=key, Body=body, ContentType="text/csv")
        return
    for attempt in Retrying(retry=retry_if_exception_type(ObjectChanged), stop=stop_after_attempt(20),
                            wait=wait_random_exponential(multiplier=0.05, max=2), reraise=True):
        with attempt:
            _merge_once(s3, key, body, start, end)


def _merge_once(s3, key: str, body: bytes, start: date, end: date) -> None:
    try:
        got = s3.get_object(Bucket=Bucket.RAW.value, Key=key)
        existing, condition = got["Body"].read(), {"IfMatch": got["ETag"]}
    except ClientError as error:
        if error.response["Error"]["Code"] not in ("NoSuchKey", "404"):
            raise
        existing, condition = b"", {"IfNoneMatch": "*"}
    try:
        s3.put_object(Bucket=Bucket.RAW.value, Key=key, Body=merged(existing, body, start, end),
                      ContentType="text/csv", **condition)
    except ClientError as error:
        if error.response["Error"]["Code"] in CONFLICT_CODES:
            raise ObjectChanged(key) from None
        raise
