"""Listing the lake's objects: one helper on boto3's paginator (list_objects_v2 returns at most
1,000 keys a page; every caller needs every page)."""
from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


def iter_objects(s3: "S3Client", bucket: str, prefix: str = "") -> Iterator[dict[str, Any]]:
    """Every object under `prefix` (boto3's object dicts: Key, ETag, Size, ...), in key order."""
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        yield from page.get("Contents", [])  # type: ignore[misc]


def iter_keys(s3: "S3Client", bucket: str, prefix: str = "") -> Iterator[str]:
    """Every key under `prefix`, in key order."""
    for obj in iter_objects(s3, bucket, prefix):
        yield obj["Key"]
