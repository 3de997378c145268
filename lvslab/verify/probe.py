"""Client-side probes used by the verification: SSH into nodes, fresh HTTP requests to the VIP, ARP
who-has on the lab bridge, and a background poller for failover timing. They run where Pulumi runs
(the hypervisor host, on the lab bridge).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import queue
import re
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Self

SSH_OPTIONS = [
    "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
    "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=10", "-o", "ServerAliveInterval=5",
]


class SshKey:
    """The private key in a 0600 file, and one shared SSH connection per node (OpenSSH ControlMaster), for
    the lifetime of the object. Why shared: a new connection costs an emulated guest 1-2 s of CPU (sshd's
    re-exec, key exchange), and a step opens up to a dozen per node. close() ends the masters it started
    and removes the key; ControlPersist bounds a master's life should close() never run."""

    PERSIST_S = 600

    def __init__(self, private_key: str, jump: list[str] | None = None) -> None:
        """jump: OpenSSH options that reach the nodes through their remote hypervisor (lvslab.hypervisor)."""
        self.jump = jump or []
        self.control_dir = tempfile.mkdtemp(prefix="lvslab-ssh-")
        self.path = os.path.join(self.control_dir, "key")
        with os.fdopen(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as f:
            f.write(private_key if private_key.endswith("\n") else private_key + "\n")

    def options(self) -> list[str]:
        return ["-i", self.path, "-o", "ControlMaster=auto", "-o", f"ControlPath={self.control_dir}/%C",
                "-o", f"ControlPersist={self.PERSIST_S}", *self.jump]

    def masters(self) -> list[str]:
        """Control sockets of the masters still running."""
        if not os.path.isdir(self.control_dir):
            return []
        return [os.path.join(self.control_dir, n) for n in os.listdir(self.control_dir) if n != "key"]

    def close(self) -> None:
        for sock in self.masters():
            with contextlib.suppress(subprocess.TimeoutExpired):
                subprocess.run(["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "lvslab-node"],
                               capture_output=True, timeout=10)
        shutil.rmtree(self.control_dir, ignore_errors=True)

    def __enter__(self) -> SshKey:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def _ssh_argv(key: SshKey, address: str, script: str) -> list[str]:
    return ["ssh", *SSH_OPTIONS, *key.options(), f"root@{address}", script]


def ssh(key: SshKey, address: str, script: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run a shell script as root on a node."""
    return subprocess.run(_ssh_argv(key, address, script), capture_output=True, text=True, timeout=timeout)


def ssh_watch(key: SshKey, address: str, script: str, action: Callable[[], None],
              timeout: float) -> tuple[float | None, float, str]:
    """Run a watcher script on a node that prints 'watching' once it runs and 'done' when what it waits
    for happened; start `action` only after 'watching', and time from the moment the action returned, so
    neither SSH set-up (seconds on starved guests, for the watcher and for the action's own SSH) is part of
    the measurement. Returns (seconds from the action's end to 'done', or None; the action's own seconds;
    output). A 'done' already waiting when the action returns counts as 0 s."""
    proc = subprocess.Popen(_ssh_argv(key, address, script),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    output: list[str] = []
    deadline = time.monotonic() + timeout
    acted: float | None = None
    action_s = 0.0
    try:
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                break
            output.append(line)
            if line.strip() == "watching" and acted is None:
                begun = time.monotonic()
                action()
                acted = time.monotonic()
                action_s = acted - begun
            elif line.strip() == "done" and acted is not None:
                return max(0.0, time.monotonic() - acted), action_s, "".join(output)
        return None, action_s, "".join(output)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


@dataclass
class HttpResult:
    ok: bool
    server: str | None
    error: str | None
    seconds: float
    length: int = 0  # body bytes received


def http_get(address: str, port: int, timeout: float = 2.0, path: str = "/",
             source_port: int | None = None, source_address: str = "",
             headers: dict[str, str] | None = None) -> HttpResult:
    """One request on a fresh TCP connection; the body names the real server. A fixed source port lets
    the caller avoid ports that still have an entry in the director's IPVS connection table (a reused
    entry is not scheduled anew, so it would skew the round-robin counts)."""
    t0 = time.monotonic()
    source = (source_address, source_port or 0) if source_port or source_address else None
    conn = http.client.HTTPConnection(address, port, timeout=timeout, source_address=source)
    try:
        conn.request("GET", path, headers={"Connection": "close", **(headers or {})})
        resp = conn.getresponse()
        raw = resp.read()
        if resp.status not in (200, 206):  # 206: a Range request
            return HttpResult(False, None, f"HTTP {resp.status}", time.monotonic() - t0, len(raw))
        server = resp.getheader("X-Real-Server") or raw[:200].decode(errors="replace").strip()
        return HttpResult(True, server, None, time.monotonic() - t0, len(raw))
    except (OSError, http.client.HTTPException) as exc:
        return HttpResult(False, None, f"{type(exc).__name__}: {exc}", time.monotonic() - t0)
    finally:
        conn.close()


def _iface_mac(iface: str) -> bytes:
    with open(f"/sys/class/net/{iface}/address") as f:
        return bytes.fromhex(f.read().strip().replace(":", ""))


def arp_responders(iface: str, target_ip: str, source_ip: str, wait: float = 1.5, tries: int = 3) -> set[str]:
    """MAC addresses that answer an ARP who-has for target_ip on iface (LVS-DR: only the director may)."""
    src_mac = _iface_mac(iface)
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806))
    sock.bind((iface, 0))
    sock.settimeout(0.1)
    target, source = socket.inet_aton(target_ip), socket.inet_aton(source_ip)
    request = (b"\xff" * 6 + src_mac + b"\x08\x06"
               + struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + src_mac + source + b"\x00" * 6 + target)
    found: set[str] = set()
    try:
        for _ in range(tries):
            sock.send(request)
            deadline = time.monotonic() + wait / tries
            while time.monotonic() < deadline:
                try:
                    frame = sock.recv(128)
                except TimeoutError:
                    continue
                op = struct.unpack("!H", frame[20:22])[0]
                if op == 2 and frame[28:32] == target and frame[38:42] == source:
                    found.add(":".join(f"{b:02x}" for b in frame[22:28]))
    finally:
        sock.close()
    return found


VRRP_GROUP = "224.0.0.18"  # VRRP's multicast group (IP protocol 112)


def nft_table_name(bridge: str) -> str:
    """The nftables table lvs-lab uses on one bridge (nft identifiers: letters, digits, '_')."""
    return "lvslab_" + re.sub(r"[^A-Za-z0-9_]", "_", bridge)


def multicast_vrrp_ruleset(bridge: str, director_macs: list[str]) -> str:
    """A bridge-family table that drops the directors' multicast VRRP as it crosses the bridge (as a cloud
    network does) and counts their unicast VRRP. Matched by the directors' MACs, so other labs in the same
    namespace are untouched (this kernel's bridge family has no `meta ibrname`)."""
    macs = "{ " + ", ".join(director_macs) + " }"
    return (f"table bridge {nft_table_name(bridge)} {{\n"
            "    chain forward {\n"
            "        type filter hook forward priority 0; policy accept;\n"
            f"        ether saddr {macs} ip daddr {VRRP_GROUP} ip protocol vrrp counter drop "
            'comment "multicast-vrrp"\n'
            f'        ether saddr {macs} ip protocol vrrp counter comment "unicast-vrrp"\n'
            "    }\n"
            "}\n")


def parse_nft_counters(listing: str) -> dict[str, int]:
    """`nft -j list table ...` -> {rule comment: packets counted}."""
    counters = {}
    for item in json.loads(listing).get("nftables", []):
        rule = item.get("rule")
        if not rule or "comment" not in rule:
            continue
        for expr in rule.get("expr", []):
            if "counter" in expr:
                counters[rule["comment"]] = int(expr["counter"]["packets"])
    return counters


@contextlib.contextmanager
def multicast_vrrp_dropped(bridge: str, director_macs: list[str]) -> Iterator[Callable[[], dict[str, int]]]:
    """While inside: multicast VRRP does not cross the bridge. Yields a reader of the rule counters; the
    table is removed on the way out (also when the body fails)."""
    table = nft_table_name(bridge)
    subprocess.run(["nft", "delete", "table", "bridge", table], capture_output=True)  # a stale one
    subprocess.run(["nft", "-f", "-"], input=multicast_vrrp_ruleset(bridge, director_macs), text=True, check=True,
                   capture_output=True)

    def counters() -> dict[str, int]:
        out = subprocess.run(["nft", "-j", "list", "table", "bridge", table], capture_output=True, text=True,
                             check=True).stdout
        return parse_nft_counters(out)
    try:
        yield counters
    finally:
        subprocess.run(["nft", "delete", "table", "bridge", table], capture_output=True)


def neighbour_mac(address: str) -> str | None:
    """The MAC the host currently uses for address (who holds the VIP, as the client sees it)."""
    out = subprocess.run(["ip", "-4", "neigh", "show", address], capture_output=True, text=True).stdout
    parts = out.split()
    return parts[parts.index("lladdr") + 1] if "lladdr" in parts else None


@dataclass
class PollEvent:
    t: float
    ok: bool
    server: str | None
    mac: str | None


POLL_INTERVAL_S = 0.1  # the Poller starts a fresh request this often


class Background:
    """A daemon thread running `_run` until stop(): the poller, the download and the boot progress share it.
    stop() waits for the thread (at most `join_timeout` s; None: until it ends)."""

    join_timeout: float | None = None

    def _init_thread(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        raise NotImplementedError

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop (again: harmless) and wait for the thread."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(self.join_timeout)


@dataclass
class Poller(Background):
    """Polls the VIP every `interval` seconds with fresh connections in a thread; records the timeline."""

    address: str
    port: int
    interval: float = POLL_INTERVAL_S
    timeout: float = 0.3
    events: list[PollEvent] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._init_thread()

    def _run(self) -> None:
        while not self._stop.is_set():
            t = time.monotonic()
            result = http_get(self.address, self.port, self.timeout)
            self.events.append(PollEvent(t, result.ok, result.server, neighbour_mac(self.address)))
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - t)))

    def wait_for(self, predicate: object, since: float, timeout: float) -> PollEvent | None:
        """First event after `since` satisfying predicate, waiting up to timeout."""
        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline:
            events = self.events[seen:]
            seen += len(events)
            for ev in events:
                if ev.t >= since and predicate(ev):  # type: ignore[operator]
                    return ev
            time.sleep(0.05)
        return None


@dataclass
class Download(Background):
    """One long HTTP download through the VIP, read at `rate` bytes/s into a small receive buffer, so the
    real server can only send as fast as the client reads (a long-lived, throttled connection). Records
    (time, bytes so far) in a thread; `error` says how the connection ended if it broke."""

    address: str
    port: int
    path: str
    rate: int = 256 * 1024
    source_port: int | None = None
    received: int = 0
    server: str | None = None
    length: int | None = None
    error: str | None = None
    done: bool = False
    timeline: list[tuple[float, int]] = field(default_factory=list)

    join_timeout = 60

    def __post_init__(self) -> None:
        self._init_thread()

    def _run(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            # A small window: the server's sending follows our reading (and the connection stays busy).
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
            if self.source_port:
                sock.bind(("", self.source_port))
            sock.settimeout(30)
            sock.connect((self.address, self.port))
            sock.sendall(f"GET {self.path} HTTP/1.1\r\nHost: {self.address}\r\nConnection: close\r\n\r\n".encode())
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = sock.recv(4096)
                if not chunk:
                    raise ConnectionError("closed before the response header")
                head += chunk
            header, _, body = head.partition(b"\r\n\r\n")
            for line in header.decode(errors="replace").split("\r\n")[1:]:
                name, _, value = line.partition(":")
                if name.lower() == "x-real-server":
                    self.server = value.strip()
                elif name.lower() == "content-length":
                    self.length = int(value.strip())
            self.received = len(body)
            t0 = time.monotonic()
            while not self._stop.is_set() and (self.length is None or self.received < self.length):
                chunk = sock.recv(4096)
                if not chunk:
                    break
                self.received += len(chunk)
                now = time.monotonic()
                self.timeline.append((now, self.received))
                ahead = self.received / self.rate - (now - t0)
                if ahead > 0:
                    time.sleep(ahead)
            self.done = self.length is not None and self.received >= self.length
        except (OSError, ValueError) as exc:
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            sock.close()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def bytes_at(self, t: float) -> int:
        """Bytes received by time t (monotonic)."""
        return max((b for when, b in self.timeline if when <= t), default=0)
