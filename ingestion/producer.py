"""Publish quote/trade events to Kafka as JSON, keyed by symbol.

    python -m ingestion.producer --mode synthetic --rate 200 --duration 30
    python -m ingestion.producer --mode replay --tape ticks.parquet --speed 10

Keyed by symbol, so a symbol's events stay ordered in one partition; each event has a unique
`event_id` (the streaming job's dedup key). The producer (librdkafka's, through confluent-kafka) is idempotent
(acks=all, enable.idempotence) and counts every delivery failure: `publish` raises at the end if any
record was not acknowledged, instead of dropping it silently.

Modes: `synthetic` (seeded, with malformed and late events on request), `replay` (a recorded
Parquet tick tape at N× speed) and `yfinance` (polls live prices within rate limits; see
ingestion/live_quotes.py; not reachable offline, tested on constructed responses).
"""
from __future__ import annotations

import argparse
import json
import secrets
import sys
import time
import uuid
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np

from tickerlake.core.errors import TickerlakeError, one_line_errors
from tickerlake.core.names import Topic

Record = tuple[bytes, bytes]  # (key, value)


class DeliveryFailed(TickerlakeError):
    pass


@dataclass
class SyntheticTicks:
    """A seeded stream of ticks: a random walk per symbol around its synthetic price level.

    `malformed_every=n` replaces every n-th event with a malformed one (bad JSON, missing field,
    negative price, in turn); `late_every=n` back-dates every n-th event by `late_by`.
    """

    symbols: tuple[str, ...] = ("AAPL", "MSFT", "NVDA", "AMZN", "GOOGL")
    seed: int = 42
    malformed_every: int = 0
    late_every: int = 0
    late_by: timedelta = timedelta(minutes=30)
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    # Event ids are unique across runs (a rerun of the producer is new events, not a replay).
    run_id: int = field(default_factory=lambda: secrets.randbits(63))
    # Where each symbol's walk starts; None: a fixed level per symbol.
    start_prices: dict[str, float] | None = None

    def events(self, count: int | None = None) -> Iterator[Record]:
        rng = np.random.default_rng(self.seed)
        prices = {s: float((self.start_prices or {}).get(s) or 20 + zlib.crc32(s.encode()) % 400)
                  for s in self.symbols}
        n = 0
        while count is None or n < count:
            n += 1
            symbol = self.symbols[int(rng.integers(len(self.symbols)))]
            prices[symbol] *= float(np.exp(rng.normal(0, 0.0005)))
            price = round(prices[symbol], 4)
            spread = round(price * 0.0002, 4)
            event_time = self.clock()
            if self.late_every and n % self.late_every == 0:
                event_time -= self.late_by
            event = {
                "event_id": str(uuid.UUID(int=(self.run_id << 64) | n)),
                "event_time": event_time.isoformat(),
                "symbol": symbol, "price": price, "size": int(rng.integers(1, 500)),
                "bid": round(price - spread, 4), "ask": round(price + spread, 4), "source": "synthetic",
            }
            value = json.dumps(event).encode()
            if self.malformed_every and n % self.malformed_every == 0:
                value = _malformed(event, n // self.malformed_every)
            yield symbol.encode(), value


def _malformed(event: dict, which: int) -> bytes:
    kind = which % 3
    if kind == 0:
        return b'{"event_id": "broken'  # not JSON
    if kind == 1:
        return json.dumps({k: v for k, v in event.items() if k != "price"}).encode()
    return json.dumps({**event, "price": -abs(event["price"])}).encode()


def replay(tape_path: str, speed: float, clock: Callable[[], float] = time.monotonic,
           sleep: Callable[[float], None] = time.sleep) -> Iterator[Record]:
    """A recorded tick tape (Parquet in the TICK schema) at `speed`× its recorded pace."""
    import pyarrow.parquet as pq

    table = pq.read_table(tape_path).sort_by("event_time")
    rows = table.to_pylist()
    if not rows:
        return
    started, first = clock(), rows[0]["event_time"]
    for row in rows:
        due = (row["event_time"] - first).total_seconds() / speed
        wait = due - (clock() - started)
        if wait > 0:
            sleep(wait)
        row = {**row, "event_time": row["event_time"].isoformat()}
        yield row["symbol"].encode(), json.dumps(row).encode()


def paced(records: Iterable[Record], rate: float, duration: float | None,
          clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep
          ) -> Iterator[Record]:
    """At most `rate` records per second, for at most `duration` seconds."""
    started = clock()
    for n, record in enumerate(records):
        elapsed = clock() - started
        if duration is not None and elapsed >= duration:
            return
        ahead = n / rate - elapsed
        if ahead > 0:
            sleep(ahead)
        yield record


def publish(records: Iterable[Record], producer, topic: str = Topic.TICKS.value,
            flush_seconds: float = 60.0) -> int:
    """Send every record, wait for every acknowledgement; raise DeliveryFailed if any failed."""
    failures: list[str] = []
    sent, polled = 0, time.monotonic()

    def delivered(error, _message) -> None:
        if error is not None:
            failures.append(f"{error.name()}: {error.str()}")

    for key, value in records:
        while True:
            try:
                producer.produce(topic, value=value, key=key, on_delivery=delivered)
                break
            except BufferError:  # the local queue is full: wait for deliveries to drain it
                producer.poll(0.05)
        sent += 1
        # Serve the delivery callbacks so far every 1,000 records or half second: a poll per
        # record wakes librdkafka's threads for each (measured: 9% -> 22% of the cores at 5,000/s).
        if sent % 1000 == 0 or time.monotonic() - polled > 0.5:
            producer.poll(0)
            polled = time.monotonic()
    unacknowledged = producer.flush(flush_seconds)
    if unacknowledged:
        failures.append(f"{unacknowledged} not acknowledged within {flush_seconds:g} s")
    if failures:
        raise DeliveryFailed(f"{len(failures)} of {sent} records to {topic} were not delivered; "
                             f"first: {failures[0]}")
    return sent


def market_closes(symbols: tuple[str, ...]) -> dict[str, float]:
    """Each symbol's last close in the synthetic market (the batch lane's offline source), so that
    the live prices continue the daily history the dashboard shows next to them."""
    from ingestion.sources.synthetic import SyntheticMarket

    today = datetime.now(UTC).date()
    market = SyntheticMarket()
    return {symbol: market.last_close(symbol, today) for symbol in symbols}


def wait_for_ready_job(settings, since: float, timeout: float = 120.0) -> float | None:
    """Seconds until the stream job started at `since` reports itself ready (its progress file:
    warmed up, both queries running), None after `timeout`: the demo's quotes then start anyway."""
    from tickerlake.core.clients import s3_client
    from tickerlake.core.stream_progress import read_progress, ready_since

    s3, began = s3_client(settings.s3), time.time()
    while time.time() - began < timeout:
        try:
            progress = read_progress(s3)
        except Exception:  # noqa: BLE001 - S3 restarting: ask again
            progress = None
        if ready_since(progress, since):
            return round(time.time() - began, 1)
        time.sleep(0.2)
    return None


@one_line_errors
def main(argv: list[str] | None = None) -> int:
    from tickerlake.core.clients import kafka_producer
    from tickerlake.core.settings import get_settings

    parser = argparse.ArgumentParser(prog="python -m ingestion.producer")
    parser.add_argument("--mode", choices=["synthetic", "replay", "yfinance"], default="synthetic")
    parser.add_argument("--symbols", default="AAPL,MSFT,NVDA,AMZN,GOOGL", help="yfinance: tickers to poll")
    parser.add_argument("--poll-seconds", type=float, default=30.0, help="yfinance: seconds between polls")
    parser.add_argument("--rate", type=float, default=100.0, help="events per second (synthetic)")
    parser.add_argument("--duration", type=float, default=None, help="seconds (default: forever)")
    parser.add_argument("--count", type=int, default=None, help="events (synthetic)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--malformed-every", type=int, default=0)
    parser.add_argument("--late-every", type=int, default=0)
    parser.add_argument("--tape", help="Parquet tick tape (replay)")
    parser.add_argument("--speed", type=float, default=1.0, help="replay speed-up")
    parser.add_argument("--start-when-ready", type=float, default=None, metavar="EPOCH",
                        help="prepare, then send once the stream job started at EPOCH reports ready")
    args = parser.parse_args(argv)
    if args.mode == "replay":
        if not args.tape:
            parser.error("--tape is required with --mode replay")
        records = replay(args.tape, args.speed)
    elif args.mode == "yfinance":
        from ingestion.live_quotes import YahooQuotePoller

        symbols = [s.strip().upper() for s in args.symbols.split(",") if s.strip()]
        records = YahooQuotePoller(symbols, min_interval_seconds=args.poll_seconds).records()
    else:
        ticks = SyntheticTicks(seed=args.seed, malformed_every=args.malformed_every,
                               late_every=args.late_every, start_prices=market_closes(SyntheticTicks.symbols))
        records = paced(ticks.events(args.count), args.rate, args.duration)
    producer = kafka_producer(get_settings().kafka)
    if args.start_when_ready is not None:
        # everything above (imports, the market's last closes, the broker connection) overlapped
        # the job's warm-up; the first event goes out when the job can take it
        waited = wait_for_ready_job(get_settings(), args.start_when_ready)
        print(f"stream job ready after {waited}s of waiting" if waited is not None
              else "the stream job did not report ready; sending anyway", flush=True)
    sent = publish(records, producer)
    print(f"published {sent} events to {Topic.TICKS.value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
