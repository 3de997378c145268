"""The fleet store: several runners (CI jobs on several machines) sharing hypervisors coordinate through one
table in the team's PostgreSQL, the database that holds Pulumi's state (`pulumi login postgres://...`).

A row per ephemeral lab: its slot (bridge lvsci<slot>, subnet 10.200.<slot>.0/24, VRRP router id), its stack,
the hypervisor it was placed on, the runner that owns it and that runner's last heartbeat, and the stack's
config file (so a reaper on another machine can destroy it). Claims take the table's lock, so the slot and the
placement are decided from every runner's labs at once; the primary key on the slot holds even so."""

from __future__ import annotations

import os
import re
import socket
import urllib.parse
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from lvslab.hypervisor import place
from lvslab.runner.slots import SLOT_NUMBERS
from lvslab.verify.probe import Background

STORE_ENV = "LVSLAB_FLEET_DB"  # default: PULUMI_BACKEND_URL when that is a postgres:// URL
RUNNER_ENV = "LVSLAB_RUNNER"  # who owns a lab (default host:pid), e.g. a CI job's id
HEARTBEAT_ENV = "LVSLAB_FLEET_HEARTBEAT_S"
HEARTBEAT_S = 10.0
SLOTS = SLOT_NUMBERS
TABLE = "lvslab_labs"

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    slot        integer PRIMARY KEY CHECK (slot BETWEEN {SLOTS.start} AND {SLOTS.stop - 1}),
    stack       text NOT NULL UNIQUE,
    runner      text NOT NULL,
    hypervisor  text NOT NULL,
    stack_file  text NOT NULL DEFAULT '',
    kept        boolean NOT NULL DEFAULT false,
    claimed_at  timestamptz NOT NULL DEFAULT now(),
    heartbeat   timestamptz NOT NULL DEFAULT now()
)"""


class FleetError(Exception):
    """The store cannot be reached or has no room; the message says which and what to do."""


@dataclass(frozen=True)
class Lab:
    """One row: a lab some runner claimed."""

    slot: int
    stack: str
    runner: str
    hypervisor: str
    kept: bool
    heartbeat: datetime
    stack_file: str = ""


def store_url(env: dict[str, str] | None = None) -> str | None:
    """The store's URL: LVSLAB_FLEET_DB, else Pulumi's backend when it is PostgreSQL (its `table` parameter is
    Pulumi's, not libpq's: left out); None means one machine, slots in local files."""
    env = os.environ if env is None else env
    url = env.get(STORE_ENV) or env.get("PULUMI_BACKEND_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        return None
    parts = urllib.parse.urlsplit(url)
    query = [(k, v) for k, v in urllib.parse.parse_qsl(parts.query) if k != "table"]
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


def redact(url: str) -> str:
    """The URL as it may be printed: a password in it replaced."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":****@", 1)
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def runner_id(env: dict[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    return env.get(RUNNER_ENV) or f"{socket.gethostname()}:{os.getpid()}"


class Store:
    """The table, through one connection per Store (psycopg's connections are not shared between threads)."""

    def __init__(self, url: str) -> None:
        import psycopg

        self.url = url
        try:
            self.conn = psycopg.connect(url, autocommit=True, connect_timeout=10)
        except psycopg.OperationalError as exc:
            why = " ".join(str(exc).split())[-300:]
            raise FleetError(f"the fleet store {redact(url)} cannot be reached: {why} (set "
                             f"{STORE_ENV} or PULUMI_BACKEND_URL, and PGPASSWORD or ~/.pgpass)") from None
        self.conn.execute(SCHEMA)

    def close(self) -> None:
        self.conn.close()

    def _sql(self, query: str, params: tuple[Any, ...] = ()) -> Any:
        """One statement; a database error becomes one FleetError line (never a traceback)."""
        import psycopg

        try:
            return self.conn.execute(query, params)
        except psycopg.Error as exc:
            raise self._failure(exc) from None

    def _failure(self, exc: Exception) -> FleetError:
        return FleetError(f"the fleet store {redact(self.url)} failed: {' '.join(str(exc).split())[:300]}")

    def claim(self, runner: str, candidates: list[str], name: Any) -> tuple[int, str, str]:
        """(slot, stack, hypervisor) for a new lab: the lowest slot no lab holds, the hypervisor placed by
        every runner's labs (lvslab.hypervisor.place), the stack named by name(slot); recorded at once. The
        claim holds the table's lock (claimers queue, readers do not); the primary key holds even so."""
        import psycopg

        try:
            with self.conn.transaction():
                self.conn.execute(f"LOCK TABLE {TABLE} IN SHARE ROW EXCLUSIVE MODE")
                rows = self.conn.execute(f"SELECT slot, hypervisor FROM {TABLE}").fetchall()
                free = [s for s in SLOTS if s not in {r[0] for r in rows}]
                if not free:
                    raise FleetError(f"all {len(SLOTS)} fleet slots are taken ({TABLE}): destroy kept labs, or "
                                     "`tools/lvslab.py reap` the labs of runners that stopped")
                slot, uri = free[0], place(candidates, [r[1] for r in rows])
                stack = name(slot)
                self.conn.execute(f"INSERT INTO {TABLE} (slot, stack, runner, hypervisor) VALUES (%s, %s, %s, %s)",
                                  (slot, stack, runner, uri))
        except psycopg.Error as exc:
            raise self._failure(exc) from None
        return slot, stack, uri

    def save_stack_file(self, stack: str, text: str) -> None:
        self._sql(f"UPDATE {TABLE} SET stack_file = %s WHERE stack = %s", (text, stack))

    def beat(self, stack: str, runner: str) -> bool:
        """The runner is alive; False if the row is no longer its own (a reaper took it over)."""
        cur = self._sql(f"UPDATE {TABLE} SET heartbeat = now() WHERE stack = %s AND runner = %s", (stack, runner))
        return bool(cur.rowcount == 1)

    def keep(self, stack: str) -> None:
        self._sql(f"UPDATE {TABLE} SET kept = true WHERE stack = %s", (stack,))

    def release(self, stack: str) -> None:
        self._sql(f"DELETE FROM {TABLE} WHERE stack = %s", (stack,))

    def labs(self) -> tuple[datetime, list[Lab]]:
        """The database's clock (heartbeats are compared with it, not with this machine's) and every row."""
        now = self._sql("SELECT now()").fetchone()[0]
        rows = self._sql(f"SELECT slot, stack, runner, hypervisor, kept, heartbeat, stack_file FROM {TABLE} "
                         "ORDER BY slot").fetchall()
        return now, [Lab(*row) for row in rows]

    def take_over(self, stack: str, runner: str, older_than: timedelta) -> bool:
        """Make a stale lab this runner's (one reaper per lab: a second one finds a fresh heartbeat)."""
        cur = self._sql(f"UPDATE {TABLE} SET runner = %s, heartbeat = now() WHERE stack = %s AND NOT kept "
                        "AND heartbeat < now() - %s", (runner, stack, older_than))
        return bool(cur.rowcount == 1)


LOCKED = "the stack is currently locked"
LOCK_HOLDER = re.compile(r"created by (\S+)@(\S+) \(pid (\d+)\) at (\S+)")


def stack_lock_message(stack: str, error: str) -> str | None:
    """pulumi's "currently locked" refusal said for a lab: who holds the lock (pulumi's lock file), which runner
    owns the lab and when it last beat (the fleet store), and the two ways out. None for any other error."""
    if LOCKED not in error:
        return None
    holder = LOCK_HOLDER.search(error)
    who = f" by {holder[1]}@{holder[2]} (pid {holder[3]}, since {holder[4]})" if holder else ""
    owner = ""
    url = store_url()
    if url:
        try:
            store = Store(url)
            now, labs = store.labs()
            store.close()
            lab = next((x for x in labs if x.stack == stack), None)
            if lab:
                owner = (f"; the fleet store has it as runner {lab.runner}'s lab, last heartbeat "
                         f"{(now - lab.heartbeat).total_seconds():.0f} s ago")
        except FleetError:
            pass
    return (f"stack {stack} is being updated by another pulumi run{who}{owner}: nothing was changed. Wait for "
            f"that run to end and try again; if its runner is gone (killed, its machine lost), `tools/lvslab.py "
            f"reap` destroys the lab once its heartbeat is stale, or `pulumi cancel -s {stack}` removes the lock")


def release_kept(stack: str) -> None:
    """A kept ephemeral lab destroyed with `destroy --stack NAME --rm`: its row (and slot) freed in the store."""
    url = store_url()
    if url:
        store = Store(url)
        store.release(stack)
        store.close()


def stale(labs: list[Lab], now: datetime, older_than: timedelta) -> list[Lab]:
    """The labs to reap: not kept (a kept lab outlives its runner on purpose: `destroy --stack` ends it) and
    no heartbeat for longer than older_than."""
    return [lab for lab in labs if not lab.kept and now - lab.heartbeat > older_than]


class Heartbeat(Background):
    """Beats for one lab every `interval` s on its own connection until stop()."""

    def __init__(self, url: str, stack: str, runner: str, interval: float | None = None) -> None:
        self.interval = interval or float(os.environ.get(HEARTBEAT_ENV, HEARTBEAT_S))
        self.join_timeout = self.interval + 5
        self._store = Store(url)
        self._stack, self._runner = stack, runner
        self._init_thread()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self._store.beat(self._stack, self._runner)
            except Exception as exc:  # noqa: BLE001 - a lost beat is said, the next one retries
                print(f"fleet heartbeat of {self._stack} failed: {exc}", flush=True)

    def stop(self) -> None:
        super().stop()
        self._store.close()
