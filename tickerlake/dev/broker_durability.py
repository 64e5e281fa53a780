"""Does the local broker keep every write it acknowledged when it is stopped cleanly?

`python -m tickerlake.dev.broker_durability [--rate N] [--seconds S] [--bare-sigterm]`: starts the
local broker (noida-db) alone on a free loopback port with a temporary data directory, sends
numbered messages with the project's producer (idempotent, acks=all) at a steady rate, stops the
broker the way the stack does (`KafkaBroker.down`: the server's own `stop kafka`, then SIGTERM) or,
with `--bare-sigterm`, with SIGTERM alone (it writes its snapshot and exits) while the producer
keeps sending, starts it again on the same data, reads the whole topic back and prints every
message that was acknowledged but is not in the topic, with the time of its acknowledgement
relative to the stop. No Spark, no S3, no stream: only the broker and a client (why: chaos lost events
acknowledged while the broker stopped; this tells the broker's share from the pipeline's)."""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from tickerlake.core.errors import one_line_errors
from tickerlake.core.processes import free_port

TOPIC = "durability-probe"


@dataclass
class Outcome:
    acknowledged: int
    in_topic: int
    lost: list[tuple[int, int, float]]  # (message number, offset, seconds after the stop signal)
    stop_seconds: float
    how: str

    def report(self) -> str:
        lines = [f"broker stopped ({self.how}) in {self.stop_seconds:.3f}s; acknowledged {self.acknowledged}, "
                 f"in the topic after the restart {self.in_topic}, lost {len(self.lost)}"]
        lines += [f"  lost: message {n} (offset {o}), acknowledged {t:+.3f}s after the stop began"
                  for n, o, t in self.lost]
        return "\n".join(lines)


def probe(rate: int, seconds: float, bare_sigterm: bool = False) -> Outcome:
    from tickerlake.core.clients import kafka_consumer, kafka_producer
    from tickerlake.core.settings import get_settings
    from tickerlake.dev.private import exported
    from tickerlake.dev.services import KafkaBroker, Service

    state = Path(tempfile.mkdtemp(prefix="tickerlake-broker-probe-"))
    env = {"TICKERLAKE_STACK_STATE_DIR": str(state),
           "TICKERLAKE_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port('127.0.0.1')}"}
    try:
        with exported(env):
            settings = get_settings()
            broker = KafkaBroker(settings)
            broker.up()
            acked: list[tuple[int, int, float]] = []
            sending = threading.Event()
            sending.set()
            producer = kafka_producer(settings.kafka, {"request.timeout.ms": 3000, "reconnect.backoff.ms": 100})

            def delivered(n: int):
                def callback(error, message) -> None:
                    if error is None:
                        acked.append((n, message.offset(), time.time()))
                return callback

            def send() -> None:
                number = 0
                while sending.is_set():
                    producer.produce(TOPIC, str(number).encode(), on_delivery=delivered(number))
                    producer.poll(0)
                    number += 1
                    time.sleep(1 / rate)

            sender = threading.Thread(target=send, daemon=True)
            sender.start()
            time.sleep(seconds / 2)
            stopped_at = time.time()
            (Service.down if bare_sigterm else KafkaBroker.down)(broker)
            stop_seconds = time.time() - stopped_at
            time.sleep(1)
            broker.up()
            time.sleep(seconds / 2)
            sending.clear()
            sender.join()
            producer.flush(30)
            consumer = kafka_consumer(settings.kafka, TOPIC, group_id=None, auto_offset_reset="earliest",
                                      consumer_timeout_ms=5000)
            kept = {int(m.value) for m in consumer}
            consumer.close()
            broker.down()
        lost = [(n, o, t - stopped_at) for n, o, t in acked if n not in kept]
        how = "SIGTERM alone" if bare_sigterm else "stop kafka, then SIGTERM"
        return Outcome(len(acked), len(kept), lost, stop_seconds, how)
    finally:
        shutil.rmtree(state, ignore_errors=True)


@one_line_errors  # a bad setting (a port, a state dir) is one line, not a traceback
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=1000, help="messages per second (default 1000)")
    parser.add_argument("--seconds", type=float, default=6.0, help="sending time, half before the stop")
    parser.add_argument("--bare-sigterm", action="store_true",
                        help="stop with SIGTERM alone, without the server's own `stop kafka` first")
    args = parser.parse_args(argv)
    outcome = probe(args.rate, args.seconds, args.bare_sigterm)
    print(outcome.report())
    raise SystemExit(1 if outcome.lost else 0)


if __name__ == "__main__":
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    main()
