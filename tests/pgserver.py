"""A throwaway PostgreSQL for the tests (Debian's postgresql packages): its own data directory and port, run
as the `postgres` user (the server refuses root), inside a network namespace when given one, and stopped by
its PID. Unit tests listen on a Unix socket only; the e2e fleet listens on 127.0.0.1 inside the labs'
namespace, where the runners reach it like a team's database."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

USER, DATABASE = "lvslab", "lvslab"


def bin_dir() -> Path:
    """The newest installed server's programs (/usr/lib/postgresql/<major>/bin)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(p.split("/")[4]))
    if not found:
        raise RuntimeError("PostgreSQL's server is not installed: `make packages` installs Debian's postgresql")
    return Path(found[-1]).parent


@dataclass
class PgServer:
    """A running server: how to reach it (libpq keywords / a URL) and the password of its one role."""

    socket_dir: Path
    port: int
    password: str
    tcp: bool

    @property
    def url(self) -> str:
        """postgres:// as Pulumi's DIY backend and psycopg both read it (no password: PGPASSWORD has it)."""
        if self.tcp:
            return f"postgres://{USER}@127.0.0.1:{self.port}/{DATABASE}?sslmode=disable"
        return f"postgres://{USER}@/{DATABASE}?host={self.socket_dir}&port={self.port}&sslmode=disable"

    @property
    def env(self) -> dict[str, str]:
        return {"PGPASSWORD": self.password}


def _as_postgres(argv: list[str], netns: str | None = None) -> list[str]:
    """setpriv execs (no fork), so the PID Popen returns is the server's own."""
    drop = ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--"]
    return (["ip", "netns", "exec", netns] if netns else []) + drop + argv


@contextmanager
def postgres(port: int, netns: str | None = None, tcp: bool = False) -> Iterator[PgServer]:
    """initdb (scram-sha-256, one role), start, wait until it accepts connections, yield; SIGINT (fast
    shutdown) by PID and the directory removed at the end."""
    pg = bin_dir()
    work = Path(tempfile.mkdtemp(prefix="lvslab-pg-"))
    shutil.chown(work, "postgres", "postgres")
    password = os.urandom(12).hex()
    (work / "pw").write_text(password)
    shutil.chown(work / "pw", "postgres", "postgres")
    subprocess.run(_as_postgres([str(pg / "initdb"), "-D", str(work / "data"), "-U", USER, "--auth=scram-sha-256",
                                 f"--pwfile={work / 'pw'}", "--no-sync", "-E", "UTF8", "--locale=C"]),
                   check=True, capture_output=True)
    listen = "127.0.0.1" if tcp else ""
    server = subprocess.Popen(
        _as_postgres([str(pg / "postgres"), "-D", str(work / "data"), "-p", str(port), "-k", str(work),
                      "-c", f"listen_addresses={listen}", "-c", "fsync=off", "-c", "max_connections=200"], netns),
        stdout=(work / "server.log").open("wb"), stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while subprocess.run([str(pg / "pg_isready"), "-q", "-h", str(work), "-p", str(port)]).returncode != 0:
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL did not start: {(work / 'server.log').read_text()[-2000:]}")
            time.sleep(0.2)
        subprocess.run(_as_postgres([str(pg / "createdb"), "-h", str(work), "-p", str(port), "-U", USER, DATABASE]),
                       check=True, capture_output=True, env={**os.environ, "PGPASSWORD": password})
        yield PgServer(work, port, password, tcp)
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        shutil.rmtree(work, ignore_errors=True)
