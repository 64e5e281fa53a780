"""Generated malformed inputs for the fuzz tests: Kafka records the stream must quarantine and CSV
rows the batch transform must quarantine, each kind in turn, from a seeded generator."""
from __future__ import annotations

import json
import random
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from tickerlake.core.datasets import OHLCV_COLUMNS

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


# Malformed CSV rows for the batch transform. Each maker turns a good row's fields (in the raw
# dataset's column order) into one malformed line of text.
def _set(fields: list[str], **changes: str) -> list[str]:
    out = list(fields)
    for name, value in changes.items():
        out[OHLCV_COLUMNS.index(name)] = value
    return out


def _get(fields: list[str], name: str) -> str:
    return fields[OHLCV_COLUMNS.index(name)]


def _line(fields: list[str], sep: str = ",") -> bytes:
    return sep.join(fields).encode()


CSV_MALFORMED: dict[str, Callable[[random.Random, list[str]], bytes]] = {
    "too few fields": lambda rng, f: _line(f[:rng.randint(1, len(f) - 1)]),
    "too many fields": lambda rng, f: _line(f[:3] + ["12.5"] * rng.randint(1, 3) + f[3:]),
    "semicolon separated": lambda rng, f: _line(f, ";"),
    "tab separated": lambda rng, f: _line(f, "\t"),
    "unbalanced quote": lambda rng, f: _line(['"' + f[0]] + f[1:]),
    "header repeated": lambda rng, f: ",".join(OHLCV_COLUMNS).encode(),
    "price not a number": lambda rng, f: _line(_set(f, close=rng.choice(["abc", "1,5", "$12", "--"]))),
    "NaN price": lambda rng, f: _line(_set(f, high="NaN", low="NaN", open="NaN", close="NaN")),
    "infinite price": lambda rng, f: _line(_set(f, close=rng.choice(["Infinity", "-Infinity"]))),
    "huge number": lambda rng, f: _line(_set(f, open="9" * rng.randint(400, 5000))),
    "volume out of range": lambda rng, f: _line(_set(f, volume="1e30")),
    "negative volume": lambda rng, f: _line(_set(f, volume=str(-rng.randint(1, 10**6)))),
    "high below low": lambda rng, f: _line(_set(f, high=_get(f, "low"), low=_get(f, "high"))),
    "huge symbol": lambda rng, f: _line(_set(f, symbol="A" * rng.randint(21, 50_000))),
    "symbol with SQL": lambda rng, f: _line(_set(f, symbol="AAPL'); DROP TABLE bars; --")),
    "Latin-1 symbol": lambda rng, f: b",".join(["CAFÉ".encode("latin-1"), _line(f[1:])]),
    "NUL bytes": lambda rng, f: _line(_set(f, symbol=_get(f, "symbol") + "\x00\x00")),
    "unparsable timestamp": lambda rng, f: _line(_set(f, timestamp=rng.choice(["yesterday", "2026-13-45", "0"]))),
    "far-future timestamp": lambda rng, f: _line(_set(f, timestamp=f"{rng.randint(2100, 9999)}-01-03T14:30:00+00:00")),
    "far-past timestamp": lambda rng, f: _line(_set(f, timestamp=f"{rng.randint(1000, 1899)}-01-03T14:30:00+00:00")),
    "missing source": lambda rng, f: _line(_set(f, source="")),
}


def malformed_csv_rows(good: list[str], per_kind: int, seed: int = 0) -> dict[str, list[bytes]]:
    """`per_kind` malformed lines of every kind, each made from the good row's fields."""
    rng = random.Random(seed)
    return {kind: [make(rng, good) for _ in range(per_kind)] for kind, make in CSV_MALFORMED.items()}
