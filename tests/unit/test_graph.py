"""The resource graph under Pulumi mocks, found by type token: counts, parents, stack-prefixed names, the
domain type, NICs, replacement options, secrets; and that invalid config stops the program before any
resource is registered."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pulumi
import pytest
from pulumi.runtime import rpc

from lvslab import host
from lvslab.imports import ROOT
from lvslab.stackfile import load_config


def load_program() -> ModuleType:
    """The composition root, /__main__.py, as a module of its own name (its main() declares the lab)."""
    spec = importlib.util.spec_from_file_location("lvs_lab_program", ROOT / "__main__.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


program = load_program()
DOMAIN = "libvirt:index/domain:Domain"
VOLUME = "libvirt:index/volume:Volume"
NETWORK = "libvirt:index/network:Network"
POOL = "libvirt:index/pool:Pool"
LOCAL = "command:local:Command"
REMOTE = "command:remote:Command"
FAKE_KEY = "ssh-ed25519 AAAA test\n-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----\n"


def is_secret(value: Any) -> bool:
    """A value the engine receives wrapped as a secret."""
    return isinstance(value, dict) and value.get(rpc._special_sig_key) == rpc._special_secret_sig  # noqa: SLF001


class Recorder(pulumi.runtime.Mocks):
    def __init__(self) -> None:
        self.resources: list[pulumi.runtime.MockResourceArgs] = []
        self.options: dict[str, pulumi.ResourceOptions] = {}
        self.parents: dict[str, str | None] = {}

    def record(self, args: pulumi.ResourceTransformationArgs) -> None:
        parent = args.opts.parent if args.opts else None
        self.parents[args.name] = parent._name if parent is not None else None  # noqa: SLF001
        self.options[args.name] = args.opts

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        self.resources.append(args)
        outs = dict(args.inputs)
        rid = f"{args.name}-id"
        if args.typ == VOLUME:
            rid = f"/pool/{outs['name']}"
        if args.typ == LOCAL and "ssh-keygen" in outs.get("create", ""):
            outs["stdout"] = FAKE_KEY
        elif args.typ == LOCAL and "lvslab.verify" in outs.get("create", ""):
            outs["stdout"] = json.dumps({"passed": True, "step": outs["create"].split()[-1]})
        elif args.typ == LOCAL:
            outs["stdout"] = "generated"
        return rid, outs

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        return {}, None

    def of(self, typ: str) -> list[pulumi.runtime.MockResourceArgs]:
        return [r for r in self.resources if r.typ == typ]


@pytest.fixture
def image_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The host facts the program reads: the image files, and a hypervisor with 2 CPUs (vm.bootsAtOnce auto)."""
    for name in ("base.qcow2", "vmlinuz", "initrd.img", "repo.iso"):
        (tmp_path / name).write_text("x")
    monkeypatch.setattr(host, "local_image_dir", lambda: tmp_path)
    monkeypatch.setattr(host, "hypervisor_cpus", lambda hv: 2)
    return tmp_path


def run_program(raw: dict[str, Any], stack: str = "dev", mocks: Recorder | None = None) -> Recorder:
    mocks = mocks or Recorder()
    pulumi.runtime.set_mocks(mocks, project="lvs-lab", stack=stack, preview=False)
    secrets = ["lvs-lab:authPass"] if "authPass" in raw else []  # as `pulumi config set --secret` stores it
    pulumi.runtime.set_all_config({f"lvs-lab:{k}": json.dumps(v) for k, v in raw.items()}, secrets)

    @pulumi.runtime.test
    def declare() -> None:
        pulumi.runtime.register_stack_transformation(lambda a: mocks.record(a))
        program.main()

    declare()
    return mocks


@pytest.mark.parametrize("n_rs", [2, 5])
def test_graph(dev_raw: dict[str, Any], image_dir: Path, n_rs: int) -> None:
    dev_raw["domainType"] = "qemu"
    dev_raw["realServers"] = [{"name": f"web{i}", "address": f"10.77.0.{20 + i}", "weight": 1}
                              for i in range(1, n_rs + 1)]
    mocks = run_program(dev_raw)
    n = 2 + n_rs
    kinds = sorted(r.typ for r in mocks.resources if r.typ.startswith("lvslab:index:"))
    assert kinds.count("lvslab:index:Node") == n
    assert kinds.count("lvslab:index:Director") == 2 and kinds.count("lvslab:index:RealServer") == n_rs
    assert kinds.count("lvslab:index:Lab") == 1 and kinds.count("lvslab:index:Verification") == 1
    # Only the real providers' resources (and the project's components): no dynamic provider.
    assert {r.typ.split(":")[0] for r in mocks.resources} == {"lvslab", "libvirt", "command", "pulumi"}
    assert not [r for r in mocks.resources if "dynamic" in r.typ]

    domains = mocks.of(DOMAIN)
    assert len(domains) == n and len(mocks.of(NETWORK)) == 1 and len(mocks.of(POOL)) == 1
    assert len(mocks.of(VOLUME)) == 2 * n + 4  # overlays, seeds + base, kernel, initrd, repository
    assert len(mocks.of(REMOTE)) == n + 2  # one readiness wait per node, keepalived.conf pushed to each director
    # ssh key, VRRP password, host directories, one seed ISO per node, 7 steps
    assert len(mocks.of(LOCAL)) == 3 + n + 7
    for d in domains:
        ins = d.inputs
        assert ins["name"].startswith("lvs-lab-dev-") and ins["type"] == "qemu" and ins["machine"] == "pc"
        nics = ins["networkInterfaces"]
        assert len(nics) == 1 and nics[0]["networkId"] == "lvs-lab-dev-network-net-id"
        assert [x["volumeId"] for x in ins["disks"]] == [
            f"/pool/{ins['name']}.qcow2", f"/pool/{ins['name']}-seed.iso", "/pool/lvs-lab-dev-repo.iso"]
        assert ins["kernel"] == "/pool/lvs-lab-dev-vmlinuz" and ins["initrd"] == "/pool/lvs-lab-dev-initrd.img"
        assert ins["cmdlines"][-1] == {"_": "quiet ro"} and ins["cmdlines"][0]["root"] == "LABEL=rootfs"
        assert "<tb-cache unit=\"MiB\">256</tb-cache>" in ins["xml"]["xslt"]
        opts = mocks.options[d.name]
        assert opts.delete_before_replace and {"disks", "kernel", "cmdlines"} <= set(opts.replace_on_changes)
        assert sorted(r._name for r in opts.replace_with) == sorted([  # noqa: SLF001
            d.name.replace("-domain", "-disk"), d.name.replace("-domain", "-seed")])
    names = [r.inputs["name"] for r in mocks.resources if r.typ.startswith("libvirt:") and "name" in r.inputs]
    assert names and all(x.startswith("lvs-lab-dev-") for x in names)
    # Every fixed-name libvirt object goes before its replacement is created.
    for r in mocks.resources:
        if r.typ.startswith("libvirt:index/") and r.typ != "pulumi:providers:libvirt":
            assert mocks.options[r.name].delete_before_replace, r.name
    # Every resource has a parent component (only the Lab hangs off the stack).
    for name, parent in mocks.parents.items():
        assert (parent is None) == (name == "lvs-lab-dev"), name
    assert mocks.parents["director1-node-domain"] == "director1-node"
    assert mocks.parents["director1-node"] == "director1"
    assert mocks.parents["lvs-lab-dev-verification-failover"] == "lvs-lab-dev-verification"


def test_verification_steps_are_commands_in_order(dev_raw: dict[str, Any], image_dir: Path) -> None:
    mocks = run_program(dev_raw)
    steps = [r for r in mocks.of(LOCAL) if "lvslab.verify" in r.inputs.get("create", "")]
    assert [r.inputs["create"].split()[-1] for r in steps] == [
        "readiness", "lvs-state", "round-robin", "health-check", "failover", "failback", "restore"]
    spec = json.loads(steps[0].inputs["stdin"])
    assert spec["vip"] == "10.77.0.100" and [d["name"] for d in spec["directors"]] == ["director1", "director2"]
    env = steps[0].inputs["environment"]
    assert is_secret(env) and "LVSLAB_SSH_PRIVATE_KEY" in env["value"]  # the key reaches the step as a secret
    for prev, step in zip(steps, steps[1:], strict=False):
        assert [d._name for d in mocks.options[step.name].depends_on] == [prev.name]  # noqa: SLF001
    # The sorry-server step runs only in labs that have one, right after the health check.
    dev_raw["lvs"]["sorryServer"] = True
    with_sorry = [r.inputs["create"].split()[-1] for r in run_program(dev_raw).of(LOCAL)
                  if "lvslab.verify" in r.inputs.get("create", "")]
    assert with_sorry == ["readiness", "lvs-state", "round-robin", "health-check", "sorry-server", "failover",
                          "failback", "restore"]
    # verify.skip leaves steps out; the chain stays in order without them.
    dev_raw["verify"] = {"skip": ["failover", "failback", "health-check"]}
    skipped = [r for r in run_program(dev_raw).of(LOCAL) if "lvslab.verify" in r.inputs.get("create", "")]
    assert [r.inputs["create"].split()[-1] for r in skipped] == ["readiness", "lvs-state", "round-robin",
                                                                 "sorry-server", "restore"]
    ready = [r for r in mocks.of(REMOTE) if not r.name.endswith("-keepalived-conf")]
    hosts = set()
    for r in ready:
        conn = r.inputs["connection"]
        assert is_secret(conn)  # it carries the private key
        conn = conn["value"]
        hosts.add(conn["host"])
        assert conn["dialErrorLimit"] >= 60 and conn["perDialTimeout"] == 5
        assert "/run/cloud-init/result.json" in r.inputs["create"] and "cloud-init status" not in r.inputs["create"]
    assert hosts == {"10.77.0.11", "10.77.0.12", "10.77.0.21", "10.77.0.22"}


def test_seeds_are_built_here_and_replace_their_node(dev_raw: dict[str, Any], image_dir: Path) -> None:
    mocks = run_program(dev_raw)
    isos = {r.name: r for r in mocks.of(LOCAL) if "genisoimage" in r.inputs.get("create", "")}
    assert sorted(isos) == ["director1-node-seed-iso", "director2-node-seed-iso", "web1-node-seed-iso",
                            "web2-node-seed-iso"]
    # Director user-data holds the VRRP password: the whole environment is a secret.
    assert is_secret(isos["director1-node-seed-iso"].inputs["environment"])
    for r in isos.values():
        assert r.inputs["logging"] == "none" and "rm -f" in r.inputs["delete"]
    seeds = {r.name: r for r in mocks.of(VOLUME) if r.name.endswith("-seed")}
    assert len(seeds) == 4 and all(s.inputs["format"] == "iso" for s in seeds.values())
    assert seeds["web1-node-seed"].inputs["source"] == "/var/lib/lvs-lab/seeds/lvs-lab-dev/web1-seed.iso"
    assert mocks.options["web1-node-seed"].replacement_trigger is not None
    assert [r._name for r in mocks.options["web1-node-disk"].replace_with] == ["web1-node-seed"]  # noqa: SLF001


def test_secrets_stay_secret(dev_raw: dict[str, Any], image_dir: Path) -> None:
    mocks = run_program(dev_raw)
    for r in mocks.of(LOCAL):
        if "ssh-keygen" in r.inputs.get("create", "") or "urandom" in r.inputs.get("create", ""):
            assert mocks.options[r.name].additional_secret_outputs == ["stdout"]
            assert r.inputs["logging"] == "none"


def test_two_stacks_do_not_share_names(dev_raw: dict[str, Any], image_dir: Path) -> None:
    def names(stack: str) -> set[str]:
        return {r.inputs["name"] for r in run_program(dev_raw, stack).resources
                if r.typ.startswith("libvirt:index/") and "name" in r.inputs}
    a, b = names("a"), names("b")
    assert a and not a & b


@pytest.mark.parametrize("mutate,fragment", [
    (lambda r: r.update(vip="10.99.0.1"), "lvs-lab:vip: must be inside network.subnet"),
    (lambda r: r["vrrp"].update(virtualRouterId=0), "lvs-lab:vrrp.virtualRouterId: must be between 1 and 255"),
    (lambda r: r["realServers"][0].update(weight=-1), "lvs-lab:realServers[0].weight: must be between 0 and 65535"),
])
def test_invalid_config_registers_nothing(dev_raw: dict[str, Any], image_dir: Path, mutate: Any,
                                          fragment: str) -> None:
    mutate(dev_raw)
    mocks = Recorder()
    with pytest.raises(SystemExit) as err:
        run_program(dev_raw, mocks=mocks)
    assert fragment in str(err.value)
    assert mocks.resources == []


def test_misspelt_namespace_stops_the_program(dev_raw: dict[str, Any], image_dir: Path) -> None:
    mocks = Recorder()
    pulumi.runtime.set_mocks(mocks, project="lvs-lab", stack="dev", preview=False)
    config = {f"lvs-lab:{k}": json.dumps(v) for k, v in dev_raw.items()}
    pulumi.runtime.set_all_config({**config, "lvs_lab:vm": json.dumps({"vcpus": 2})}, [])

    @pulumi.runtime.test
    def declare() -> None:
        program.main()

    with pytest.raises(SystemExit) as err:
        declare()
    assert "lvs_lab:vm: unknown namespace 'lvs_lab'; did you mean 'lvs-lab:vm'?" in str(err.value)
    assert mocks.resources == []


def test_nginx_ha_is_two_nodes_and_its_own_steps(image_dir: Path) -> None:
    """topology nginx-ha: two VRRP nodes (the Director component with nginx-ha user-data), no real server,
    and the steps of that topology: the VIP served by the MASTER, then failover by stopping nginx."""
    raw = load_config("nginx-ha")
    mocks = run_program(raw, stack="nginx-ha")
    kinds = [r.typ for r in mocks.resources if r.typ.startswith("lvslab:index:")]
    assert kinds.count("lvslab:index:Director") == 2 and "lvslab:index:RealServer" not in kinds
    assert sorted(d.inputs["name"] for d in mocks.of(DOMAIN)) == ["lvs-lab-nginx-ha-nginx1", "lvs-lab-nginx-ha-nginx2"]
    steps = [r.inputs["create"].split()[-1] for r in mocks.of(LOCAL) if "lvslab.verify" in r.inputs.get("create", "")]
    assert steps == ["readiness", "vip-state", "failover", "failback", "restore"]
    assert len(mocks.of(REMOTE)) == 2  # readiness only: nginx-ha's keepalived.conf is in the user-data
    spec = json.loads(next(r for r in mocks.of(LOCAL) if "lvslab.verify" in r.inputs.get("create", ""))
                      .inputs["stdin"])
    assert spec["topology"] == "nginx-ha" and spec["real_servers"] == []
    assert spec["failover_bound_s"] == pytest.approx((2 + 1) * 2 + 3 * 1 + (256 - 100) / 256)


def _director_inputs(mocks: Recorder, push: str = "-keepalived-conf") -> dict[str, tuple[Any, Any]]:
    """Per director: (the environment its seed ISO is built from, the file its push command sends)."""
    seeds = {r.name.split("-")[0]: r.inputs["environment"] for r in mocks.of(LOCAL)
             if r.name.endswith("-seed-iso") and r.name.startswith("director")}
    pushes = {r.name.split("-")[0]: r.inputs["stdin"] for r in mocks.of(REMOTE) if r.name.endswith(push)}
    return {d: (seeds[d], pushes[d]) for d in seeds}


def test_keepalived_conf_is_pushed_not_baked(dev_raw: dict[str, Any], image_dir: Path) -> None:
    """lvs-keepalived: each director's keepalived.conf travels as the (secret) stdin of a command that waits
    for cloud-init, checks it with keepalived --config-test and reloads keepalived; it is not in the user-data.
    The verification steps wait for the pushes."""
    mocks = run_program(dev_raw)
    pushes = {r.name: r for r in mocks.of(REMOTE) if r.name.endswith("-keepalived-conf")}
    assert sorted(pushes) == ["director1-keepalived-conf", "director2-keepalived-conf"]
    for name, r in pushes.items():
        assert is_secret(r.inputs["stdin"]) and "virtual_server 10.77.0.100 80" in r.inputs["stdin"]["value"]
        assert "keepalived --config-test -f /etc/keepalived/keepalived.conf.new" in r.inputs["create"]
        assert "/run/cloud-init/result.json" in r.inputs["create"]
        assert r.inputs["triggers"] == [f"{name.split('-')[0]}-node-domain-id"]
    for environment, _ in _director_inputs(mocks).values():
        assert "virtual_server" not in environment["value"]["USER_DATA"]
    first = next(r for r in mocks.of(LOCAL) if r.inputs.get("create", "").endswith("lvslab.verify readiness"))
    assert {"director1-keepalived-conf", "director2-keepalived-conf"} <= {
        d._name for d in mocks.options[first.name].depends_on}  # noqa: SLF001


@pytest.mark.parametrize("change", [
    lambda r: r["realServers"].append({"name": "web3", "address": "10.77.0.23", "weight": 1}),
    lambda r: r["realServers"].pop(),
    lambda r: r["realServers"][0].update(weight=3),
    lambda r: r["lvs"].update(lbAlgo="wlc"),
    lambda r: r["healthCheck"].update(type="TCP_CHECK"),
])
def test_day2_changes_leave_the_directors_vms_alone(dev_raw: dict[str, Any], image_dir: Path, change: Any) -> None:
    """Adding or removing a real server, a weight, the scheduler, the health check: the directors' seeds (so
    their VMs) are the same; only what their push commands send changes (an in-place update)."""
    before = _director_inputs(run_program(dev_raw))
    change(dev_raw)
    after = _director_inputs(run_program(dev_raw))
    for d in ("director1", "director2"):
        assert after[d][0] == before[d][0], d  # same user-data, meta-data, network-config: no new VM
        assert after[d][1] != before[d][1], d  # a new keepalived.conf


@pytest.mark.parametrize("change", [
    lambda r: r["realServers"].append({"name": "web3", "address": "10.86.0.23", "weight": 1}),
    lambda r: r["realServers"].pop(),
    lambda r: r["realServers"][0].update(weight=3),
    lambda r: r["lvs"].update(lbAlgo="wlc"),
])
def test_heartbeat_day2_changes_leave_the_directors_vms_alone(image_dir: Path, change: Any) -> None:
    """lvs-heartbeat: ldirectord.cf is pushed (and ldirectord reloaded) like keepalived.conf, so the same
    day-2 changes leave the directors' seeds alone and change only what their ldirectord-conf commands send."""
    from tests.conftest import stack_config

    raw = stack_config("heartbeat")
    mocks = run_program(raw, stack="heartbeat")
    pushes = {r.name: r for r in mocks.of(REMOTE) if r.name.endswith("-ldirectord-conf")}
    assert sorted(pushes) == ["director1-ldirectord-conf", "director2-ldirectord-conf"]
    assert not [r for r in mocks.of(REMOTE) if r.name.endswith("-keepalived-conf")]
    for r in pushes.values():
        assert "virtual=10.86.0.100:80" in r.inputs["stdin"]["value"]
        assert "ldirectord -d /etc/ha.d/ldirectord.cf.new status" in r.inputs["create"]
    before = _director_inputs(mocks, "-ldirectord-conf")
    change(raw)
    after = _director_inputs(run_program(raw, stack="heartbeat"), "-ldirectord-conf")
    for d in ("director1", "director2"):
        assert after[d][0] == before[d][0], d
        assert after[d][1] != before[d][1], d


@pytest.mark.parametrize("setting,waits", [
    ("auto", {"director1": None, "director2": None, "web1": "director1", "web2": "director2"}),  # 2 CPUs (fixture)
    (1, {"director1": None, "director2": "director1", "web1": "director2", "web2": "web1"}),
    ("all", {"director1": None, "director2": None, "web1": None, "web2": None}),
])
def test_boots_at_once_orders_domains_after_readiness(dev_raw: dict[str, Any], image_dir: Path, setting: Any,
                                                      waits: dict[str, str | None]) -> None:
    """Under TCG at most vm.bootsAtOnce first boots share the CPU: a domain is created once the node it waits
    for is ready (its node's `ready` command, which the verification also waits for)."""
    dev_raw["domainType"] = "qemu"
    dev_raw["vm"] = {"bootsAtOnce": setting}
    mocks = run_program(dev_raw)
    for node, previous in waits.items():
        deps = {d._name for d in mocks.options[f"{node}-node-domain"].depends_on}  # noqa: SLF001
        assert deps == {"lvs-lab-dev-host-dirs", *([f"{previous}-node-ready"] if previous else [])}, node
        ready = next(r for r in mocks.of(REMOTE) if r.name == f"{node}-node-ready")
        assert mocks.parents[ready.name] == f"{node}-node"
        assert ready.inputs["triggers"] == [f"{node}-node-domain-id"]  # a new domain is a new first boot
    first_step = next(r for r in mocks.of(LOCAL) if r.inputs.get("create", "").endswith("lvslab.verify readiness"))
    assert {f"{n}-node-ready" for n in waits} <= {d._name for d in mocks.options[first_step.name].depends_on}  # noqa: SLF001


def test_kvm_boots_all_at_once_and_never_asks_for_cpus(dev_raw: dict[str, Any], image_dir: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    dev_raw["domainType"] = "kvm"
    monkeypatch.setattr(host, "kvm_works", lambda kernel, initrd: True)
    monkeypatch.setattr(host, "hypervisor_cpus", lambda hv: pytest.fail("CPU count read for a KVM lab"))
    mocks = run_program(dev_raw)
    for node in ("director1", "director2", "web1", "web2"):
        assert {d._name for d in mocks.options[f"{node}-node-domain"].depends_on} == {"lvs-lab-dev-host-dirs"}  # noqa: SLF001


def test_unreadable_cpu_count_stops_the_program(dev_raw: dict[str, Any], image_dir: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """vm.bootsAtOnce auto on a hypervisor whose cores cannot be read: one clear error, nothing created."""
    dev_raw["domainType"] = "qemu"

    def unreadable(hv: Any) -> int:
        raise host.HostError("lvs-lab:vm.bootsAtOnce is auto but the CPU count of hypervisor h could not be read")

    monkeypatch.setattr(host, "hypervisor_cpus", unreadable)
    mocks = Recorder()
    with pytest.raises(SystemExit) as err:
        run_program(dev_raw, mocks=mocks)
    assert "vm.bootsAtOnce is auto but the CPU count" in str(err.value) and mocks.resources == []
    dev_raw["vm"] = {"bootsAtOnce": 2}  # a number needs no count
    assert len(run_program(dev_raw).of(DOMAIN)) == 4


def _step_triggers(mocks: Recorder) -> dict[str, Any]:
    return {r.name: r.inputs["triggers"] for r in mocks.of(LOCAL) if "lvslab.verify" in r.inputs.get("create", "")}


@pytest.mark.parametrize("change", [
    lambda r: r["healthCheck"].update(expectStatus=204),
    lambda r: r["healthCheck"].update(type="HTTP_GET", path="/health"),
    lambda r: r["vrrp"].update(virtualRouterId=62),
    lambda r: r.update(authPass="n3wpass"),
    lambda r: r["lvs"].update(lbAlgo="wlc"),
], ids=["expectStatus", "path", "virtualRouterId", "authPass", "lbAlgo"])
def test_a_change_the_checks_depend_on_re_runs_them(dev_raw: dict[str, Any], image_dir: Path, change: Any) -> None:
    """Every input a step's result depends on is among its triggers (or its stdin, the spec): what the directors
    are sent is, as a secret digest (it carries the VRRP password); an unchanged program triggers nothing."""
    dev_raw["authPass"] = "s3cret"
    before = _step_triggers(run_program(dev_raw))
    assert before == _step_triggers(run_program(dev_raw))  # deterministic: a no-change up re-runs nothing
    assert all(is_secret(t) for t in before.values())
    change(dev_raw)
    after = _step_triggers(run_program(dev_raw))
    assert sorted(after) == sorted(before)
    assert all(after[name] != before[name] for name in before), change
