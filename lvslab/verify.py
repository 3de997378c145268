"""Run one verification step: `python -m lvslab.verify STEP`, the lab's VerifySpec as JSON on stdin, the
SSH private key in $LVSLAB_SSH_PRIVATE_KEY. The result goes to stdout as JSON; progress and the failure
line (`check NAME failed: expected ...; observed ...`) to stderr, exit status 1 on failure. The lab's
command resources run this, and so does the runner's fault injection.

The step runs where the lab's bridge is: here for a local hypervisor, on a remote one otherwise (relayed
over SSH, lvslab.hypervisor)."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from typing import Any

from lvslab.checks import STEPS, CheckFailed, run_step
from lvslab.hypervisor import RELAYED_VARIABLE, parse_uri, relay
from lvslab.model import VerifySpec

KEY_VARIABLE = "LVSLAB_SSH_PRIVATE_KEY"
FAILED_KEY = "check_failed"  # stdout of a failed step: {"check_failed": "check NAME failed: ..."}


class RelayedCheckFailed(CheckFailed):
    """A check that failed on the remote hypervisor (its message as the remote side wrote it)."""

    def __init__(self, message: str, shown: bool) -> None:
        RuntimeError.__init__(self, message)
        self.check = message.split()[1] if message.startswith("check ") else "relay"
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


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0] not in STEPS:
        print(f"usage: python -m lvslab.verify {{{','.join(STEPS)}}} < spec.json", file=sys.stderr)
        return 2
    step = args[0]
    key = os.environ.get(KEY_VARIABLE)
    if not key:
        print(f"{KEY_VARIABLE} is not set", file=sys.stderr)
        return 2
    spec = VerifySpec.from_json(sys.stdin.read())
    where = "" if os.environ.get(RELAYED_VARIABLE) or not parse_uri(spec.uri).remote else \
        f" on hypervisor {parse_uri(spec.uri).name}"
    print(f"lvs-lab verification step {step}{where} ...", file=sys.stderr, flush=True)
    try:
        result = run(step, spec, key)
    except CheckFailed as exc:
        if os.environ.get(RELAYED_VARIABLE):
            print(json.dumps({FAILED_KEY: str(exc)}), flush=True)
        if not getattr(exc, "shown", False):
            print(str(exc), file=sys.stderr, flush=True)
        return 1
    print(json.dumps(result, sort_keys=True), flush=True)
    print(f"lvs-lab verification step {step} passed in {result['duration_s']} s", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
