"""Generated malformed inputs for the fuzz tests: Kafka records the stream must quarantine and CSV
rows the batch transform must quarantine, each kind in turn, from a seeded generator."""
from __future__ import annotations

import json
import random
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

Record = tuple[bytes, bytes]


def _event(rng: random.Random, now: datetime) -> dict:
    price = round(rng.uniform(5, 500), 4)
    return {"event_id": str(uuid.UUID(int=rng.getrandbits(128))), "event_time": now.isoformat(),
            "symbol": rng.choice(["AAPL", "MSFT", "BRK.B", "^GSPC"]), "price": price,
            "size": rng.randint(1, 500), "bid": price - 0.01, "ask": price + 0.01, "source": "fuzz"}


def _without(event: dict, field: str) -> dict:
    return {k: v for k, v in event.items() if k != field}


def _dumps(value) -> bytes:
    return json.dumps(value, allow_nan=True).encode()


MALFORMED: dict[str, Callable[[random.Random, dict], bytes]] = {
    "random bytes": lambda rng, e: bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 300))),
    "truncated JSON": lambda rng, e: (raw := _dumps(e))[:rng.randint(1, len(raw) - 2)],
    "empty": lambda rng, e: b"",
    "JSON but not an object": lambda rng, e: rng.choice([b"null", b"[]", b"42", b'"text"', b"[1, 2]"]),
    "price not a number": lambda rng, e: _dumps({**e, "price": rng.choice(["abc", "", "1,5", "$12"])}),
    "price an object": lambda rng, e: _dumps({**e, "price": {"value": 1}}),
    "size not a number": lambda rng, e: _dumps({**e, "size": rng.choice(["many", "", "-"])}),
    "negative size": lambda rng, e: _dumps({**e, "size": -rng.randint(1, 10**6)}),
    "NaN price": lambda rng, e: _dumps({**e, "price": float("nan")}),
    "infinite price": lambda rng, e: _dumps({**e, "price": rng.choice([float("inf"), "Infinity", "-Infinity"])}),
    "NaN bid": lambda rng, e: _dumps({**e, "bid": float("nan")}),
    "zero or negative price": lambda rng, e: _dumps({**e, "price": -rng.random() * 100}),
    "huge symbol": lambda rng, e: _dumps({**e, "symbol": "A" * rng.randint(21, 20_000)}),
    "huge event_id": lambda rng, e: _dumps({**e, "event_id": e["event_id"] + "x" * rng.randint(129, 20_000)}),
    "symbol with SQL": lambda rng, e: _dumps({**e, "symbol": "AAPL'; DROP TABLE ticks; --"}),
    "lower-case symbol": lambda rng, e: _dumps({**e, "symbol": "aapl"}),
    "far-future time": lambda rng, e: _dumps({**e, "event_time": f"{rng.randint(2100, 9999)}-01-01T00:00:00+00:00"}),
    "far-past time": lambda rng, e: _dumps({**e, "event_time": f"{rng.randint(1000, 1979)}-06-01T00:00:00+00:00"}),
    "unparsable time": lambda rng, e: _dumps({**e, "event_time": rng.choice(["yesterday", "", "2026-13-45"])}),
    "missing field": lambda rng, e: _dumps(_without(e, rng.choice(["event_id", "event_time", "symbol", "price"]))),
    "field is null": lambda rng, e: _dumps({**e, rng.choice(["event_id", "symbol", "price", "size"]): None}),
}


def malformed_ticks(count: int, seed: int = 0, now: datetime | None = None) -> list[tuple[str, Record]]:
    """`count` malformed records, the kinds in turn: (kind, (key, value))."""
    rng, now = random.Random(seed), now or datetime.now(UTC)
    kinds = list(MALFORMED)
    out = []
    for n in range(count):
        kind = kinds[n % len(kinds)]
        event = _event(rng, now + timedelta(milliseconds=n))
        out.append((kind, (b"FUZZ", MALFORMED[kind](rng, event))))
    return out


def tolerated_ticks(count: int, seed: int = 1, now: datetime | None = None) -> list[dict]:
    """Well-formed events with unknown extra fields (a newer producer): kept, the fields ignored."""
    rng, now = random.Random(seed), now or datetime.now(UTC)
    return [{**_event(rng, now + timedelta(milliseconds=n)), "venue": "XNAS", "flags": [n]} for n in range(count)]
