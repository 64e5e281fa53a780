"""A lease held in Postgres: one holder of a named job across hosts, with a fencing token.

The streaming job takes the lease `stream_ticks` before it writes anything and renews it for its
whole life; a second copy, on this host or another, waits for it or gives up with one line naming
the holder. The lease is a row in `tickerlake_ops.leases` (the database that holds the Iceberg
catalog, so it exists whichever warehouse is configured); every time, including expiry, is the
database's clock, so the hosts' clocks do not matter.

- **Expiry.** A holder that stops renewing (SIGKILL, a hung host, a partition from Postgres) loses
  the lease `ttl` seconds after its last renewal; only then can another take it.
- **Fencing.** Each change of holder increments `token`. The holder renews right before each
  commit (`Lease.fence()`: one UPDATE that matches its own token) and stops if that fails, so a
  stale holder that comes back after its lease was taken commits nothing; the job also writes its
  token into each commit's snapshot summary and refuses to commit behind a newer token.
- **Heartbeat.** A daemon thread renews every `ttl / 3` seconds and reconnects after a Postgres
  restart; if it cannot renew before the lease would expire, it calls `on_lost` (the job exits).
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from tickerlake.core.errors import TickerlakeError
from tickerlake.core.settings import Settings

log = logging.getLogger(__name__)

LEASE_DDL = """
CREATE SCHEMA IF NOT EXISTS tickerlake_ops;
CREATE TABLE IF NOT EXISTS tickerlake_ops.leases (
    name        text        PRIMARY KEY,
    holder      text        NOT NULL,
    token       bigint      NOT NULL,
    acquired_at timestamptz NOT NULL,
    renewed_at  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL
)"""

# Take a free or expired lease; a live one stays with its holder. Returns the new token.
_ACQUIRE = """
INSERT INTO tickerlake_ops.leases AS l (name, holder, token, acquired_at, renewed_at, expires_at)
VALUES (%(name)s, %(holder)s, 1, now(), now(), now() + make_interval(secs => %(ttl)s))
ON CONFLICT (name) DO UPDATE
   SET holder = EXCLUDED.holder, token = l.token + 1, acquired_at = now(), renewed_at = now(),
       expires_at = EXCLUDED.expires_at
 WHERE l.expires_at < now()
RETURNING token"""

# Renew only with our own token: a holder whose lease was taken (token moved on) is fenced off.
_RENEW = """
UPDATE tickerlake_ops.leases SET renewed_at = now(), expires_at = now() + make_interval(secs => %(ttl)s)
 WHERE name = %(name)s AND holder = %(holder)s AND token = %(token)s
RETURNING token"""

# Release: expire now, keep the row so that tokens never repeat.
_RELEASE = """
UPDATE tickerlake_ops.leases SET expires_at = now()
 WHERE name = %(name)s AND holder = %(holder)s AND token = %(token)s"""


class LeaseHeld(TickerlakeError):
    """Another holder has the lease (one line naming it)."""


class LeaseLost(RuntimeError):
    """This holder's lease expired or was taken: it must stop writing."""


@dataclass(frozen=True)
class LeaseState:
    name: str
    holder: str
    token: int
    acquired_at: datetime
    renewed_at: datetime
    expires_at: datetime
    live: bool  # not expired, by the database's clock


def holder_id() -> str:
    """Who holds it: host, PID and a random part (a reused PID is a different holder)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def ensure_lease_table(conn) -> None:
    conn.execute(LEASE_DDL)


def lease_state(conn, name: str) -> LeaseState | None:
    row = conn.execute("SELECT name, holder, token, acquired_at, renewed_at, expires_at, expires_at >= now() "
                       "FROM tickerlake_ops.leases WHERE name = %s", (name,)).fetchone()
    return LeaseState(*row) if row else None


def current_lease(settings: Settings, name: str) -> LeaseState | None:
    """The lease's row as it is now (None: never taken)."""
    from tickerlake.core.clients import pg_connect

    with pg_connect(settings.pg, autocommit=True) as conn:
        ensure_lease_table(conn)
        return lease_state(conn, name)


def try_acquire(conn, name: str, holder: str, ttl: float) -> int | None:
    row = conn.execute(_ACQUIRE, {"name": name, "holder": holder, "ttl": ttl}).fetchone()
    return int(row[0]) if row else None


def renew(conn, name: str, holder: str, token: int, ttl: float) -> bool:
    return conn.execute(_RENEW, {"name": name, "holder": holder, "token": token, "ttl": ttl}).fetchone() is not None


class Lease:
    """One holder's lease (see the module docstring)."""

    def __init__(self, settings: Settings, name: str, ttl: float, *,
                 on_lost: Callable[[str], None] | None = None) -> None:
        self.settings, self.name, self.ttl = settings, name, float(ttl)
        self.holder = holder_id()
        self.token: int | None = None
        self.on_lost = on_lost
        self._conn = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._renewed = 0.0  # monotonic time of the last successful renewal
        self._thread: threading.Thread | None = None

    def _connection(self):
        from tickerlake.core.clients import pg_connect

        if self._conn is None or self._conn.closed:
            self._conn = pg_connect(self.settings.pg, autocommit=True)
        return self._conn

    def _call(self, fn, *args):
        """One statement; after a lost connection (a Postgres restart) one reconnect and retry."""
        import psycopg

        with self._lock:
            try:
                return fn(self._connection(), *args)
            except psycopg.OperationalError:
                if self._conn is not None:
                    self._conn.close()
                self._conn = None
                return fn(self._connection(), *args)

    def acquire(self, wait: float = 0.0) -> int:
        """Take the lease, waiting up to `wait` seconds for a live holder's to expire."""
        self._call(ensure_lease_table)
        deadline = time.monotonic() + wait
        while True:
            token = self._call(try_acquire, self.name, self.holder, self.ttl)
            if token is not None:
                break
            if time.monotonic() >= deadline:
                state = self._call(lease_state, self.name)
                who = f"{state.holder} (token {state.token}) until {state.expires_at:%Y-%m-%d %H:%M:%S%z}" \
                    if state else "another holder"
                raise LeaseHeld(f"lease {self.name!r} is held by {who}; not starting a second copy "
                                f"(TICKERLAKE_STREAM_LEASE_SECONDS={self.ttl:g})")
            time.sleep(min(1.0, max(0.1, self.ttl / 10)))
        self.token, self._renewed = token, time.monotonic()
        log.info("lease %s taken by %s, token %d, ttl %gs", self.name, self.holder, token, self.ttl)
        self._thread = threading.Thread(target=self._heartbeat, name=f"lease-{self.name}", daemon=True)
        self._thread.start()
        return token

    def fence(self) -> None:
        """Renew now, or raise LeaseLost: called right before a commit."""
        if self.token is None:
            raise LeaseLost(f"lease {self.name!r} was never taken")
        try:
            held = self._call(renew, self.name, self.holder, self.token, self.ttl)
        except Exception as exc:  # noqa: BLE001 - Postgres unreachable: held until it would expire
            if time.monotonic() - self._renewed < self.ttl * 0.8:
                log.warning("lease %s: renewal failed (%s); still within its ttl", self.name, exc)
                return
            raise LeaseLost(f"lease {self.name!r}: cannot renew it before it expires ({exc})") from exc
        if not held:
            raise LeaseLost(f"lease {self.name!r} was taken by another holder (token {self.token} is stale)")
        self._renewed = time.monotonic()

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            try:
                self.fence()
            except LeaseLost as lost:
                log.error("%s", lost)
                if self.on_lost is not None:
                    self.on_lost(str(lost))
                return

    def release(self) -> None:
        self._stop.set()
        if self.token is not None:
            try:
                self._call(lambda conn: conn.execute(_RELEASE, {"name": self.name, "holder": self.holder,
                                                               "token": self.token}))
            except Exception as exc:  # noqa: BLE001 - it expires by itself anyway
                log.warning("lease %s: release failed (%s); it expires in %gs", self.name, exc, self.ttl)
        if self._conn is not None:
            self._conn.close()
