"""make capture's parts: the named filters, the node's tap from `virsh domiflist`, and the stream itself (a
stand-in tcpdump on PATH writes a real pcap, made with scapy, which must arrive whole in the file and in the
decoder)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from lvslab.runner import capture as cap

DOMIFLIST = """ Interface   Type      Source     Model    MAC
------------------------------------------------------------
 vnet3       network   lvs-dev    virtio   52:54:00:aa:bb:01
"""


def test_filters_and_taps() -> None:
    assert cap.capture_filter("vrrp", 80) == "ip proto 112"
    assert cap.capture_filter("http", 8080) == "tcp port 8080"
    assert cap.capture_filter("icmp or arp", 80) == "icmp or arp"  # an expression of the user's
    assert cap.tap_of(DOMIFLIST, "52:54:00:AA:BB:01") == "vnet3"
    assert cap.tap_of(DOMIFLIST, "52:54:00:aa:bb:02") is None
    spec = SimpleNamespace(bridge="lvsdev0", nodes=[], uri="qemu:///system")
    assert cap.capture_interface(spec, None) == ("lvsdev0", "bridge lvsdev0")
    with pytest.raises(ValueError, match="no node web9 in this lab"):
        cap.capture_interface(spec, "web9")


def test_the_stream_reaches_the_file_and_the_decoder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from scapy.all import ARP, Ether, rdpcap, wrpcap

    frames = [Ether(src="52:54:00:00:00:02", dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, psrc="10.0.0.100",
                                                                          pdst="10.0.0.100")] * 3
    wrpcap(str(tmp_path / "frames.pcap"), frames)
    size = (tmp_path / "frames.pcap").stat().st_size
    fake = tmp_path / "bin" / "tcpdump"
    fake.parent.mkdir()
    # -w -: the capture (the pcap on stdout); -r -: the decoder (counts what it got, into a file we can read)
    fake.write_text(f'#!/bin/sh\ncase "$*" in *"-r -"*) wc -c > {tmp_path}/decoded ;; '
                    f'*) echo "$*" > {tmp_path}/argv; cat {tmp_path}/frames.pcap ;; esac\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:/usr/bin:/bin")
    spec = SimpleNamespace(bridge="lvsdev0", nodes=[], uri="qemu:///system")
    pcap = tmp_path / "out" / "run.pcap"
    written = cap.capture(spec, None, "arp", None, 3, pcap)
    assert written == size == pcap.stat().st_size
    assert int((tmp_path / "decoded").read_text()) == written
    assert (tmp_path / "argv").read_text().split() == ["-i", "lvsdev0", "-U", "-w", "-", "-s", "0", "-c", "3", "arp"]
    assert [p[ARP].psrc for p in rdpcap(str(pcap))] == ["10.0.0.100"] * 3
