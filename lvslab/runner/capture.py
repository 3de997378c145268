"""Packet capture in a running lab, as netlab's `capture` does: tcpdump on the hypervisor, on the lab's bridge
(every frame between the nodes and this host) or on one node's tap interface (that node's traffic, nothing
needed in the guest). The text is streamed as tcpdump decodes it (with the link-layer header: the DR MAC rewrite
shows) and the packets are kept in a pcap file under the run's artefacts, for tshark, Wireshark or scapy."""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from lvslab.hypervisor import parse_uri
from lvslab.runner.guard import log
from lvslab.runner.stacks import LabMissing, running_lab
from lvslab.stackfile import ROOT

# FILTER=name -> tcpdump expression ({port}: the VIP's port); anything else is taken as an expression itself.
FILTERS = {"vrrp": "ip proto 112", "arp": "arp", "http": "tcp port {port}",
           "lvs": "ip proto 112 or arp or tcp port {port}", "all": ""}
CAPTURES = ROOT / "artefacts" / "captures"


def capture_filter(name: str, port: int) -> str:
    return FILTERS[name].format(port=port) if name in FILTERS else name


def tap_of(domiflist: str, mac: str) -> str | None:
    """The host-side interface (vnetN) of the domain NIC with this MAC, from `virsh domiflist`."""
    for line in domiflist.splitlines():
        fields = line.split()
        if len(fields) >= 5 and fields[4].lower() == mac.lower():
            return fields[0]
    return None


def capture_interface(spec: Any, node: str | None) -> tuple[str, str]:
    """(interface on the hypervisor, what it is called in messages): the bridge, or the node's tap."""
    if not node:
        return spec.bridge, f"bridge {spec.bridge}"
    found = [n for n in spec.nodes if n.name == node]
    if not found:
        raise ValueError(f"no node {node} in this lab (its nodes: {', '.join(n.name for n in spec.nodes)})")
    hv = parse_uri(spec.uri)
    listing = subprocess.run(hv.command(["virsh", "-c", hv.local_uri, "domiflist", found[0].domain]),
                             capture_output=True, text=True)
    tap = tap_of(listing.stdout, found[0].mac)
    if tap is None:
        raise ValueError(f"{node} has no interface with MAC {found[0].mac} (is its domain running? "
                         f"virsh domiflist said: {(listing.stdout + listing.stderr).strip()[-200:]})")
    return tap, f"{node}'s interface {tap}"


def capture(spec: Any, node: str | None, expression: str, seconds: float | None, count: int | None,
            pcap: Path, show: bool = True) -> int:
    """tcpdump on the hypervisor writing pcap to us; the file kept, the text decoded here as it comes. Stops after
    `seconds` or `count` packets or Ctrl-C. The number of bytes of pcap written."""
    iface, what = capture_interface(spec, node)
    hv = parse_uri(spec.uri)
    argv = ["tcpdump", "-i", iface, "-U", "-w", "-", "-s", "0"]
    if count:
        argv += ["-c", str(count)]
    argv += shlex.split(expression)
    if seconds:
        argv = ["timeout", "-s", "INT", str(int(seconds)), *argv]
    pcap.parent.mkdir(parents=True, exist_ok=True)
    log(f"capturing on {what} ({expression or 'everything'}) into {pcap}")
    # its own process group: a Ctrl-C (or the tests' SIGINT) reaches `timeout` and tcpdump together, which then
    # flushes what it captured and ends
    source = subprocess.Popen(hv.command(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    text = subprocess.Popen(["tcpdump", "-n", "-e", "-l", "-r", "-"], stdin=subprocess.PIPE,
                            stdout=None if show else subprocess.DEVNULL, stderr=subprocess.DEVNULL) if show else None
    written = 0
    assert source.stdout is not None
    try:
        with pcap.open("wb") as out:
            while chunk := source.stdout.read1(65536):
                out.write(chunk)
                out.flush()
                written += len(chunk)
                if text is not None and text.stdin is not None:
                    text.stdin.write(chunk)
                    text.stdin.flush()
    except KeyboardInterrupt:
        os.killpg(source.pid, signal.SIGINT)
    finally:
        try:
            source.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(source.pid, signal.SIGKILL)
            source.wait()
        if text is not None and text.stdin is not None:
            text.stdin.close()
            text.wait()
    errors = source.stderr.read().decode(errors="replace") if source.stderr else ""
    if written == 0 and source.returncode not in (0, 124):
        raise RuntimeError(f"tcpdump on {what} failed (exit {source.returncode}): {errors.strip()[-400:]}")
    return written


def cmd_capture(args: argparse.Namespace) -> int:
    try:
        _, spec, _ = running_lab(args.stack)
    except LabMissing as exc:
        log(str(exc))
        return 2
    expression = capture_filter(args.filter, spec.port)
    where = args.node or "bridge"
    pcap = Path(args.pcap) if args.pcap else CAPTURES / f"{args.stack}-{where}-{time.strftime('%Y%m%d-%H%M%S')}.pcap"
    try:
        written = capture(spec, args.node, expression, args.seconds, args.count, pcap)
    except (ValueError, RuntimeError) as exc:
        log(str(exc))
        return 2
    sys.stdout.flush()
    log(f"pcap: {pcap} ({written} bytes): tshark -r {pcap}, or Wireshark")
    return 0
