"""The XSLT transforms of pulumi-libvirt's Domain and Network XML (xslt/), applied by the real xsltproc to
the XML the provider writes."""

from __future__ import annotations

import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from lvslab.config import parse_config
from lvslab.model import derive, mac_for
from lvslab.render import (
    domain_xslt,
    network_xslt,
)
from tests.unit.test_render import nat_raw

PROVIDER_DOMAIN_XML = """<domain type="qemu">
  <name>lvs-lab-dev-director1</name>
  <features><pae/><acpi/><apic/></features>
  <devices>
    <disk type="volume" device="disk">
      <driver name="qemu" type="qcow2"/>
      <source pool="lvs-lab-dev-pool" volume="lvs-lab-dev-director1.qcow2"/>
      <target dev="vda" bus="virtio"/>
    </disk>
    <disk type="volume" device="disk">
      <driver name="qemu" type="raw"/>
      <source pool="lvs-lab-dev-pool" volume="lvs-lab-dev-repo.iso"/>
      <target dev="vdb" bus="virtio"/>
    </disk>
    <disk type="file" device="cdrom">
      <driver name="qemu" type="raw"/>
      <source file="/pool/lvs-lab-dev-director1-seed.iso"/>
      <target dev="hdd" bus="ide"/>
    </disk>
    <console type="pty"><target type="serial" port="0"/></console>
    <channel type="unix"><target type="virtio" name="org.qemu.guest_agent.0"/></channel>
    <graphics type="spice" autoport="yes"/>
    <video><model type="cirrus"/></video>
    <rng model="virtio"><backend model="random">/dev/random</backend></rng>
  </devices>
</domain>
"""

PROVIDER_NETWORK_XML = """<network>
  <name>lvs-lab-dev-net</name>
  <forward mode="open"></forward>
  <bridge name="lvsdev0" stp="on"></bridge>
  <ip address="10.77.0.1" family="ipv4" prefix="24"><dhcp><range start="10.77.0.2" end="10.77.0.254"/></dhcp></ip>
</network>
"""


def xsltproc(xslt: str, xml: str, tmp_path: Path) -> ET.Element:
    if not shutil.which("xsltproc"):
        pytest.fail("xsltproc not installed (pulumi-libvirt needs it): run tools/host.sh packages")
    (tmp_path / "t.xsl").write_text(xslt)
    (tmp_path / "in.xml").write_text(xml)
    proc = subprocess.run(["xsltproc", str(tmp_path / "t.xsl"), str(tmp_path / "in.xml")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return ET.fromstring(proc.stdout)


@pytest.mark.tools
@pytest.mark.parametrize("domain_type", ["qemu", "kvm"])
def test_domain_xslt(dev_raw: dict[str, Any], tmp_path: Path, domain_type: str) -> None:
    facts = derive(parse_config(dev_raw, "dev"), log_root="/log")
    node = facts.directors[0]
    out = xsltproc(domain_xslt(facts, node, domain_type, facts.volume("repo.iso")), PROVIDER_DOMAIN_XML, tmp_path)
    devices = out.find("devices")
    assert devices is not None
    tb = out.find("features/tcg/tb-cache")
    if domain_type == "qemu":
        assert tb is not None and tb.text == "256" and tb.get("unit") == "MiB"
    else:
        assert tb is None
    assert out.find("features/acpi") is not None  # untouched features stay
    disks = {d.find("source").get("volume") or d.find("source").get("file"): d for d in devices.findall("disk")}
    assert disks[node.disk_volume].find("driver").get("cache") == "unsafe"
    assert disks["lvs-lab-dev-repo.iso"].find("readonly") is not None
    assert disks[node.disk_volume].find("readonly") is None
    assert disks["/pool/lvs-lab-dev-director1-seed.iso"].find("driver").get("cache") is None
    log = devices.find("console/log")
    assert log is not None and log.get("file") == "/log/lvs-lab-dev/director1.log" and log.get("append") == "off"
    assert [e.tag for e in devices if e.tag in ("graphics", "video", "channel")] == []
    assert [r.find("backend").text for r in devices.findall("rng")] == ["/dev/urandom"]
    assert [m.get("model") for m in devices.findall("memballoon")] == ["none"]


@pytest.mark.tools
def test_domain_xslt_without_repository(dev_raw: dict[str, Any], tmp_path: Path) -> None:
    facts = derive(parse_config(dev_raw, "dev"))
    out = xsltproc(domain_xslt(facts, facts.directors[0], "qemu", None), PROVIDER_DOMAIN_XML, tmp_path)
    assert all(d.find("readonly") is None for d in out.findall("devices/disk"))


@pytest.mark.tools
def test_network_xslt(dev_raw: dict[str, Any], tmp_path: Path) -> None:
    dev_raw["network"]["hostAddress"] = "10.77.0.5"
    facts = derive(parse_config(dev_raw, "dev"))
    out = xsltproc(network_xslt(facts), PROVIDER_NETWORK_XML, tmp_path)
    bridge = out.find("bridge")
    assert bridge is not None and bridge.attrib == {"name": "lvsdev0", "stp": "off", "delay": "0"}
    assert out.find("mac").get("address") == mac_for("dev", "bridge") == facts.bridge_mac
    ip = out.find("ip")
    assert ip.get("address") == "10.77.0.5" and ip.get("prefix") == "24" and ip.find("dhcp") is None
    assert [d.get("enable") for d in out.findall("dns")] == ["no"]
    assert out.find("forward").get("mode") == "open"


@pytest.mark.tools
def test_network_xslt_nat_puts_the_client_in_the_second_subnet(dev_raw: dict[str, Any], tmp_path: Path) -> None:
    """NAT: the provider declares both subnets (host on .1 of each); the host keeps its address in the
    lab's subnet and the client address goes into the second."""
    raw = nat_raw(dev_raw)
    raw["network"].update(hostAddress="10.77.0.5", clientAddress="10.177.0.7")
    facts = derive(parse_config(raw, "dev"))
    two = PROVIDER_NETWORK_XML.replace("</network>", '<ip address="10.177.0.1" family="ipv4" prefix="24"/></network>')
    out = xsltproc(network_xslt(facts), two, tmp_path)
    assert [(ip.get("address"), ip.get("prefix")) for ip in out.findall("ip")] == [("10.77.0.5", "24"),
                                                                                  ("10.177.0.7", "24")]
