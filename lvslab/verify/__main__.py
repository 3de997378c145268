"""Run one verification step: `python -m lvslab.verify STEP`, the lab's VerifySpec as JSON on stdin, the
SSH private key in $LVSLAB_SSH_PRIVATE_KEY. The result goes to stdout as JSON; progress and the failure
line (`check NAME failed: expected ...; observed ...`) to stderr, exit status 1 on failure. The lab's
command resources run this (relayed to a remote hypervisor's bare python3 when the lab is there)."""

from __future__ import annotations

import json
import os
import sys

from lvslab.hypervisor import RELAYED_VARIABLE, parse_uri
from lvslab.model import VerifySpec
from lvslab.verify.failure import CheckFailed
from lvslab.verify.registry import STEPS
from lvslab.verify.run import FAILED_KEY, KEY_VARIABLE, run


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
