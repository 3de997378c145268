"""Validation of the typed config: every bad value is reported with its key and value, all at once."""

from __future__ import annotations

from typing import Any

import pytest

from lvslab.config import ConfigError, parse_config
from lvslab.lab.scheduler import SCHEDULERS as SCHEDULER_MODULES
from lvslab.stackfile import load_config


def problems(raw: dict[str, Any], auth_pass: str | None = None, secret: bool = True) -> list[str]:
    with pytest.raises(ConfigError) as err:
        parse_config(raw, "dev", auth_pass=auth_pass, auth_pass_is_secret=secret)
    return err.value.problems


def test_dev_stack_is_valid(dev_raw: dict[str, Any]) -> None:
    cfg = parse_config(dev_raw, "dev")
    assert cfg.master.name == "director1" and cfg.backup.name == "director2"
    assert [s.name for s in cfg.real_servers] == ["web1", "web2"]
    # advert_int 1, BACKUP priority 100, VRRPv2: 3 + (256 - 100) / 256
    assert cfg.failover_bound_seconds() == pytest.approx(3.609375)


def test_nat_stack_is_valid(dev_raw: dict[str, Any]) -> None:
    """NAT: the VIP and the client address in clientSubnet; the gateway VIP defaults to the subnet's last host."""
    dev_raw["lvs"]["lbKind"] = "NAT"
    dev_raw["network"]["clientSubnet"] = "10.177.0.0/24"
    dev_raw["vip"] = "10.177.0.100"
    cfg = parse_config(dev_raw, "dev")
    assert (cfg.client, cfg.gateway_vip, str(cfg.vip_subnet)) == ("10.177.0.1", "10.77.0.254", "10.177.0.0/24")
    dev_raw["network"]["clientAddress"] = "10.177.0.9"
    dev_raw["lvs"]["gatewayVip"] = "10.77.0.1"
    assert problems(dev_raw) == ["lvs-lab:lvs.gatewayVip: duplicates the address of network.hostAddress "
                                 "(got '10.77.0.1')"]
    dev_raw["lvs"]["gatewayVip"] = "10.77.0.200"
    cfg = parse_config(dev_raw, "dev")
    assert (cfg.client, cfg.gateway_vip) == ("10.177.0.9", "10.77.0.200")
    assert parse_config({**dev_raw, "lvs": {"lbKind": "DR"}, "vip": "10.77.0.100",
                         "network": {k: v for k, v in dev_raw["network"].items() if not k.startswith("client")}},
                        "dev").client == "10.77.0.1"


def test_vrrp3_skew_scales_with_advert_int(dev_raw: dict[str, Any]) -> None:
    dev_raw["vrrp"] = {"version": 3, "advertInt": 0.5, "virtualRouterId": 61}
    cfg = parse_config(dev_raw, "dev")
    assert cfg.failover_bound_seconds() == pytest.approx(1.5 + 156 * 0.5 / 256)


@pytest.mark.parametrize("algo", sorted(SCHEDULER_MODULES))
def test_every_keepalived_scheduler_is_accepted(dev_raw: dict[str, Any], algo: str) -> None:
    dev_raw["lvs"]["lbAlgo"] = algo
    assert parse_config(dev_raw, "dev").lb_algo == algo


def stack_raw(stack: str) -> dict[str, Any]:
    """A committed stack file's lvs-lab config (keys without the prefix)."""
    return load_config(stack)


def nginx_ha() -> dict[str, Any]:
    return stack_raw("nginx-ha")


def on_stack(stack: str, mutate: Any) -> Any:
    """A GOLDEN mutation applied to another committed stack instead of the dev stack it is handed."""
    def apply(raw: dict[str, Any]) -> None:
        raw.clear()
        raw.update(stack_raw(stack))
        mutate(raw)
    return apply


def on_nginx_ha(mutate: Any) -> Any:
    return on_stack("nginx-ha", mutate)


def on_heartbeat(mutate: Any) -> Any:
    return on_stack("heartbeat", mutate)


GOLDEN = [
    # (mutation, expected message)
    (lambda r: r["network"].update(subnet="10.77.0.1/24"),
     "lvs-lab:network.subnet: must be an IPv4 network in CIDR form with no host bits, e.g. 10.77.0.0/24 "
     "(got '10.77.0.1/24')"),
    (lambda r: r["network"].update(bridge="a-very-long-bridge"),
     "lvs-lab:network.bridge: must be 1-15 characters of letters, digits, '_', '.', '-' (Linux IFNAMSIZ) "
     "(got 'a-very-long-bridge')"),
    (lambda r: r.update(vip="10.99.0.100"),
     "lvs-lab:vip: must be inside network.subnet 10.77.0.0/24 (got '10.99.0.100')"),
    (lambda r: r.update(vip="10.77.0.255"),
     "lvs-lab:vip: must not be the network or broadcast address of 10.77.0.0/24 (got '10.77.0.255')"),
    (lambda r: r.update(vip="10.77.0.11"),
     "lvs-lab:directors[0].address: duplicates the address of vip (got '10.77.0.11')"),
    (lambda r: r.update(vip="10.77.0.1"),
     "lvs-lab:vip: duplicates the address of network.hostAddress (got '10.77.0.1')"),
    (lambda r: r["realServers"][1].update(address="10.77.0.21"),
     "lvs-lab:realServers[1].address: duplicates the address of realServers[0].address (got '10.77.0.21')"),
    (lambda r: r["realServers"][1].update(name="web1"),
     "lvs-lab:realServers[1].name: duplicates the name of realServers[0].name (got 'web1')"),
    (lambda r: r["directors"][0].update(priority=255),
     "lvs-lab:directors[0].priority: must be between 1 and 254 (got 255)"),
    (lambda r: r["directors"][1].update(priority=200),
     "lvs-lab:directors: the MASTER's priority must be higher than the BACKUP's (director1 150 <= director2 200) "
     "(got ['BACKUP', 'MASTER'])"),
    (lambda r: r["directors"][1].update(state="MASTER"),
     "lvs-lab:directors: must be one MASTER and one BACKUP, or both BACKUP with vrrp.preempt false "
     "(got ['MASTER', 'MASTER'])"),
    (lambda r: r["vrrp"].update(virtualRouterId=256),
     "lvs-lab:vrrp.virtualRouterId: must be between 1 and 255 (got 256)"),
    (lambda r: r["vrrp"].update(advertInt=0.5),
     "lvs-lab:vrrp.advertInt: must be whole seconds from 1 to 255 with VRRP version 2 (got 0.5)"),
    (lambda r: r["vrrp"].update(advertInt=0),
     "lvs-lab:vrrp.advertInt: must be greater than 0 seconds (got 0.0)"),
    (lambda r: r["realServers"][0].update(weight=70000),
     "lvs-lab:realServers[0].weight: must be between 0 and 65535 (got 70000)"),
    (lambda r: r["lvs"].update(lbAlgo="roundrobin"),
     "lvs-lab:lvs.lbAlgo: must be one of rr, wrr, lc, wlc, lblc, lblcr, dh, sh, sed, nq, fo, ovf, mh "
     "(got 'roundrobin')"),
    (lambda r: r["lvs"].update(lbKind="TUNNEL"), "lvs-lab:lvs.lbKind: must be one of DR, NAT, TUN (got 'TUNNEL')"),
    # LVS-NAT: the VIP and the client in a second subnet; the real servers' gateway VIP in the lab's.
    (lambda r: r["lvs"].update(lbKind="NAT"),
     "lvs-lab:network.clientSubnet: is required with lvs.lbKind NAT: the VIP's and the client's IPv4 subnet on "
     "the same bridge, in CIDR form without host bits, e.g. 10.177.0.0/24 (got None)"),
    (lambda r: (r["lvs"].update(lbKind="NAT"), r["network"].update(clientSubnet="10.77.0.128/25")),
     "lvs-lab:network.clientSubnet: must not overlap network.subnet 10.77.0.0/24 (with NAT the client must be in "
     "another subnet, or the real servers would answer it directly) (got '10.77.0.128/25')"),
    (lambda r: (r["lvs"].update(lbKind="NAT"), r["network"].update(clientSubnet="10.177.0.0/24")),
     "lvs-lab:vip: must be inside network.clientSubnet (lvs.lbKind NAT) 10.177.0.0/24 (got '10.77.0.100')"),
    (lambda r: (r["lvs"].update(lbKind="NAT", gatewayVip="10.177.0.254"),
                r["network"].update(clientSubnet="10.177.0.0/24"), r.update(vip="10.177.0.100")),
     "lvs-lab:lvs.gatewayVip: must be inside network.subnet 10.77.0.0/24 (got '10.177.0.254')"),
    (lambda r: (r["lvs"].update(lbKind="NAT", gatewayVip="10.77.0.21"),
                r["network"].update(clientSubnet="10.177.0.0/24"), r.update(vip="10.177.0.100")),
     "lvs-lab:lvs.gatewayVip: duplicates the address of realServers[0].address (got '10.77.0.21')"),
    (lambda r: r["network"].update(clientSubnet="10.177.0.0/24"),
     "lvs-lab:network.clientSubnet: is only used with lvs.lbKind NAT (the VIP's and the client's subnet); with DR "
     "the VIP lives in network.subnet (got '10.177.0.0/24')"),
    (lambda r: r["lvs"].update(gatewayVip="10.77.0.254"),
     "lvs-lab:lvs.gatewayVip: is only used with lvs.lbKind NAT (the real servers' gateway); with DR the real "
     "servers answer the client directly (got '10.77.0.254')"),
    (lambda r: r.update(port=0), "lvs-lab:port: must be between 1 and 65535 (got 0)"),
    (lambda r: r.update(port=70000), "lvs-lab:port: must be between 1 and 65535 (got 70000)"),
    (lambda r: r["healthCheck"].update(type="PING"),
     "lvs-lab:healthCheck.type: must be one of TCP_CHECK, HTTP_GET (got 'PING')"),
    (lambda r: r.update(realServers=[]), "lvs-lab:realServers: must be a list of at least one real server (got [])"),
    (lambda r: r.update(vipp="10.77.0.5"),
     "lvs-lab:vipp: unknown key; did you mean 'vip'? expected one of authPass, directors, domainType, faults, "
     "healthCheck, heartbeat, image, libvirtUri, lvs, network, nginxCheck, packageSource, port, realServers, "
     "topology, verify, vip, vm, vrrp "
     "(got '10.77.0.5')"),
    (lambda r: r["lvs"].update(persistance=5),
     "lvs-lab:lvs.persistance: unknown key; did you mean 'persistenceTimeout'? expected one of gatewayVip, lbAlgo, "
     "lbKind, persistenceTimeout, quiescent, sorryServer, syncDaemon, timeouts (got 5)"),
    (lambda r: r["lvs"].update(timeouts={"tcpfin": 5}),
     "lvs-lab:lvs.timeouts.tcpfin: unknown key; did you mean 'tcpFin'? expected one of tcp, tcpFin, udp (got 5)"),
    (lambda r: r["lvs"].update(timeouts={"tcpFin": 0}),
     "lvs-lab:lvs.timeouts.tcpFin: must be between 1 and 86400 seconds (unset: the kernel's default) (got 0)"),
    (lambda r: r["lvs"].update(syncDaemon="yes"),
     "lvs-lab:lvs.syncDaemon: must be true or false (got 'yes')"),
    (lambda r: r["vrrp"].update(unicastPeers="both"),
     "lvs-lab:vrrp.unicastPeers: must be true or false (got 'both')"),
    (lambda r: r["vrrp"].update(unicast=True),
     "lvs-lab:vrrp.unicast: unknown key; did you mean 'unicastPeers'? expected one of advertInt, preempt, "
     "unicastPeers, version, virtualRouterId (got True)"),
    # What does not combine.
    (lambda r: (r["vrrp"].update(preempt=False), r.update(verify={"failoverMode": "hard"})),
     "lvs-lab:verify.failoverMode: hard cannot show nopreempt (vrrp.preempt false): a frozen MASTER resumes as "
     "MASTER and takes the VIP back by priority; use clean (keepalived stopped and started) (got 'hard')"),
    (lambda r: r.update(domainType="xen"), "lvs-lab:domainType: must be one of auto, kvm, qemu (got 'xen')"),
    # What keepalived itself refuses.
    (lambda r: r["lvs"].update(persistenceTimeout=2678401),
     "lvs-lab:lvs.persistenceTimeout: must be between 0 and 2678400 seconds (0 = off; keepalived's maximum is "
     "31 days) (got 2678401)"),
    (lambda r: r["vrrp"].update(advertInt=256),
     "lvs-lab:vrrp.advertInt: must be whole seconds from 1 to 255 with VRRP version 2 (got 256.0)"),
    (lambda r: [s.update(weight=0) for s in r["realServers"]],
     "lvs-lab:realServers: at least one real server needs a weight above 0 (weight 0 takes no new connections) "
     "(got [0, 0])"),
    # No traceback, whatever the type.
    (lambda r: r["realServers"][0].update(weight="--1"),
     "lvs-lab:realServers[0].weight: must be an integer between 0 and 65535 (got '--1')"),
    (lambda r: r["vrrp"].update(advertInt=float("inf")), "lvs-lab:vrrp.advertInt: must be a finite number (got inf)"),
    (lambda r: r["vrrp"].update(advertInt=float("nan")), "lvs-lab:vrrp.advertInt: must be a finite number (got nan)"),
    (lambda r: r["vrrp"].update(advertInt=True),
     "lvs-lab:vrrp.advertInt: must be a number, not true/false (got True)"),
    (lambda r: r["directors"][0].update(priority=True),
     "lvs-lab:directors[0].priority: must be an integer between 1 and 254 (got True)"),
    (lambda r: r["directors"][0].pop("priority"),
     "lvs-lab:directors[0].priority: is required: an integer between 1 and 254 (got None)"),
    # Names, URIs, paths: full matches.
    (lambda r: r.update(libvirtUri="qemu://system"),
     "lvs-lab:libvirtUri: must be a libvirt URI of the QEMU driver, e.g. qemu:///system or "
     "qemu+ssh://user@host/system (got 'qemu://system')"),
    (lambda r: r["realServers"][0].update(name="web-"),
     "lvs-lab:realServers[0].name: must be a host name: a lowercase letter, then lowercase letters, digits and "
     "'-', not ending in '-', at most 31 characters (got 'web-')"),
    (lambda r: r["realServers"][0].update(name="web1\n"),
     "lvs-lab:realServers[0].name: must be a host name: a lowercase letter, then lowercase letters, digits and "
     "'-', not ending in '-', at most 31 characters (got 'web1\\n')"),
    (lambda r: r["network"].update(bridge="br0\n"),
     "lvs-lab:network.bridge: must be 1-15 characters of letters, digits, '_', '.', '-' (Linux IFNAMSIZ) "
     "(got 'br0\\n')"),
    (lambda r: r["healthCheck"].update(path="/a b"),
     "lvs-lab:healthCheck.path: must be an absolute URL path of letters, digits and . _ ~ / - (no spaces, query "
     "or fragment); the real servers' nginx serves it (got '/a b')"),
    (lambda r: r["healthCheck"].update(delayLoop=0),
     "lvs-lab:healthCheck.delayLoop: must be between 1 and 3600 seconds (got 0)"),
    # Images: what cannot work is refused here, not inside the provider.
    (lambda r: r.update(image={"source": "http://example.org/debian.qcow2"}),
     "lvs-lab:image.source: must be 'local' (the image lvs-lab builds) or an absolute path to an existing file "
     "on this machine (it is uploaded to the hypervisor; URLs are not fetched) (got "
     "'http://example.org/debian.qcow2')"),
    (lambda r: r.update(image={"source": "debian.qcow2"}),
     "lvs-lab:image.source: must be 'local' (the image lvs-lab builds) or an absolute path to an existing file "
     "on this machine (it is uploaded to the hypervisor; URLs are not fetched) (got 'debian.qcow2')"),
    (lambda r: r.update(image={"bootMethod": "bootloader"}),
     "lvs-lab:image.bootMethod: bootloader needs an image.source with a bootloader; the image lvs-lab builds "
     "boots its kernel directly (kernel) (got 'bootloader')"),
    (lambda r: r.update(image={"source": "/etc/hostname", "bootMethod": "bootloader"}),
     "lvs-lab:packageSource: local (the repository built with lvs-lab's image) works with image.source local "
     "only; set packageSource: mirror for a custom image (got 'local')"),
    # topology nginx-ha (stacks/Pulumi.nginx-ha.yaml as the base)
    (on_nginx_ha(lambda r: r.update(realServers=[{"name": "web1", "address": "10.85.0.21"}])),
     "lvs-lab:realServers: is not used with topology nginx-ha (two nginx nodes share the VIP, no IPVS: the "
     "directors serve the pages themselves) (got [{'name': 'web1', 'address': '10.85.0.21'}])"),
    (on_nginx_ha(lambda r: r.update(healthCheck={"type": "TCP_CHECK"})),
     "lvs-lab:healthCheck: is not used with topology nginx-ha (two nginx nodes share the VIP, no IPVS: the "
     "directors serve the pages themselves) (got {'type': 'TCP_CHECK'})"),
    (on_nginx_ha(lambda r: r["nginxCheck"].update(weight=-50)),
     "lvs-lab:nginxCheck.weight: must bring nginx1's priority 150 below nginx2's 100 when nginx is down "
     "(weight < -50), or the VIP never moves (got -50)"),
    (on_nginx_ha(lambda r: r["nginxCheck"].update(weight=50)),
     "lvs-lab:nginxCheck.weight: must lift nginx2's priority 100 above nginx1's 150 while nginx1's nginx is "
     "down (weight > 50), or the VIP never moves (got 50)"),
    (on_nginx_ha(lambda r: r["nginxCheck"].update(fall=0)),
     "lvs-lab:nginxCheck.fall: must be between 1 and 10 failed runs (got 0)"),
    (on_nginx_ha(lambda r: r["nginxCheck"].update(process="Nginx Worker")),
     "lvs-lab:nginxCheck.process: must be a process name (pgrep -x): a lowercase letter, then lowercase "
     "letters, digits and '-' (got 'Nginx Worker')"),
    (on_nginx_ha(lambda r: r["nginxCheck"].update(weight=160)),  # keepalived caps a raised priority at 254
     "lvs-lab:nginxCheck.weight: must keep nginx2's priority 100 + weight below 254 (weight < 154): keepalived "
     "caps a priority raised by a script at 254, so both healthy directors would be equal (got 160)"),
    (on_nginx_ha(lambda r: r["vrrp"].update(preempt=False)),
     "lvs-lab:nginxCheck.weight: must be 0 with vrrp.preempt false: under nopreempt a BACKUP never takes the VIP "
     "from a MASTER whose priority dropped; with 0 a failed check puts the MASTER in FAULT and it gives the VIP up "
     "(got -60)"),
    (on_nginx_ha(lambda r: r["nginxCheck"].update(process="nginx-worker-proc")),
     "lvs-lab:nginxCheck.process: must be at most 15 characters: pgrep -x matches the kernel's process name, cut "
     "to 15 (TASK_COMM_LEN), so a longer one never matches (got 'nginx-worker-proc')"),
    (lambda r: r.update(libvirtUri="qemu+ssh://root@hv1/system?keyfile=/k/id&known_hosts=/k/kh"),
     "lvs-lab:libvirtUri: parameter known_hosts= is not read: libvirt's known_hosts= is spelt knownhosts= here; "
     "lvs-lab and terraform-provider-libvirt read keyfile=, knownhosts=, socket= (its libvirt/uri/ssh.go) "
     "(got 'qemu+ssh://root@hv1/system?keyfile=/k/id&known_hosts=/k/kh')"),
    (on_nginx_ha(lambda r: r.update(topology="nginx")),
     "lvs-lab:topology: must be one of lvs-keepalived, lvs-heartbeat, nginx-ha (got 'nginx')"),
    # topology lvs-heartbeat (seed 003): what heartbeat + ldirectord cannot do, and heartbeat's own rules
    (on_heartbeat(lambda r: r.update(vrrp={"virtualRouterId": 5})),
     "lvs-lab:vrrp: is not used with topology lvs-heartbeat: heartbeat, not VRRP, moves the VIP: set its timing "
     "under heartbeat (got {'virtualRouterId': 5})"),
    (on_heartbeat(lambda r: r["lvs"].update(syncDaemon=True)),
     "lvs-lab:lvs.syncDaemon: is not used with topology lvs-heartbeat: ldirectord does not run IPVS's connection "
     "sync daemon (got True)"),
    (on_heartbeat(lambda r: r["lvs"].update(lbKind="NAT")),
     "lvs-lab:lvs.lbKind: must be DR with topology lvs-heartbeat (seed 003's LVS-DR: ldirectord's gate) "
     "(got 'NAT')"),
    (on_heartbeat(lambda r: r["healthCheck"].update(expectStatus=204)),
     "lvs-lab:healthCheck.expectStatus: is not used with topology lvs-heartbeat: ldirectord's negotiate check "
     "accepts any 2xx answer whose page matches healthCheck.receive (got 204)"),
    (on_heartbeat(lambda r: r["healthCheck"].update(receive="web1")),
     "lvs-lab:healthCheck.receive: must match every real server's health page '<name> ok': ldirectord would keep "
     "web2 out of the table (got 'web1')"),
    (on_heartbeat(lambda r: r["healthCheck"].update(receive="(ok")),
     "lvs-lab:healthCheck.receive: must be a valid regexp (missing ), unterminated subpattern at position 0) "
     "(got '(ok')"),
    (on_heartbeat(lambda r: r["healthCheck"].update(receive='say "ok"')),
     "lvs-lab:healthCheck.receive: must be a non-empty regexp without double quotes or newlines (ldirectord.cf "
     "quotes it) (got 'say \"ok\"')"),
    (on_heartbeat(lambda r: r["healthCheck"].update(type="TCP_CHECK")),
     "lvs-lab:healthCheck.receive: is only used with healthCheck.type HTTP_GET (ldirectord's negotiate check); "
     "TCP_CHECK only connects (got 'ok')"),
    (on_heartbeat(lambda r: r["heartbeat"].update(deadtime=1)),
     "lvs-lab:heartbeat.deadtime: must be between 2 and 300 seconds (got 1)"),
    (on_heartbeat(lambda r: r["heartbeat"].update(keepalive=3)),
     "lvs-lab:heartbeat.deadtime: must be more than twice heartbeat.keepalive (3 s): heartbeat refuses to start "
     "otherwise (its config.c), and one lost heartbeat would declare the peer dead (got 5)"),
    (on_heartbeat(lambda r: r["heartbeat"].update(keepalive=1, deadtime=2)),  # config.c: deadtime <= 2 x keepalive
     "lvs-lab:heartbeat.deadtime: must be more than twice heartbeat.keepalive (1 s): heartbeat refuses to start "
     "otherwise (its config.c), and one lost heartbeat would declare the peer dead (got 2)"),
    (on_heartbeat(lambda r: r.update(topology="lvs-heartbeet")),  # one message, no follow-ups about its keys
     "lvs-lab:topology: must be one of lvs-keepalived, lvs-heartbeat, nginx-ha (got 'lvs-heartbeet')"),
    (on_heartbeat(lambda r: r["heartbeat"].update(warntime=5)),
     "lvs-lab:heartbeat.warntime: must be below heartbeat.deadtime (5 s): it warns of a late heartbeat before the "
     "peer is declared dead (got 5)"),
    (on_heartbeat(lambda r: r["heartbeat"].update(initdead=9)),
     "lvs-lab:heartbeat.initdead: must be at least twice heartbeat.deadtime (5 s), ha.cf's rule for the first "
     "wait at boot (heartbeat itself refuses less than deadtime) (got 9)"),
    (on_heartbeat(lambda r: r["heartbeat"].update(autoFailbak=True)),
     "lvs-lab:heartbeat.autoFailbak: unknown key; did you mean 'autoFailback'? expected one of autoFailback, "
     "deadtime, initdead, keepalive, udpPort, warntime (got True)"),
    (lambda r: r.update(vm={"bootsAtOnce": 0}),
     "lvs-lab:vm.bootsAtOnce: must be auto (cores of the hypervisor under software emulation, all under KVM), all, "
     "or a number of VMs between 1 and 64 (got 0)"),
    (lambda r: r.update(vm={"bootsAtOnce": "some"}),
     "lvs-lab:vm.bootsAtOnce: must be auto (cores of the hypervisor under software emulation, all under KVM), all, "
     "or a number of VMs between 1 and 64 (got 'some')"),
    (on_heartbeat(lambda r: [d.update(state="BACKUP") for d in r["directors"]]),
     "lvs-lab:directors: must be one MASTER and one BACKUP with topology lvs-heartbeat (haresources names the "
     "MASTER; heartbeat.autoFailback decides whether the VIP returns to it) (got ['BACKUP', 'BACKUP'])"),
]


@pytest.mark.parametrize("mutate,message", GOLDEN, ids=[m.split(":")[1] for _, m in GOLDEN])
def test_one_mistake_one_message(dev_raw: dict[str, Any], mutate: Any, message: str) -> None:
    """Each mistake above is reported by exactly the one line that names it."""
    mutate(dev_raw)
    assert problems(dev_raw) == [message]


def test_invalid_subnet_is_one_message(dev_raw: dict[str, Any]) -> None:
    dev_raw["network"]["subnet"] = "10.77.0.0/33"
    assert problems(dev_raw) == ["lvs-lab:network.subnet: must be an IPv4 network in CIDR form with no host bits, "
                                 "e.g. 10.77.0.0/24 (got '10.77.0.0/33')"]


def test_non_preemptive_setup_is_accepted(dev_raw: dict[str, Any]) -> None:
    """Seed 002: both directors `state BACKUP`, different priorities, nopreempt: the higher one starts as MASTER."""
    dev_raw["directors"][0]["state"] = "BACKUP"
    dev_raw["vrrp"]["preempt"] = False
    cfg = parse_config(dev_raw, "dev")
    assert cfg.master.name == "director1" and cfg.backup.name == "director2"
    dev_raw["vrrp"]["preempt"] = True
    assert "needs vrrp.preempt false" in problems(dev_raw)[0]


def test_misspelt_namespace_is_reported_with_the_nearest_key(dev_raw: dict[str, Any]) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(dev_raw, "dev", foreign={"lvs_lab:vm": {"vcpus": 2}, "libvirt:uri": "qemu:///system"})
    assert err.value.problems == ["lvs_lab:vm: unknown namespace 'lvs_lab'; did you mean 'lvs-lab:vm'? "
                                  "(got {'vcpus': 2})"]


@pytest.mark.parametrize("mutate,message", GOLDEN, ids=[m.split(":")[1] for _, m in GOLDEN])
def test_golden_messages(dev_raw: dict[str, Any], mutate: Any, message: str) -> None:
    mutate(dev_raw)
    assert message in problems(dev_raw)


def test_all_problems_are_reported_together(dev_raw: dict[str, Any]) -> None:
    dev_raw["vip"] = "10.99.0.1"
    dev_raw["port"] = 0
    dev_raw["vrrp"]["virtualRouterId"] = 0
    found = problems(dev_raw)
    assert len(found) == 3, found


def test_auth_pass_longer_than_8_is_refused_without_printing_it(dev_raw: dict[str, Any]) -> None:
    found = problems(dev_raw, auth_pass="supersecret9")
    assert found == ["lvs-lab:authPass: must be 1 to 8 characters: keepalived's PASS authentication silently "
                     "truncates longer passwords (got '<secret of 12 characters>')"]
    assert "supersecret9" not in str(found)


def test_auth_pass_must_be_a_secret(dev_raw: dict[str, Any]) -> None:
    assert problems(dev_raw, auth_pass="abc", secret=False) == [
        "lvs-lab:authPass: must be stored as a secret (pulumi config set --secret authPass ...) (got '<plaintext>')"]


def test_auth_pass_not_required(dev_raw: dict[str, Any]) -> None:
    assert parse_config(dev_raw, "dev", auth_pass=None).vrrp.version == 2


def test_committed_stacks_hold_no_checkout_specific_secrets() -> None:
    """A salt or ciphertext from one checkout's passphrase breaks every other checkout's `make up`. What git
    stores is checked (the index, through the salt filter): the plain pulumi CLI keeps its salt line in the
    working file of a checkout it ran in, by design (README: Using pulumi directly)."""
    from tests.conftest import ROOT, committed_text

    for path in (ROOT / "stacks").glob("Pulumi.*.yaml"):
        if path.name.startswith("Pulumi.ci") and path.name != "Pulumi.ci.yaml":
            continue  # generated by the ephemeral runner, git-ignored
        text = committed_text(f"stacks/{path.name}")
        assert "encryptionsalt" not in text and "secure:" not in text, path




def test_nginx_ha_stack_is_valid() -> None:
    cfg = parse_config(nginx_ha(), "nginx-ha")
    assert cfg.topology == "nginx-ha" and cfg.real_servers == () and cfg.master.name == "nginx1"
    assert (cfg.nginx_check.interval, cfg.nginx_check.fall, cfg.nginx_check.weight) == (2, 2, -60)
    # the script's 2 failed runs 2 s apart, the last one up to its 2 s timeout, then the VRRP bound
    assert cfg.failover_bound_seconds() == pytest.approx(6 + 3.609375)


def test_nginx_check_needs_topology_nginx_ha(dev_raw: dict[str, Any]) -> None:
    dev_raw["nginxCheck"] = {"weight": -60}
    assert problems(dev_raw) == ["lvs-lab:nginxCheck: is only used with topology nginx-ha (keepalived's check of "
                                 "nginx); with lvs-keepalived keepalived checks the real servers (healthCheck) "
                                 "(got {'weight': -60})"]


@pytest.mark.parametrize("value,parsed", [(None, "auto"), ("all", "all"), (3, 3), ("2", 2), ("auto", "auto")])
def test_boots_at_once_values(dev_raw: dict[str, Any], value: Any, parsed: str | int) -> None:
    if value is not None:
        dev_raw["vm"] = {"bootsAtOnce": value}
    assert parse_config(dev_raw, "dev", auth_pass="secret9").vm.boots_at_once == parsed

