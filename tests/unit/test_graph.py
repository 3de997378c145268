"""The resource graph under Pulumi mocks: counts, parents, stack-prefixed names, domain type, NICs;
and that invalid config stops the program before any resource is registered."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pulumi
import pytest

from lvslab import host, program


class Recorder(pulumi.runtime.Mocks):
    def __init__(self) -> None:
        self.resources: list[pulumi.runtime.MockResourceArgs] = []
        self.parents: dict[str, str | None] = {}

    def record_parent(self, args: pulumi.ResourceTransformationArgs) -> None:
        parent = args.opts.parent if args.opts else None
        self.parents[args.name] = parent._name if parent is not None else None  # noqa: SLF001

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        self.resources.append(args)
        outs = dict(args.inputs)
        if "pool" in outs:  # volumes and seed disks (None inputs are not sent)
            outs["path"] = f"/pool/{outs['name']}"
        if "comment" in outs:
            outs.update(public_key="ssh-ed25519 AAAA test", private_key="PRIVATE")
        if "step" in outs:
            outs["result"] = json.dumps({"passed": True, "step": outs["step"]})
        if "length" in outs:
            outs["value"] = "generated"
        return f"{args.name}-id", outs

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        return {}, None


@pytest.fixture
def image_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("base.qcow2", "vmlinuz", "initrd.img", "repo.iso"):
        (tmp_path / name).write_text("x")
    monkeypatch.setattr(host, "local_image_dir", lambda: tmp_path)
    return tmp_path


def run_program(raw: dict[str, Any], stack: str = "dev", mocks: Recorder | None = None) -> Recorder:
    mocks = mocks or Recorder()
    pulumi.runtime.set_mocks(mocks, project="lvs-lab", stack=stack, preview=False)
    pulumi.runtime.set_all_config({f"lvs-lab:{k}": json.dumps(v) for k, v in raw.items()}, [])

    @pulumi.runtime.test
    def declare() -> None:
        pulumi.runtime.register_stack_transformation(lambda a: mocks.record_parent(a))
        program.main()

    declare()
    return mocks


def by_name(mocks: Recorder) -> dict[str, pulumi.runtime.MockResourceArgs]:
    return {r.name: r for r in mocks.resources}


@pytest.mark.parametrize("n_rs", [2, 5])
def test_graph(dev_raw: dict[str, Any], image_dir: Path, n_rs: int) -> None:
    dev_raw["domainType"] = "qemu"
    dev_raw["realServers"] = [{"name": f"web{i}", "address": f"10.77.0.{20 + i}", "weight": 1}
                              for i in range(1, n_rs + 1)]
    mocks = run_program(dev_raw)
    res = by_name(mocks)
    components = [r for r in mocks.resources if r.typ.startswith("lvslab:index:")]
    kinds = sorted(r.typ for r in components)
    assert kinds.count("lvslab:index:Node") == 2 + n_rs
    assert kinds.count("lvslab:index:Director") == 2 and kinds.count("lvslab:index:RealServer") == n_rs
    assert kinds.count("lvslab:index:Lab") == 1 and kinds.count("lvslab:index:Verification") == 1

    domains = [r for r in mocks.resources if "xml" in r.inputs and "console_log" in r.inputs]
    assert len(domains) == 2 + n_rs
    for d in domains:
        assert d.inputs["name"].startswith("lvs-lab-dev-")
        assert "<domain type='qemu'>" in d.inputs["xml"]
        assert d.inputs["xml"].count("<interface type='network'>") == 1
        assert "<source network='lvs-lab-dev-net'/>" in d.inputs["xml"]
    # 2 + n nodes x (disk, seed, domain) + pool + 4 uploads + network + key + password + 7 checks
    dynamic = [r for r in mocks.resources if r.typ == "pulumi-python:dynamic:Resource"]
    assert len(dynamic) == 3 * (2 + n_rs) + 1 + 4 + 1 + 2 + 7
    # Every libvirt object name carries the project and stack.
    names = [r.inputs["name"] for r in dynamic if "uri" in r.inputs]
    assert names and all(n.startswith("lvs-lab-dev-") for n in names)
    # Every resource has a parent component (only the Lab hangs off the stack).
    assert set(mocks.parents) == set(res)
    for name, parent in mocks.parents.items():
        assert (parent is None) == (name == "lvs-lab-dev"), name
    assert mocks.parents["director1-node-domain"] == "director1-node"
    assert mocks.parents["director1-node"] == "director1"
    assert mocks.parents["director1"] == "lvs-lab-dev"
    assert mocks.parents["lvs-lab-dev-verification-failover"] == "lvs-lab-dev-verification"


def test_two_stacks_do_not_share_names(dev_raw: dict[str, Any], image_dir: Path) -> None:
    dev_raw["domainType"] = "qemu"
    a = {r.inputs["name"] for r in run_program(dev_raw, "a").resources if "uri" in r.inputs}
    b = {r.inputs["name"] for r in run_program(dev_raw, "b").resources if "uri" in r.inputs}
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
