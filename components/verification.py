"""The lab's verification: one Check resource per step, each depending on the one before.

The checks run where Pulumi runs, which must be on the lab bridge (the hypervisor host, inside the lab's
network namespace here). For a remote hypervisor, run `pulumi up` on a machine attached to the bridge
(see README: "Where the checks run").
"""

from __future__ import annotations

import json
from typing import Any

import pulumi

from components.node import Node
from lvslab.checks import STEPS, health_check_window
from lvslab.config import LabConfig
from lvslab.render import mac_for
from providers.command import Check


def verification_spec(cfg: LabConfig) -> dict[str, Any]:
    """What the checks need to know about the lab (no secrets)."""
    hc = cfg.health_check

    def node(n: Any, **extra: Any) -> dict[str, Any]:
        return {"name": n.name, "address": n.address, "mac": mac_for(cfg.stack, n.name),
                "domain": f"{cfg.prefix}-{n.name}", **extra}

    return {
        "uri": cfg.libvirt_uri, "vip": cfg.vip, "port": cfg.port, "bridge": cfg.bridge,
        "host_address": cfg.host_address, "lb_algo": cfg.lb_algo, "persistence": cfg.persistence_timeout,
        "directors": [node(d, state=d.state, priority=d.priority) for d in cfg.directors],
        "real_servers": [node(s, weight=s.weight) for s in cfg.real_servers],
        "health_check": {"delay_loop": hc.delay_loop, "connect_timeout": hc.connect_timeout, "retry": hc.retry,
                         "delay_before_retry": hc.delay_before_retry},
        "advert_int": cfg.vrrp.advert_int, "preempt": cfg.vrrp.preempt,
        "failover_bound_s": cfg.failover_bound_seconds(), "failover_mode": cfg.verify.failover_mode,
        "requests_per_server": cfg.verify.requests_per_server, "ready_timeout": cfg.verify.ready_timeout,
    }


def summary(results: dict[str, dict[str, Any]]) -> str:
    """A readable one-screen summary of the verification results."""
    lines = ["lvs-lab verification:"]
    ordered = [s for s in STEPS if s in results] + [s for s in results if s not in STEPS]  # outputs come key-sorted
    for step in ordered:
        r = results[step]
        detail = {k: v for k, v in r.items() if k not in ("passed", "sequence", "ipvsadm_stats", "nodes")}
        if "nodes" in r:
            detail["boot_to_ready_s"] = {n: v.get("boot_to_ready_s") for n, v in r["nodes"].items()}
        lines.append(f"  {'PASS' if r.get('passed') else 'FAIL'} {step:<13} {json.dumps(detail)}")
    return "\n".join(lines)


class Verification(pulumi.ComponentResource):
    """Runs when the lab is created or changed, or when verify.nonce changes; a no-change up re-runs nothing."""

    results: pulumi.Output[dict[str, Any]]

    def __init__(self, name: str, cfg: LabConfig, nodes: list[Node], private_key: pulumi.Output[str],
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("lvslab:index:Verification", name, None, opts)
        spec_dict = verification_spec(cfg)
        logs = {n.name: n.console_log for n in nodes}
        for node in spec_dict["directors"] + spec_dict["real_servers"]:
            node["console_log"] = logs[node["name"]]
        spec = json.dumps(spec_dict, sort_keys=True)
        # Lab identity: any replaced domain (new id) re-runs every check; so does a new nonce.
        triggers = pulumi.Output.all(*[n.domain.id for n in nodes]).apply(lambda ids: [*ids, cfg.verify.nonce])
        previous: pulumi.Resource | None = None
        checks: dict[str, Check] = {}
        for step in STEPS:
            deps = [previous] if previous else [n.domain for n in nodes]
            checks[step] = Check(f"{name}-{step}", step=step, spec=spec, triggers=triggers, private_key=private_key,
                                 opts=pulumi.ResourceOptions(parent=self, depends_on=deps))
            previous = checks[step]
        self.results = pulumi.Output.all(*[c.result for c in checks.values()]).apply(
            lambda rs: {step: json.loads(r) for step, r in zip(checks, rs, strict=False)})
        self.results.apply(lambda r: pulumi.log.info(summary(r), self) if r else None)
        remove, add = health_check_window({**verification_spec(cfg)["health_check"]})
        self.register_outputs({"results": self.results, "failoverBoundSeconds": cfg.failover_bound_seconds(),
                               "healthCheckWindowSeconds": {"remove": remove, "add": add}})
