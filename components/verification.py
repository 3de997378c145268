"""The lab's verification as command resources: once every node is ready (its `ready` command: cloud-init
done) and the directors' configuration is pushed, one `command.local.Command` per step running
`python -m lvslab.verify STEP`, each depending on the one before.

The local steps run where Pulumi runs; each step goes on to where the lab's bridge is: this host (inside
the lab's network namespace here), or a remote hypervisor over SSH (lvslab.verify relays it there), as
the node connections hop through it (README: "Where the checks run").
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from typing import Any

import pulumi
import pulumi_command as command

from components.node import Node
from lvslab.model import LabFacts, verify_spec
from lvslab.report import summary
from lvslab.verify.registry import steps_for
from lvslab.verify.run import KEY_VARIABLE

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

def pushed_digest(texts: list[str | None]) -> str:
    """One digest of what the directors were sent (the steps re-run when it changes)."""
    return hashlib.sha256("\0".join(t or "" for t in texts).encode()).hexdigest()


def _python() -> str:
    """The project's interpreter, relative to the project when inside it (stable across venv rebuilds)."""
    rel = os.path.relpath(sys.executable, ROOT)
    return sys.executable if rel.startswith("..") else rel


class Verification(pulumi.ComponentResource):
    """Runs when the lab is created or changed, or when verify.nonce changes; a no-change up re-runs nothing."""

    results: pulumi.Output[dict[str, Any]]

    def __init__(self, name: str, facts: LabFacts, nodes: list[Node], private_key: pulumi.Output[str],
                 configs: list[command.remote.Command],
                 opts: pulumi.ResourceOptions | None = None) -> None:
        """configs: the commands that push configuration to the nodes; the steps run after them."""
        super().__init__("lvslab:index:Verification", name, None, opts)
        cfg = facts.cfg
        spec = verify_spec(facts)
        # What a step's result depends on, beyond its spec (stdin): the lab's identity (a replaced domain, a new
        # id), the nonce, and what was pushed to the directors (keepalived.conf / ldirectord.cf: the health
        # check's path and status, the VRRP router id and password, the scheduler...), as a digest that stays a
        # secret (the pushed files carry the VRRP password).
        pushed = pulumi.Output.all(*[c.stdin for c in configs]).apply(pushed_digest)
        triggers = pulumi.Output.all(*[n.domain.id for n in nodes], pushed).apply(
            lambda ids: [*ids[:-1], cfg.verify.nonce, ids[-1]])
        previous: list[pulumi.Resource] = [*(n.ready for n in nodes), *configs]
        steps: dict[str, command.local.Command] = {}
        for step in steps_for(spec, cfg.verify.skip):
            steps[step] = command.local.Command(
                f"{name}-{step}", create=f"{_python()} -m lvslab.verify {step}", dir=ROOT, stdin=spec.to_json(),
                environment={KEY_VARIABLE: private_key}, triggers=triggers, logging=command.local.Logging.STDERR,
                opts=pulumi.ResourceOptions(parent=self, depends_on=previous, delete_before_replace=True))
            previous = [steps[step]]
        self.results = pulumi.Output.all(*[c.stdout for c in steps.values()]).apply(
            lambda outs: {step: json.loads(out) for step, out in zip(steps, outs, strict=True)})
        self.results.apply(lambda r: pulumi.log.info(summary(r, cfg.verify.skip), self) if r else None)
        remove, add = spec.health_check.window()
        self.register_outputs({"results": self.results, "failoverBoundSeconds": spec.failover_bound_s,
                               "healthCheckWindowSeconds": {"remove": remove, "add": add}})
