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

from lvslab.commands import keepalived_push_script
from lvslab.config import LabConfig, parse_config
from lvslab.model import derive, mac_for
from lvslab.render import (
    director_user_data,
    keepalived_conf,
    network_config,
    nginx_site,
    real_server_user_data,
    sorry_site,
)

GOLDEN_DIR = Path(__file__).parent / "golden"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIH0VtHs3aV1aQ8x7mBq0p2U6vYpVdJt3b6yJ0a8bW9c0 lvs-lab-test"


def config_test_accepts_only(tmp_path: Path, conf: str, broken: str) -> None:
    """keepalived --config-test accepts the rendered config and refuses the broken variant (so the tool
    really checks what the test is about)."""
    assert broken != conf
    path = tmp_path / "k.conf"
    for text, ok in ((conf, True), (broken, False)):
        path.write_text(text)
        proc = subprocess.run(["keepalived", "--config-test", "-f", str(path)], capture_output=True, text=True)
        assert (proc.returncode == 0) == ok, proc.stdout + proc.stderr


def configs(dev_raw: dict[str, Any]) -> list[LabConfig]:
    """The dev stack plus variants that exercise every template branch."""
    variants = [dev_raw]
    tcp = yaml.safe_load(yaml.safe_dump(dev_raw))
    tcp["healthCheck"] = {"type": "TCP_CHECK", "connectTimeout": 3}
    tcp["lvs"] = {"lbAlgo": "wrr", "persistenceTimeout": 30, "sorryServer": True, "syncDaemon": True,
                  "timeouts": {"tcp": 600, "tcpFin": 5, "udp": 60}}
    tcp["realServers"] = [{"name": f"web{i}", "address": f"10.77.0.{20 + i}", "weight": i} for i in range(1, 6)]
    tcp["vrrp"] = {"version": 3, "advertInt": 0.5, "preempt": False, "virtualRouterId": 7}
    tcp["port"] = 8080
    variants.append(tcp)
    faulty = yaml.safe_load(yaml.safe_dump(dev_raw))
    faulty["faults"] = ["rs-no-arp-sysctls", "rs-no-vip", "nginx-down-all", "keepalived-down-all",
                        "backup-wrong-vrid"]
    variants.append(faulty)
    health = yaml.safe_load(yaml.safe_dump(dev_raw))
    health["healthCheck"] = {"type": "HTTP_GET", "path": "/healthz"}
    health["directors"][0]["state"] = "BACKUP"  # keepalived's non-preemptive setup (seed 002)
    health["vrrp"]["preempt"] = False
    variants.append(health)
    variants.append(nat_raw(dev_raw))
    variants.append(tun_raw(dev_raw))
    return [parse_config(v, "dev") for v in variants]


def tun_raw(dev_raw: dict[str, Any]) -> dict[str, Any]:
    tun = yaml.safe_load(yaml.safe_dump(dev_raw))
    tun["lvs"] = {"lbAlgo": "rr", "lbKind": "TUN"}
    return tun


def test_tun_real_server_unwraps_ipip_with_room_for_the_header(dev_raw: dict[str, Any]) -> None:
    """TUN real servers: ipip loaded, the VIP on tunl0, the DR ARP sysctls, rp_filter 0 and MSS 1440
    advertised on the lab subnet; the directors' keepalived says lb_kind TUN."""
    cfg = parse_config(tun_raw(dev_raw), "dev")
    facts = derive(cfg)
    rs = yaml.safe_load(real_server_user_data(cfg, facts.real_servers[0], KEY))
    files = {f["path"]: f["content"] for f in rs["write_files"]}
    assert files["/etc/modules-load.d/lvslab-ipip.conf"].split() == ["ipip"]
    assert "net.ipv4.conf.tunl0.rp_filter = 0" in files["/etc/sysctl.d/90-lvslab-tun.conf"]
    assert "net.ipv4.conf.all.rp_filter = 0" in files["/etc/sysctl.d/90-lvslab-tun.conf"]
    assert "net.ipv4.conf.lo.arp_ignore = 1" in files["/etc/sysctl.d/90-lvslab-arp.conf"]
    unit = files["/etc/systemd/system/lvslab-vip.service"]
    assert "ExecStart=/sbin/ip addr replace 10.77.0.100/32 dev tunl0\n" in unit
    assert ("ExecStart=/sbin/ip route replace 10.77.0.0/24 dev eth0 proto kernel scope link src 10.77.0.21 "
            "advmss 1440\n") in unit
    assert rs["runcmd"].index(["modprobe", "ipip"]) < rs["runcmd"].index(["sysctl", "-q", "-p",
                                                                            "/etc/sysctl.d/90-lvslab-tun.conf"])
    assert "    lb_kind TUN\n" in keepalived_conf(cfg, facts.directors[0], "s3cret")
    dr = yaml.safe_load(real_server_user_data(parse_config(dev_raw, "dev"), facts.real_servers[0], KEY))
    assert all("tun" not in f["path"] and "ipip" not in f["path"] for f in dr["write_files"])


def nat_raw(dev_raw: dict[str, Any]) -> dict[str, Any]:
    """LVS-NAT with the VIP and the client in 10.177.0.0/24, sync daemon and non-preemptive VRRP."""
    nat = yaml.safe_load(yaml.safe_dump(dev_raw))
    nat["network"]["clientSubnet"] = "10.177.0.0/24"
    nat["vip"] = "10.177.0.100"
    nat["lvs"] = {"lbAlgo": "lc", "lbKind": "NAT", "syncDaemon": True}
    nat["directors"][0]["state"] = "BACKUP"
    nat["vrrp"]["preempt"] = False
    nat["vrrp"]["unicastPeers"] = True
    return nat


@pytest.mark.tools
def test_nat_keepalived_moves_the_gateway_with_the_vip(dev_raw: dict[str, Any], tmp_path: Path) -> None:
    """NAT: VI_1 (the VIP with the client subnet's prefix, so the director has a route to the client) and
    VI_GW (the real servers' gateway) in one vrrp_sync_group; keepalived accepts it and refuses the group
    naming an instance that does not exist."""
    cfg = parse_config(nat_raw(dev_raw), "dev")
    conf = keepalived_conf(cfg, derive(cfg).directors[0], "s3cret")
    group = conf.split("vrrp_sync_group VG_1 {")[1].split("}")[0].split()
    assert group == ["group", "{", "VI_1", "VI_GW"]
    assert "        10.177.0.100/24 dev eth0 label eth0:vip\n" in conf
    assert "        10.77.0.254/24 dev eth0 label eth0:gw\n" in conf
    assert "    virtual_router_id 61\n" in conf and "    virtual_router_id 62\n" in conf
    assert conf.count("    nopreempt\n") == 2 and "    lb_kind NAT\n" in conf
    # unicast peers in both instances: from this director to the other one
    assert conf.count("    unicast_src_ip 10.77.0.11\n    unicast_peer {\n        10.77.0.12\n    }\n") == 2
    config_test_accepts_only(tmp_path, conf, conf.replace("        VI_GW\n", "        VI_GATEWAY\n"))
    dr = keepalived_conf(parse_config(dev_raw, "dev"), derive(cfg).directors[0], "s3cret")
    assert "vrrp_sync_group" not in dr and "VI_GW" not in dr and "10.77.0.100/32 dev eth0" in dr


def test_nat_real_servers_route_through_the_gateway_vip(dev_raw: dict[str, Any]) -> None:
    """NAT real servers: default route via the gateway VIP, no VIP on lo, no ARP sysctls; directors
    forward without ICMP redirects. Directors themselves get no gateway."""
    cfg = parse_config(nat_raw(dev_raw), "dev")
    facts = derive(cfg)
    rs_net = yaml.safe_load(network_config(facts, facts.real_servers[0]))["ethernets"]["eth0"]
    assert rs_net["gateway4"] == "10.77.0.254" and "routes" not in rs_net
    assert "gateway4" not in yaml.safe_load(network_config(facts, facts.directors[0]))["ethernets"]["eth0"]
    rs = yaml.safe_load(real_server_user_data(cfg, facts.real_servers[0], KEY))
    paths = [f["path"] for f in rs["write_files"]]
    assert "/etc/sysctl.d/90-lvslab-arp.conf" not in paths and "/etc/systemd/system/lvslab-vip.service" not in paths
    director = yaml.safe_load(director_user_data(cfg, facts.directors[0], KEY, "s3cret"))
    sysctl = next(f["content"] for f in director["write_files"] if f["path"] == "/etc/sysctl.d/90-lvslab-nat.conf")
    assert "net.ipv4.ip_forward = 1" in sysctl and "net.ipv4.conf.eth0.send_redirects = 0" in sysctl
    assert ["sysctl", "-q", "-p", "/etc/sysctl.d/90-lvslab-nat.conf"] in director["runcmd"]
    dr = yaml.safe_load(director_user_data(parse_config(dev_raw, "dev"), facts.directors[0], KEY, "s3cret"))
    assert all(f["path"] != "/etc/sysctl.d/90-lvslab-nat.conf" for f in dr["write_files"])


def test_nginx_serves_the_health_check_path(dev_raw: dict[str, Any]) -> None:
    dev_raw["healthCheck"] = {"path": "/healthz"}
    cfg = parse_config(dev_raw, "dev")
    site = nginx_site(cfg, derive(cfg).real_servers[0])
    assert "location = /healthz {" in site and "return 200" in site
    assert "path /healthz" in keepalived_conf(cfg, derive(cfg).master, "x")
    assert "location = " not in nginx_site(parse_config(dev_raw | {"healthCheck": {}}, "dev"),
                                           derive(cfg).real_servers[0])


def test_non_preemptive_setup_renders_both_backup_with_nopreempt(dev_raw: dict[str, Any]) -> None:
    dev_raw["directors"][0]["state"] = "BACKUP"
    dev_raw["vrrp"]["preempt"] = False
    cfg = parse_config(dev_raw, "dev")
    facts = derive(cfg)
    assert facts.master.name == "director1" and facts.master.priority == 150
    for d in facts.directors:
        conf = keepalived_conf(cfg, d, "x")
        assert "    state BACKUP\n" in conf and "    nopreempt\n" in conf


@pytest.mark.tools
def test_keepalived_config_test_passes(dev_raw: dict[str, Any], tmp_path: Path) -> None:
    if not shutil.which("keepalived"):
        pytest.fail("keepalived not installed: run tools/host.sh packages")
    for cfg in configs(dev_raw):
        for director in derive(cfg).directors:
            conf = tmp_path / f"{director.name}.conf"
            conf.write_text(keepalived_conf(cfg, director, "s3cret"))
            proc = subprocess.run(["keepalived", "--config-test", "-f", str(conf)], capture_output=True, text=True)
            assert proc.returncode == 0, proc.stderr + conf.read_text()


@pytest.mark.tools
def test_every_scheduler_passes_keepalived_config_test(dev_raw: dict[str, Any], tmp_path: Path) -> None:
    """Each scheduler lvs.lbAlgo accepts is one keepalived accepts; an unknown one is refused by the tool."""
    from lvslab.lab.scheduler import SCHEDULERS as SCHEDULER_MODULES

    for algo in [*SCHEDULER_MODULES, "bogus"]:
        cfg = parse_config({**dev_raw, "lvs": {**dev_raw["lvs"], "lbAlgo": algo if algo != "bogus" else "rr"}}, "dev")
        conf = keepalived_conf(cfg, derive(cfg).directors[0], "s3cret")
        if algo == "bogus":  # what validation keeps out, the tool refuses
            conf = conf.replace("lb_algo rr", "lb_algo bogus")
        path = tmp_path / f"{algo}.conf"
        path.write_text(conf)
        proc = subprocess.run(["keepalived", "--config-test", "-f", str(path)], capture_output=True, text=True)
        assert (proc.returncode == 0) == (algo != "bogus"), f"{algo}: {proc.stdout}{proc.stderr}"


@pytest.mark.tools
def test_sync_daemon_and_timeouts(dev_raw: dict[str, Any], tmp_path: Path) -> None:
    """lvs.syncDaemon follows the one VRRP instance; lvs.timeouts render as ipvsadm --set would set them,
    only when configured; keepalived accepts them and refuses a broken timeout."""
    dev_raw["lvs"] = {**dev_raw["lvs"], "syncDaemon": True, "timeouts": {"tcpFin": 5}}
    cfg = parse_config(dev_raw, "dev")
    conf = keepalived_conf(cfg, derive(cfg).directors[0], "s3cret")
    instance = conf.split("vrrp_instance ")[1].split()[0]
    assert f"    lvs_sync_daemon eth0 {instance} id {cfg.vrrp.virtual_router_id}\n" in conf
    assert "    lvs_timeouts tcp 900 tcpfin 5 udp 300\n" in conf
    plain = keepalived_conf(parse_config({**dev_raw, "lvs": {}}, "dev"), derive(cfg).directors[0], "s3cret")
    assert "lvs_sync_daemon" not in plain and "lvs_timeouts" not in plain
    config_test_accepts_only(tmp_path, conf, conf.replace("tcpfin 5", "tcpfin five"))


@pytest.mark.tools
def test_keepalived_config_test_catches_a_broken_config(tmp_path: Path) -> None:
    """The tool really checks: a misspelt keyword fails."""
    conf = tmp_path / "bad.conf"
    conf.write_text("vrrp_instance VI_1 {\n  state MASTER\n  interface eth0\n  virtual_router_id 300\n}\n")
    proc = subprocess.run(["keepalived", "--config-test", "-f", str(conf)], capture_output=True, text=True)
    assert proc.returncode != 0


@pytest.mark.tools
def test_user_data_passes_cloud_init_schema(dev_raw: dict[str, Any], tmp_path: Path) -> None:
    for cfg in configs(dev_raw):
        docs = [director_user_data(cfg, d, KEY, "s3cret") for d in derive(cfg).directors]
        docs += [real_server_user_data(cfg, s, KEY) for s in derive(cfg).real_servers]
        for i, doc in enumerate(docs):
            path = tmp_path / f"ud{i}.yaml"
            path.write_text(doc)
            proc = subprocess.run(["cloud-init", "schema", "-c", str(path)], capture_output=True, text=True)
            assert proc.returncode == 0 and "Valid cloud-config" in proc.stdout, proc.stdout + proc.stderr + doc


def test_network_config_is_v2_static(dev_raw: dict[str, Any]) -> None:
    cfg = parse_config(dev_raw, "dev")
    doc = yaml.safe_load(network_config(derive(cfg), derive(cfg).real_servers[0]))
    eth0 = doc["ethernets"]["eth0"]
    assert doc["version"] == 2 and eth0["addresses"] == ["10.77.0.21/24"]
    assert eth0["match"]["macaddress"] == mac_for("dev", "web1") and "gateway4" not in eth0


@pytest.mark.tools
def test_nginx_site_passes_nginx_t(dev_raw: dict[str, Any]) -> None:
    if not shutil.which("nginx"):
        pytest.fail("nginx not installed: run tools/host.sh packages")
    for cfg in configs(dev_raw):
        sites = [nginx_site(cfg, derive(cfg).real_servers[0])]
        if cfg.sorry_server:
            sites.append(sorry_site(cfg, derive(cfg).directors[0]))
        for site in sites:
            with tempfile.TemporaryDirectory() as tmp:
                main = Path(tmp, "nginx.conf")
                main.write_text(f"pid {tmp}/nginx.pid;\nerror_log {tmp}/error.log;\nevents {{}}\n"
                                f"http {{\naccess_log off;\n{site}\n}}\n")
                proc = subprocess.run(["nginx", "-t", "-q", "-c", str(main), "-p", tmp], capture_output=True,
                                      text=True)
                assert proc.returncode == 0, proc.stderr + site


def test_real_server_user_data_content(dev_raw: dict[str, Any]) -> None:
    cfg = parse_config(dev_raw, "dev")
    doc = yaml.safe_load(real_server_user_data(cfg, derive(cfg).real_servers[0], KEY))
    files = {f["path"]: f["content"] for f in doc["write_files"]}
    sysctl = files["/etc/sysctl.d/90-lvslab-arp.conf"]
    for iface in ("all", "default", "lo", "eth0"):
        assert f"net.ipv4.conf.{iface}.arp_ignore = 1" in sysctl
        assert f"net.ipv4.conf.{iface}.arp_announce = 2" in sysctl
    assert "ip addr replace 10.77.0.100/32 dev lo" in files["/etc/systemd/system/lvslab-vip.service"]
    assert doc["packages"] == ["nginx"] and doc["ssh_authorized_keys"] == [KEY]
    assert doc["apt"]["sources_list"].strip() == "deb [trusted=yes] file:/srv/lvslab-repo ./"


@pytest.mark.parametrize("role", ["director", "real-server"])
def test_services_start_once_after_the_package_install(dev_raw: dict[str, Any], role: str) -> None:
    """policy-rc.d keeps packages from starting services while cloud-init installs them; runcmd removes it
    before anything else, then starts every service of the role itself, and reloads systemd no more."""
    dev_raw["lvs"]["sorryServer"] = True
    cfg = parse_config(dev_raw, "dev")
    facts = derive(cfg)
    text = (director_user_data(cfg, facts.directors[0], KEY, "x" * 8) if role == "director"
            else real_server_user_data(cfg, facts.real_servers[0], KEY))
    doc = yaml.safe_load(text)
    policy = next(f for f in doc["write_files"] if f["path"] == "/usr/sbin/policy-rc.d")
    assert policy["permissions"] == "0755" and policy["content"].splitlines()[-1] == "exit 101"
    commands = [" ".join(c) if isinstance(c, list) else c for c in doc["runcmd"]]
    assert commands[:2] == ["rm -f /usr/sbin/policy-rc.d /usr/local/sbin/systemctl "
                            "/etc/apt/apt.conf.d/00lvslab-first-boot", "systemctl daemon-reload"]
    started = {"director": ["reload-or-restart nginx"],  # keepalived: when its configuration is pushed
               "real-server": ["reload-or-restart nginx", "start lvslab-vip.service"]}[role]
    for service in started:
        assert any(service in c for c in commands[2:]), (service, commands)
    assert not any("daemon-reload" in c or "--now" in c for c in commands[2:]), commands


@pytest.mark.parametrize("role", ["director", "real-server"])
def test_package_installs_skip_daemon_reload(dev_raw: dict[str, Any], role: str, tmp_path: Path) -> None:
    """The install-time systemctl wrapper, run for real: maintainer scripts' reloads (in any argument
    position) are skipped, every other call reaches systemctl with its arguments unchanged."""
    cfg = parse_config(dev_raw, "dev")
    facts = derive(cfg)
    text = (director_user_data(cfg, facts.directors[0], KEY, "x" * 8) if role == "director"
            else real_server_user_data(cfg, facts.real_servers[0], KEY))
    files = {f["path"]: f for f in yaml.safe_load(text)["write_files"]}
    wrapper = files["/usr/local/sbin/systemctl"]
    assert wrapper["permissions"] == "0755"
    # apt runs dpkg with its own PATH (DPkg::Path): the wrapper's directory must come first in it.
    dpkg_path = files["/etc/apt/apt.conf.d/00lvslab-first-boot"]["content"].split('"')[1].split(":")
    assert dpkg_path[0] == "/usr/local/sbin" and "/usr/bin" in dpkg_path
    log = tmp_path / "calls"
    real = tmp_path / "systemctl"
    real.write_text(f'#!/bin/sh\necho "$*" >> {log}\n')
    real.chmod(0o755)
    script = tmp_path / "wrapper"
    script.write_text(wrapper["content"].replace("/usr/bin/systemctl", str(real)))
    for args in (["--system", "daemon-reload"], ["daemon-reload"], ["--quiet", "is-enabled", "nginx.service"],
                 ["start", "keepalived.service"], ["show", "-p", "a b"]):
        subprocess.run(["sh", str(script), *args], check=True)
    assert log.read_text().splitlines() == ["--quiet is-enabled nginx.service", "start keepalived.service",
                                            "show -p a b"]


def test_sorry_server_is_the_directors_own_nginx(dev_raw: dict[str, Any]) -> None:
    dev_raw["lvs"]["sorryServer"] = True
    cfg = parse_config(dev_raw, "dev")
    director = derive(cfg).directors[0]
    conf = keepalived_conf(cfg, director, "x")
    assert "    sorry_server 127.0.0.1 80\n" in conf
    assert conf.index("sorry_server") < conf.index("real_server ")  # virtual_server level, not per server
    doc = yaml.safe_load(director_user_data(cfg, director, KEY, "s3cret"))
    assert "nginx" in doc["packages"]
    site = next(f for f in doc["write_files"] if f["path"] == "/etc/nginx/conf.d/lvslab-sorry.conf")
    assert "X-Real-Server sorry-director1" in site["content"] and site["defer"] is True
    dev_raw["lvs"]["sorryServer"] = False
    plain = yaml.safe_load(director_user_data(parse_config(dev_raw, "dev"), director, KEY, "s3cret"))
    assert "nginx" not in plain["packages"] and "sorry_server" not in str(plain)


def test_mirror_profile_has_no_local_repository(dev_raw: dict[str, Any]) -> None:
    dev_raw["packageSource"] = "mirror"
    cfg = parse_config(dev_raw, "dev")
    doc = yaml.safe_load(director_user_data(cfg, derive(cfg).directors[0], KEY, "s3cret"))
    assert "apt" not in doc and "bootcmd" not in doc and doc["packages"] == ["keepalived", "ipvsadm"]


def _rendered(raw: dict[str, Any]) -> dict[str, str]:
    """Everything a lab's nodes get: user-data, and the directors' pushed keepalived.conf and push command."""
    cfg = parse_config(raw, "dev")
    facts = derive(cfg)
    out = {f"user-data-{d.name}": director_user_data(cfg, d, KEY, "s3cret") for d in facts.directors}
    out.update({f"keepalived-{d.name}": keepalived_conf(cfg, d, "s3cret") for d in facts.directors})
    out.update({f"push-{d.name}": keepalived_push_script("true", "keepalived-down-all" in cfg.faults)
                for d in facts.directors})
    out.update({f"user-data-{s.name}": real_server_user_data(cfg, s, KEY) for s in facts.real_servers})
    return out


# What each cloud-init fault must change (files that change -> a line that appears or disappears there).
FAULT_EFFECTS = {
    "rs-no-arp-sysctls": ({"user-data-web1", "user-data-web2"}, "90-lvslab-arp.conf", False),
    "rs-no-vip": ({"user-data-web1", "user-data-web2"}, "lvslab-vip.service", False),
    "nginx-down-all": ({"user-data-web1", "user-data-web2"}, "[systemctl, stop, nginx]", True),
    "keepalived-down-all": ({"push-director1", "push-director2"}, "systemctl stop keepalived", True),
    "backup-wrong-vrid": ({"keepalived-director2"}, "virtual_router_id 62", True),
    "no-sorry-server": ({"keepalived-director1", "keepalived-director2"}, "sorry_server 127.0.0.1 80", False),
}


def test_every_fault_has_an_expected_effect() -> None:
    from lvslab.faults import CLOUD_INIT_FAULTS

    assert set(FAULT_EFFECTS) == set(CLOUD_INIT_FAULTS)


@pytest.mark.parametrize("fault", sorted(FAULT_EFFECTS))
def test_fault_changes_exactly_what_it_says(dev_raw: dict[str, Any], fault: str) -> None:
    with_sorry = {**dev_raw, "lvs": {**dev_raw["lvs"], "sorryServer": True}}
    clean = _rendered(with_sorry)
    broken = _rendered({**with_sorry, "faults": [fault]})
    files, marker, appears = FAULT_EFFECTS[fault]
    assert {name for name in clean if clean[name] != broken[name]} == files
    for name in files:
        assert (marker in broken[name], marker in clean[name]) == (appears, not appears), name
    for text in broken.values():
        assert not any(line.strip().startswith("vrrp_strict") for line in text.splitlines())


# What pulumi-libvirt 0.5.4 generates for the lab's domain and network (trimmed to the parts the XSLT
# touches), so the transforms are checked by the real xsltproc the provider runs.

@pytest.mark.parametrize("name", ["keepalived-director1.conf", "keepalived-director2.conf",
                                  "user-data-director1.yaml", "user-data-web1.yaml"])
def test_golden_files(dev_raw: dict[str, Any], name: str) -> None:
    """The dev stack's rendered configs; regenerate with LVSLAB_UPDATE_GOLDEN=1 after an intended change."""
    cfg = parse_config(dev_raw, "dev")
    rendered = {
        "keepalived-director1.conf": keepalived_conf(cfg, derive(cfg).directors[0], "s3cret"),
        "keepalived-director2.conf": keepalived_conf(cfg, derive(cfg).directors[1], "s3cret"),
        "user-data-director1.yaml": director_user_data(cfg, derive(cfg).directors[0], KEY, "s3cret"),
        "user-data-web1.yaml": real_server_user_data(cfg, derive(cfg).real_servers[0], KEY),
    }[name]
    golden = GOLDEN_DIR / name
    if os.environ.get("LVSLAB_UPDATE_GOLDEN"):
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(rendered)
    assert rendered == golden.read_text()


@pytest.mark.tools
def test_nat_gateway_survives_cloud_inits_eni_renderer(dev_raw: dict[str, Any], tmp_path: Path) -> None:
    """The guest renders network-config to ifupdown (ENI). cloud-init's own converter must turn the NAT
    real server's gateway into ifupdown's `gateway` line: `routes:` would become `post-up route add ...
    || true`, which fails silently without net-tools (seen on VMs: no default route)."""
    if not shutil.which("cloud-init"):
        pytest.fail("cloud-init not installed: run tools/host.sh packages")
    facts = derive(parse_config(nat_raw(dev_raw), "dev"))
    (tmp_path / "nc.yaml").write_text(network_config(facts, facts.real_servers[0]))
    proc = subprocess.run(["cloud-init", "devel", "net-convert", "-p", str(tmp_path / "nc.yaml"), "-k", "yaml",
                           "-D", "debian", "-d", str(tmp_path / "out"), "-O", "eni"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    eni = (tmp_path / "out/etc/network/interfaces.d/50-cloud-init").read_text()
    assert "    address 10.77.0.21/24\n    gateway 10.77.0.254\n" in eni and "route add" not in eni, eni
