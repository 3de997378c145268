"""Where a step runs: where the lab's bridge is, here for a local hypervisor, on a remote one otherwise
(this package relayed over SSH, lvslab.hypervisor). Used by `python -m lvslab.verify`, the runner's
`verify` and its fault injection."""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

from lvslab.hypervisor import RELAYED_VARIABLE, parse_uri, relay
from lvslab.model import VerifySpec
from lvslab.verify.failure import CheckFailed
from lvslab.verify.registry import run_step

KEY_VARIABLE = "LVSLAB_SSH_PRIVATE_KEY"
FAILED_KEY = "check_failed"  # stdout of a failed step: {"check_failed": "check NAME failed: ..."}


class RelayedCheckFailed(CheckFailed):
    """A check that failed on the remote hypervisor (its message as the remote side wrote it)."""

    def __init__(self, message: str, shown: bool) -> None:
        RuntimeError.__init__(self, message)
        self.assertion = message.split()[1] if message.startswith("check ") else "relay.run"
        self.check = self.assertion.split(".", 1)[0]
        self.shown = shown  # the remote side already wrote it to stderr


def run(step: str, spec: VerifySpec, private_key: str) -> dict[str, Any]:
    """run_step where the lab's bridge is: on this machine, or relayed to the lab's remote hypervisor."""
    hv = parse_uri(spec.uri)
    if not hv.remote or os.environ.get(RELAYED_VARIABLE):
        return run_step(step, spec, private_key)
    there = dataclasses.replace(spec, uri=hv.local_uri)
    proc = relay(hv, "lvslab.verify", [step], there.to_json(), {KEY_VARIABLE: private_key})
    lines = proc.stdout.strip().splitlines()
    out = json.loads(lines[-1]) if lines and lines[-1].startswith("{") else {}
    if proc.returncode == 0 and FAILED_KEY not in out:
        return out
    if FAILED_KEY in out:
        raise RelayedCheckFailed(out[FAILED_KEY], shown=True)
    raise RelayedCheckFailed(f"check relay failed: expected step {step} to run on hypervisor {hv.name}; "
                             f"observed exit status {proc.returncode} (see above)", shown=False)


