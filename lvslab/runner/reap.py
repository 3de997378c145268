"""`reap`: destroy the ephemeral labs whose runner stopped beating (killed hard, its machine gone), from any
machine that reaches the fleet store, the state backend and the lab's hypervisor.

Per lab: take it over in the store (one reaper per lab), restore its stack file from the store when this
machine has none, remove the dead run's stack lock, destroy (a refresh and a second try after the interrupted
update), purge by name what the state never recorded, check for leaks, remove the stack and free the slot."""

from __future__ import annotations

import argparse
import re
from datetime import timedelta

from pulumi import automation as auto

from lvslab.config import parse_config
from lvslab.model import derive
from lvslab.runner.access import remove_ssh_config
from lvslab.runner.fleet import FleetError, Heartbeat, Lab, Store, redact, runner_id, stale, store_url
from lvslab.runner.guard import log
from lvslab.runner.stacks import destroy_stack, leak_check, leak_check_of, pending_creates
from lvslab.stackfile import ROOT, load_config, stack_file

DURATION = re.compile(r"(\d+)([smhd])")
UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def duration(text: str) -> timedelta:
    """--older-than: a whole number with a unit, s, m, h or d (90s, 10m, 2h), said in one line when not."""
    match = DURATION.fullmatch(text.strip())
    if not match or not text.isascii():
        raise argparse.ArgumentTypeError(f"must be a whole number with a unit s, m, h or d, e.g. 10m (got {text!r})")
    return timedelta(seconds=int(match[1]) * UNIT_S[match[2]])


def cmd_reap(args: argparse.Namespace) -> int:
    url = store_url()
    if not url:
        log("reap needs the fleet store: set PULUMI_BACKEND_URL to the team's postgres:// state backend (or "
            "LVSLAB_FLEET_DB); a lab of this machine alone: `tools/lvslab.py destroy --stack NAME --rm`")
        return 2
    try:
        return _reap(Store(url), url, args)
    except FleetError as exc:
        log(f"reap: {exc}")
        return 2


def _reap(store: Store, url: str, args: argparse.Namespace) -> int:
    now, labs = store.labs()
    chosen = stale(labs, now, args.older_than)
    log(f"fleet store {redact(url)}: {len(labs)} lab(s), {len(chosen)} without a heartbeat for more than "
        f"{args.older_than.total_seconds():.0f} s and not kept")
    for lab in labs:
        age = (now - lab.heartbeat).total_seconds()
        verdict = "REAP" if lab in chosen else ("kept" if lab.kept else "alive")
        print(f"  {verdict:<5} {lab.stack:<14} slot {lab.slot:<3} runner {lab.runner}, heartbeat {age:.0f} s ago, "
              f"on {lab.hypervisor}", flush=True)
    if args.dry_run:
        return 0
    me = f"reaper {runner_id()}"
    failed = [lab.stack for lab in chosen if not reap_one(store, url, lab, me, args.older_than)]
    store.close()
    if failed:
        log(f"reap: {', '.join(failed)} not reaped (see above); the store keeps them for the next reap")
    return 1 if failed else 0


def reap_one(store: Store, url: str, lab: Lab, me: str, older_than: timedelta) -> bool:
    """True when the lab is gone (or another reaper has it); False keeps its row for a later reap."""
    if not store.take_over(lab.stack, me, older_than):
        log(f"{lab.stack}: taken over by another reaper (or its runner beat again): left alone")
        return True
    beat = Heartbeat(url, lab.stack, me).start()
    try:
        done = _destroy_lab(lab)
    finally:
        beat.stop()
    if done:
        store.release(lab.stack)
        log(f"{lab.stack}: reaped (destroyed, leak check clean, stack removed), slot {lab.slot} free")
    return done


def _destroy_lab(lab: Lab) -> bool:
    path = stack_file(lab.stack)
    if not path.exists():
        if not lab.stack_file:  # the runner died right after its claim: nothing was created
            return True
        path.write_text(lab.stack_file)  # reaped from another machine than the runner's
    try:
        stack = auto.select_stack(stack_name=lab.stack, work_dir=str(ROOT))
    except auto.errors.StackNotFoundError:
        stack = None
    if stack is None:  # the runner died before pulumi created the stack: only names can be left
        raw = {k: v for k, v in load_config(lab.stack).items() if k != "authPass"}
        record = leak_check_of(derive(parse_config(raw, lab.stack, auth_pass=None)), purge_left=True)
    else:
        stack.cancel()  # the dead run's lock (pulumi would refuse every operation on the stack)
        pending = pending_creates(stack)
        destroyed, error = destroy_stack(stack, interrupted=True)
        if not destroyed:
            log(f"{lab.stack}: destroy failed: {error}")
            return False
        record = leak_check(stack, lab.stack, purge_left=True, pending=pending)
    if record.left:
        return False
    if stack is not None:
        stack.workspace.remove_stack(lab.stack, force=True)  # (pulumi removes the stack file with it)
    remove_ssh_config(lab.stack)
    path.unlink(missing_ok=True)
    return True
