"""Create the lake's buckets on any S3 endpoint, idempotently."""
from __future__ import annotations

from botocore.exceptions import ClientError

from tickerlake.core.clients import s3_client
from tickerlake.core.names import Bucket
from tickerlake.core.settings import S3Settings


def ensure_buckets(s3: S3Settings) -> dict[str, str]:
    """Create each missing bucket; returns bucket -> "created" | "exists"."""
    client = s3_client(s3)
    existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
    outcome: dict[str, str] = {}
    for bucket in Bucket:
        if bucket.value in existing:
            outcome[bucket.value] = "exists"
            continue
        try:
            client.create_bucket(Bucket=bucket.value)
            outcome[bucket.value] = "created"
        except ClientError as exc:
            # Another initialiser won the race: that is the outcome we wanted.
            if exc.response["Error"]["Code"] not in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
                raise
            outcome[bucket.value] = "exists"
    return outcome
