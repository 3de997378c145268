"""Signals during a pulumi operation: SIGINT/SIGTERM stop the running pulumi (our child, by PID) gracefully
and let the caller clean up; a second signal (or the grace period) stops it for good."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def log(msg: str) -> None:
    print(f"[lvs-lab {time.strftime('%H:%M:%S')}] {msg}", flush=True)


class Interrupted(Exception):
    pass


class SignalGuard:
    """SIGINT/SIGTERM: stop the running pulumi (our child, by PID) gracefully, then let the caller clean up."""

    def __init__(self) -> None:
        self.fired = threading.Event()
        self._second: threading.Timer | None = None

    def __enter__(self) -> SignalGuard:
        self._old = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *_: object) -> None:
        # The guarded operation is over: its second interrupt must not hit the cleanup's own pulumi calls
        # (seen in CI: `pulumi stack rm` after the destroy killed by it, exit -2, no report written).
        if self._second is not None:
            self._second.cancel()
        for s, h in self._old.items():
            signal.signal(s, h)

    def _handle(self, signum: int, _frame: object) -> None:
        if self.fired.is_set():
            return
        self.fired.set()
        log(f"signal {signum}: cancelling the running operation, then cleaning up")
        self.interrupt_children()
        # pulumi finishes in-flight steps on the first SIGINT; a long check would delay the cleanup, so a
        # second SIGINT after a grace period stops it (checks change no infrastructure).
        self._second = threading.Timer(self.grace_seconds, self.interrupt_children)
        self._second.daemon = True
        self._second.start()

    grace_seconds = 20.0

    @staticmethod
    def interrupt_children() -> None:
        for pid in child_pids(os.getpid()):
            try:
                os.kill(pid, signal.SIGINT)
            except ProcessLookupError:
                pass


def child_pids(parent: int) -> list[int]:
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == parent:
            pids.append(int(stat.parent.name))
    return pids


def run_guarded(guard: SignalGuard, fn: Callable[[], Any]) -> Any:
    """Run fn in a thread so signals are handled in the main thread while pulumi runs."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(0.2)
    if "error" in box:
        raise box["error"]
    if guard.fired.is_set():
        raise Interrupted("interrupted by signal")
    return box.get("value")
