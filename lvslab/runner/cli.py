"""The runner's command line (tools/lvslab.py is its entry point)."""

from __future__ import annotations

import argparse
import os
from typing import Any

from lvslab.faults import RUNTIME_FAULTS
from lvslab.runner.access import ROLES, cmd_exec, cmd_ssh
from lvslab.runner.capture import FILTERS, cmd_capture
from lvslab.runner.ephemeral import cmd_ephemeral
from lvslab.runner.inject import cmd_fault
from lvslab.runner.lab import cmd_destroy, cmd_preview, cmd_status, cmd_up, cmd_verify
from lvslab.runner.pause import cmd_pause, cmd_resume
from lvslab.runner.reap import cmd_reap, duration
from lvslab.stackfile import ROOT, stack_file, unchanged_by_pulumi


def _boots(text: str) -> int:
    """--boots-at-once: a whole number 1-64 (vm.bootsAtOnce's numbers), said in one line when it is not."""
    if not (text.isascii() and text.isdigit() and 1 <= int(text) <= 64):
        raise argparse.ArgumentTypeError(f"must be a whole number of VMs from 1 to 64 (got {text!r})")
    return int(text)


def _living_in_the_lab(sub: Any) -> None:
    """The commands on a running lab beyond verify/status (issue 26) and the fleet's reaper (issue 27)."""
    shell = sub.add_parser("ssh", help="a shell on one node (or one command after --), through the lab's ssh "
                                        "config (.lvslab/ssh/STACK/config)")
    shell.add_argument("--stack", default="dev")
    shell.add_argument("node", help="a node name, e.g. director1 or web1")
    shell.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD: run it instead of a login shell")
    run = sub.add_parser("exec", help="a command on several nodes at once; output prefixed per node, exit status "
                                      "the worst")
    run.add_argument("--stack", default="dev")
    which = run.add_mutually_exclusive_group()
    which.add_argument("--nodes", help="comma-separated node names")
    which.add_argument("--role", choices=sorted(ROLES), help="all nodes of a role (default: all)")
    which.add_argument("--all", action="store_const", const="all", dest="role")
    run.add_argument("--group", action="store_true", help="each node's output under a header instead of prefixed")
    run.add_argument("--timeout", type=float, default=120, help="seconds per node (default 120)")
    run.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD (a pipeline as one quoted argument)")
    cap = sub.add_parser("capture", help="tcpdump on the lab's bridge or a node's interface: text as it comes, "
                                        "a pcap under artefacts/captures/")
    cap.add_argument("--stack", default="dev")
    cap.add_argument("--node", help="capture on this node's interface (default: the whole bridge)")
    cap.add_argument("--filter", default="lvs", help=f"one of {', '.join(sorted(FILTERS))} or a tcpdump expression "
                                                      "(default lvs: VRRP, ARP and the VIP's port)")
    cap.add_argument("--seconds", type=float, help="stop after this long (default: Ctrl-C)")
    cap.add_argument("--count", type=int, help="stop after this many packets")
    cap.add_argument("--pcap", help="write the packets here (default artefacts/captures/STACK-WHERE-TIME.pcap)")
    for name, text in (("pause", "suspend every node, then save each (libvirt's managed save); `resume` brings the "
                                 "lab back in seconds"),
                       ("resume", "restore every node paused, then run them all and set their clocks")):
        sub.add_parser(name, help=text).add_argument("--stack", default="dev")
    reap = sub.add_parser("reap", help="destroy the ephemeral labs whose runner stopped beating (the fleet store: "
                                       "a postgres:// state backend); kept labs are left alone")
    reap.add_argument("--older-than", type=duration, default=duration("10m"), metavar="DURATION",
                      help="no heartbeat for longer than this (90s, 10m, 2h; default 10m; runners beat every 10 s)")
    reap.add_argument("--dry-run", action="store_true", help="list what would be reaped, change nothing")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="lvs-lab runner")
    sub = parser.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up")
    up.add_argument("--watch", action="store_true",
                    help="poll the VIP during the update and count failed requests until the verification begins")
    preview = sub.add_parser("preview", help="what up would change; says whether a director would be rebuilt")
    preview.add_argument("--stack", default="dev")
    up.add_argument("--stack", default="dev")
    down = sub.add_parser("destroy")
    down.add_argument("--stack", default="dev")
    down.add_argument("--rm", action="store_true", help="also remove the stack")
    eph = sub.add_parser("ephemeral")
    eph.add_argument("--template", default="ci")
    eph.add_argument("--keep", action="store_true", help="keep the lab up for debugging")
    eph.add_argument("--fault", action="append", default=[], help="test-only fault (lvslab/faults.py)")
    eph.add_argument("--expect-fail", help="succeed only if this assertion id fails (and teardown is clean)")
    eph.add_argument("--artefacts", default=str(ROOT / "artefacts"))
    eph.add_argument("--real-servers", type=int)
    eph.add_argument("--boots-at-once", type=_boots, metavar="N",
                     help="first boots at a time (vm.bootsAtOnce, 1-64): labs booting side by side on one hypervisor "
                          "share its cores (measured in CI: 4 at once on 2 emulated cores cost 1.6 x per VM)")
    eph.add_argument("--failover-mode", choices=["clean", "hard"], help="clean: stop keepalived; hard: freeze VM")
    eph.add_argument("--json", help="write the run report here")
    eph.add_argument("--hypervisors", default=os.environ.get("LVSLAB_HYPERVISORS", ""),
                     help="comma-separated libvirt URIs the labs are placed on round-robin ('local': the "
                          "template's own; default $LVSLAB_HYPERVISORS, else the template's)")
    verify = sub.add_parser("verify", help="re-run the verification against the running lab (exit status = result)")
    verify.add_argument("--stack", default="dev")
    verify.add_argument("--json", help="write the step results here")
    verify.add_argument("--steps", help="comma-separated steps to run (default: all of the lab's, minus verify.skip)")
    status = sub.add_parser("status", help="each node's state, role, VRRP state and services; the IPVS table")
    status.add_argument("--stack", default="dev")
    fault = sub.add_parser("fault")
    fault.add_argument("--stack", required=True)
    fault.add_argument("--fault", required=True, action="append", choices=sorted(RUNTIME_FAULTS),
                       help="repeat to run several, one after another, on the lab loaded once")
    fault.add_argument("--expect", action="append",
                       help="the assertion id that must fail, one per --fault (default: each fault's own for this lab)")
    fault.add_argument("--recheck", action="store_true",
                       help="after the repair, run the fault's steps again (default: wait for the lab to settle)")
    _living_in_the_lab(sub)
    args = parser.parse_args(argv)
    if args.cmd in ("ssh", "exec") and args.command[:1] == ["--"]:
        args.command = args.command[1:]
    command = {"up": cmd_up, "destroy": cmd_destroy, "ephemeral": cmd_ephemeral, "fault": cmd_fault,
               "verify": cmd_verify, "status": cmd_status, "preview": cmd_preview, "ssh": cmd_ssh,
               "exec": cmd_exec, "capture": cmd_capture, "pause": cmd_pause, "resume": cmd_resume,
               "reap": cmd_reap}[args.cmd]
    if args.cmd in ("ephemeral", "reap"):  # their stack files are generated and removed again
        return command(args)
    with unchanged_by_pulumi(stack_file(args.stack)):
        return command(args)
