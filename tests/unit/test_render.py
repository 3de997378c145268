"""Rendered artefacts, checked by the real tools and against golden files of the dev stack."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from lvslab.config import LabConfig, parse_config
from lvslab.render import (
    DomainDisks,
    director_user_data,
    domain_xml,
    keepalived_conf,
    mac_for,
    network_config,
    network_xml,
    nginx_site,
    real_server_user_data,
)

GOLDEN_DIR = Path(__file__).parent / "golden"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIH0VtHs3aV1aQ8x7mBq0p2U6vYpVdJt3b6yJ0a8bW9c0 lvs-lab-test"


def configs(dev_raw: dict[str, Any]) -> list[LabConfig]:
    """The dev stack plus variants that exercise every template branch."""
    variants = [dev_raw]
    tcp = yaml.safe_load(yaml.safe_dump(dev_raw))
    tcp["healthCheck"] = {"type": "TCP_CHECK", "connectTimeout": 3}
    tcp["lvs"] = {"lbAlgo": "wrr", "persistenceTimeout": 30}
    tcp["realServers"] = [{"name": f"web{i}", "address": f"10.77.0.{20 + i}", "weight": i} for i in range(1, 6)]
    tcp["vrrp"] = {"version": 3, "advertInt": 0.5, "preempt": False, "virtualRouterId": 7}
    tcp["port"] = 8080
    variants.append(tcp)
    faulty = yaml.safe_load(yaml.safe_dump(dev_raw))
    faulty["faults"] = ["rs-no-arp-sysctls", "rs-no-vip", "nginx-down-all", "keepalived-down-all",
                        "backup-wrong-vrid"]
    variants.append(faulty)
    return [parse_config(v, "dev") for v in variants]


def test_keepalived_config_test_passes(dev_raw: dict[str, Any], tmp_path: Path) -> None:
    if not shutil.which("keepalived"):
        pytest.fail("keepalived not installed: run tools/host.sh packages")
    for cfg in configs(dev_raw):
        for director in cfg.directors:
            conf = tmp_path / f"{director.name}.conf"
            conf.write_text(keepalived_conf(cfg, director, "s3cret"))
            proc = subprocess.run(["keepalived", "--config-test", "-f", str(conf)], capture_output=True, text=True)
            assert proc.returncode == 0, proc.stderr + conf.read_text()


def test_keepalived_config_test_catches_a_broken_config(tmp_path: Path) -> None:
    """The tool really checks: a misspelt keyword fails."""
    conf = tmp_path / "bad.conf"
    conf.write_text("vrrp_instance VI_1 {\n  state MASTER\n  interface eth0\n  virtual_router_id 300\n}\n")
    proc = subprocess.run(["keepalived", "--config-test", "-f", str(conf)], capture_output=True, text=True)
    assert proc.returncode != 0


def test_user_data_passes_cloud_init_schema(dev_raw: dict[str, Any], tmp_path: Path) -> None:
    for cfg in configs(dev_raw):
        docs = [director_user_data(cfg, d, KEY, "s3cret") for d in cfg.directors]
        docs += [real_server_user_data(cfg, s, KEY) for s in cfg.real_servers]
        for i, doc in enumerate(docs):
            path = tmp_path / f"ud{i}.yaml"
            path.write_text(doc)
            proc = subprocess.run(["cloud-init", "schema", "-c", str(path)], capture_output=True, text=True)
            assert proc.returncode == 0 and "Valid cloud-config" in proc.stdout, proc.stdout + proc.stderr + doc


def test_network_config_is_v2_static(dev_raw: dict[str, Any]) -> None:
    cfg = parse_config(dev_raw, "dev")
    doc = yaml.safe_load(network_config(cfg, cfg.real_servers[0]))
    eth0 = doc["ethernets"]["eth0"]
    assert doc["version"] == 2 and eth0["addresses"] == ["10.77.0.21/24"]
    assert eth0["match"]["macaddress"] == mac_for("dev", "web1") and "gateway4" not in eth0


def test_nginx_site_passes_nginx_t(dev_raw: dict[str, Any]) -> None:
    if not shutil.which("nginx"):
        pytest.fail("nginx not installed: run tools/host.sh packages")
    for cfg in configs(dev_raw):
        site = nginx_site(cfg, cfg.real_servers[0])
        with tempfile.TemporaryDirectory() as tmp:
            main = Path(tmp, "nginx.conf")
            main.write_text(f"pid {tmp}/nginx.pid;\nerror_log {tmp}/error.log;\nevents {{}}\n"
                            f"http {{\naccess_log off;\n{site}\n}}\n")
            proc = subprocess.run(["nginx", "-t", "-q", "-c", str(main), "-p", tmp], capture_output=True, text=True)
            assert proc.returncode == 0, proc.stderr + site


def test_real_server_user_data_content(dev_raw: dict[str, Any]) -> None:
    cfg = parse_config(dev_raw, "dev")
    doc = yaml.safe_load(real_server_user_data(cfg, cfg.real_servers[0], KEY))
    files = {f["path"]: f["content"] for f in doc["write_files"]}
    sysctl = files["/etc/sysctl.d/90-lvslab-arp.conf"]
    for iface in ("all", "default", "lo", "eth0"):
        assert f"net.ipv4.conf.{iface}.arp_ignore = 1" in sysctl
        assert f"net.ipv4.conf.{iface}.arp_announce = 2" in sysctl
    assert "ip addr replace 10.77.0.100/32 dev lo" in files["/etc/systemd/system/lvslab-vip.service"]
    assert doc["packages"] == ["nginx"] and doc["ssh_authorized_keys"] == [KEY]
    assert doc["apt"]["sources_list"].strip() == "deb [trusted=yes] file:/srv/lvslab-repo ./"


def test_mirror_profile_has_no_local_repository(dev_raw: dict[str, Any]) -> None:
    dev_raw["packageSource"] = "mirror"
    cfg = parse_config(dev_raw, "dev")
    doc = yaml.safe_load(director_user_data(cfg, cfg.directors[0], KEY, "s3cret"))
    assert "apt" not in doc and "bootcmd" not in doc and doc["packages"] == ["keepalived", "ipvsadm"]


def test_faults_change_exactly_what_they_say(dev_raw: dict[str, Any]) -> None:
    dev_raw["faults"] = ["backup-wrong-vrid"]
    cfg = parse_config(dev_raw, "dev")
    assert "virtual_router_id 61" in keepalived_conf(cfg, cfg.master, "x")
    assert "virtual_router_id 62" in keepalived_conf(cfg, cfg.backup, "x")
    lines = keepalived_conf(cfg, cfg.master, "x").splitlines()
    assert not any(line.strip().startswith("vrrp_strict") for line in lines)


def test_domain_xml(dev_raw: dict[str, Any]) -> None:
    cfg = parse_config(dev_raw, "dev")
    disks = DomainDisks("/p/d.qcow2", "/p/seed.iso", "/p/repo.iso", "/p/vmlinuz", "/p/initrd.img")
    xml = domain_xml(cfg, cfg.directors[0], "director", "qemu", disks, "/log/director1.log")
    assert "<domain type='qemu'>" in xml and "<tb-cache unit='MiB'>256</tb-cache>" in xml
    assert "<name>lvs-lab-dev-director1</name>" in xml and f"<mac address='{mac_for('dev', 'director1')}'/>" in xml
    kvm = domain_xml(cfg, cfg.directors[0], "director", "kvm", disks, "/log/director1.log")
    assert "<tcg>" not in kvm and "host-passthrough" in kvm


@pytest.mark.parametrize("name", ["keepalived-director1.conf", "keepalived-director2.conf",
                                  "user-data-director1.yaml", "user-data-web1.yaml", "network.xml"])
def test_golden_files(dev_raw: dict[str, Any], name: str) -> None:
    """The dev stack's rendered configs; regenerate with LVSLAB_UPDATE_GOLDEN=1 after an intended change."""
    cfg = parse_config(dev_raw, "dev")
    rendered = {
        "keepalived-director1.conf": keepalived_conf(cfg, cfg.directors[0], "s3cret"),
        "keepalived-director2.conf": keepalived_conf(cfg, cfg.directors[1], "s3cret"),
        "user-data-director1.yaml": director_user_data(cfg, cfg.directors[0], KEY, "s3cret"),
        "user-data-web1.yaml": real_server_user_data(cfg, cfg.real_servers[0], KEY),
        "network.xml": network_xml(cfg),
    }[name]
    golden = GOLDEN_DIR / name
    if os.environ.get("LVSLAB_UPDATE_GOLDEN"):
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(rendered)
    assert rendered == golden.read_text()
