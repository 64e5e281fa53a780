"""Listing the lake's objects: one helper on boto3's paginator (list_objects_v2 returns at most
1,000 keys a page; every caller needs every page)."""
from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


def iter_objects(s3: "S3Client", bucket: str, prefix: str = "", *, start_after: str = "",
                 until: str = "") -> Iterator[dict[str, Any]]:
    """Every object under `prefix` (boto3's object dicts: Key, ETag, Size, ...), in key order;
    only keys after `start_after` and not after `until` (a key range costs what it holds)."""
    paginator = s3.get_paginator("list_objects_v2")
    pages = (paginator.paginate(Bucket=bucket, Prefix=prefix, StartAfter=start_after) if start_after
             else paginator.paginate(Bucket=bucket, Prefix=prefix))
    for page in pages:
        for obj in page.get("Contents", []):
            if until and obj["Key"] > until:
                return
            yield obj  # type: ignore[misc]


def iter_keys(s3: "S3Client", bucket: str, prefix: str = "", *, start_after: str = "",
              until: str = "") -> Iterator[str]:
    """Every key under `prefix` (in a key range: see iter_objects), in key order."""
    for obj in iter_objects(s3, bucket, prefix, start_after=start_after, until=until):
        yield obj["Key"]
