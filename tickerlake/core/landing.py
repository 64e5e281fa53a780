"""The landing files' ledger: which Kafka offsets are durable in the raw bucket, from object names.

Read by the landing sink (where to resume) and by the stream supervisor (how far behind it is);
the layout itself is spelled in `tickerlake.core.names` (`landing_key`).
"""
from __future__ import annotations

from tickerlake.core.names import LANDING_TICKS_PREFIX, Bucket, parse_landing_key
from tickerlake.core.s3 import iter_keys


def durable_positions(s3, prefix: str = LANDING_TICKS_PREFIX) -> dict[int, int]:
    """partition -> next offset to land, from the landing objects' names."""
    positions: dict[int, int] = {}
    for key in iter_keys(s3, Bucket.RAW.value, prefix + "/"):
        partition, _, last = parse_landing_key(key)
        positions[partition] = max(positions.get(partition, 0), last + 1)
    return positions
