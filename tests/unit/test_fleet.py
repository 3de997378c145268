"""The fleet store on a real PostgreSQL (Debian's server, a Unix socket only, stopped by PID): slot claims
under contention never collide and placement balances over every runner's labs; the reaper picks exactly the
stale labs that are not kept and one reaper takes a lab; heartbeats; the store URL and the lock message."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from lvslab.runner import fleet
from lvslab.runner.fleet import TABLE, FleetError, Heartbeat, Store, stack_lock_message, stale, store_url
from lvslab.runner.reap import duration
from tests.pgserver import PgServer, postgres

HVS = ["qemu+ssh://root@hv-a/system", "qemu+ssh://root@hv-b/system"]


@pytest.fixture(scope="module")
def server() -> Iterator[PgServer]:
    with postgres(port=55433) as pg:
        yield pg


@pytest.fixture
def store(server: PgServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    monkeypatch.setenv("PGPASSWORD", server.password)
    s = Store(store_url({"PULUMI_BACKEND_URL": server.url}) or "")
    s.conn.execute(f"DELETE FROM {TABLE}")
    yield s
    s.close()


def claim_all(url: str, n: int, candidates: list[str]) -> list[tuple[int, str, str]]:
    """n runners (threads, each its own connection) claiming at the same moment."""
    start = threading.Barrier(n)
    out: list[tuple[int, str, str]] = []
    errors: list[BaseException] = []

    def one(i: int) -> None:
        s = Store(url)
        try:
            start.wait()
            out.append(s.claim(f"runner{i}", candidates, lambda slot: f"ci{slot}-r{i}"))
        except BaseException as exc:  # noqa: BLE001 - collected and shown by the test
            errors.append(exc)
        finally:
            s.close()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    return out


def test_concurrent_claims_never_collide_and_placement_balances(store: Store) -> None:
    claims = claim_all(store.url, 40, HVS)
    slots = [c[0] for c in claims]
    assert sorted(slots) == list(range(1, 41))  # no duplicate, no gap: the lowest free slot each time
    assert len({c[1] for c in claims}) == 40 and all(c[1].startswith(f"ci{c[0]}-") for c in claims)
    assert Counter(c[2] for c in claims) == {HVS[0]: 20, HVS[1]: 20}  # placed by every runner's labs
    _, labs = store.labs()
    assert [lab.slot for lab in labs] == list(range(1, 41))


def test_placement_counts_the_other_runners_labs(store: Store) -> None:
    """Runner 1 has two labs on hv-a: runner 2's next lab goes to hv-b although hv-a is first in its list."""
    for i in range(2):
        store.claim("runner1", HVS[:1], lambda slot, i=i: f"ci{slot}-a{i}")
    assert store.claim("runner2", HVS, lambda slot: f"ci{slot}-b")[2] == HVS[1]
    store.release("ci1-a0")
    assert store.claim("runner3", HVS, lambda slot: f"ci{slot}-c")[:2] == (1, "ci1-c")  # a freed slot is reused


def test_a_full_store_refuses_with_a_message(store: Store) -> None:
    with store.conn.cursor() as cur:
        cur.executemany(f"INSERT INTO {TABLE} (slot, stack, runner, hypervisor) VALUES (%s, %s, 'r', 'h')",
                        [(s, f"ci{s}-x") for s in fleet.SLOTS])
    with pytest.raises(FleetError, match="all 199 fleet slots are taken .*reap"):
        store.claim("r", HVS, lambda slot: f"ci{slot}-y")


def test_the_reaper_chooses_stale_labs_that_are_not_kept(store: Store) -> None:
    for name in ("fresh", "stale", "kept"):
        store.claim("runner", HVS, lambda slot, n=name: n)
    store.conn.execute(f"UPDATE {TABLE} SET heartbeat = now() - interval '5 minutes' WHERE stack <> 'fresh'")
    store.keep("kept")
    now, labs = store.labs()
    assert [lab.stack for lab in stale(labs, now, timedelta(minutes=2))] == ["stale"]
    assert stale(labs, now, timedelta(minutes=10)) == []
    # one reaper per lab: the first takes it over (its heartbeat now fresh), a second one finds nothing stale
    assert store.take_over("stale", "reaper A", timedelta(minutes=2))
    assert not store.take_over("stale", "reaper B", timedelta(minutes=2))
    assert not store.take_over("kept", "reaper B", timedelta(minutes=2))
    now, labs = store.labs()
    assert stale(labs, now, timedelta(minutes=2)) == []
    assert {lab.stack: lab.runner for lab in labs}["stale"] == "reaper A"


def test_the_heartbeat_beats_until_stopped_and_yields_to_a_reaper(store: Store) -> None:
    store.claim("runner", HVS, lambda slot: "lab")
    store.conn.execute(f"UPDATE {TABLE} SET heartbeat = now() - interval '1 hour'")
    beat = Heartbeat(store.url, "lab", "runner", interval=0.2).start()
    time.sleep(1.0)
    beat.stop()
    now, labs = store.labs()
    assert (now - labs[0].heartbeat).total_seconds() < 2
    assert store.beat("lab", "runner") and store.take_over("lab", "reaper", timedelta(minutes=1)) is False
    store.conn.execute(f"UPDATE {TABLE} SET heartbeat = now() - interval '1 hour'")
    assert store.take_over("lab", "reaper", timedelta(minutes=1))
    assert not store.beat("lab", "runner")  # the lab is the reaper's now


def test_an_unreachable_store_is_one_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGPASSWORD", "wrong")
    with pytest.raises(FleetError, match=r"cannot be reached.*PGPASSWORD") as err:
        Store("postgres://lvslab:secret@/lvslab?host=/nonexistent&port=5&sslmode=disable")
    assert "secret" not in str(err.value)


def test_the_store_url_comes_from_the_state_backend() -> None:
    pg = "postgres://team@db.example:5432/pulumi?table=state&sslmode=verify-full"
    assert store_url({"PULUMI_BACKEND_URL": pg}) == "postgres://team@db.example:5432/pulumi?sslmode=verify-full"
    assert store_url({"PULUMI_BACKEND_URL": "file:///x/.lvslab/state"}) is None
    assert store_url({"PULUMI_BACKEND_URL": "file:///x", "LVSLAB_FLEET_DB": "postgresql://a@b/c"}) == "postgresql://a@b/c"
    assert fleet.redact("postgres://u:pw@h/d") == "postgres://u:****@h/d"
    assert fleet.redact("postgres://u@h/d") == "postgres://u@h/d"


LOCKED = ("error: the stack is currently locked by 1 lock(s). Either wait for the other process(es) to end or "
          "delete the lock file with `pulumi cancel`.\n  postgres://lvslab@127.0.0.1:5544/lvslab/.pulumi/locks/"
          "organization/lvs-lab/ci3-abc/1f.json: created by root@runner-a (pid 4242) at 2026-12-05T10:00:00Z")


def test_the_lock_refusal_says_who_holds_the_lab(store: Store, server: PgServer,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LVSLAB_FLEET_DB", raising=False)
    monkeypatch.setenv("PULUMI_BACKEND_URL", "file:///nowhere")
    text = stack_lock_message("ci3-abc", LOCKED) or ""
    assert "stack ci3-abc is being updated by another pulumi run by root@runner-a (pid 4242" in text
    assert "nothing was changed" in text and "reap" in text and "pulumi cancel -s ci3-abc" in text
    assert stack_lock_message("ci3-abc", "error: some other failure") is None
    # with the fleet store: which runner owns the lab and how long ago it beat
    monkeypatch.setenv("PULUMI_BACKEND_URL", server.url)
    store.claim("ci-job-17", HVS, lambda slot: "ci3-abc")
    text = stack_lock_message("ci3-abc", LOCKED) or ""
    assert "the fleet store has it as runner ci-job-17's lab, last heartbeat 0 s ago" in text


@pytest.mark.parametrize("text,seconds", [("90s", 90), ("10m", 600), ("2h", 7200), ("1d", 86400)])
def test_older_than_durations(text: str, seconds: int) -> None:
    assert duration(text).total_seconds() == seconds


@pytest.mark.parametrize("text", ["10", "m", "-5m", "1.5h", "١٠m", "10 minutes", ""])
def test_bad_older_than_is_one_message(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="whole number with a unit s, m, h or d"):
        duration(text)


def test_an_unreachable_state_backend_fails_the_run_in_one_line(server: PgServer, store: Store,
                                                                 tmp_path: Path) -> None:
    """The store answers, Pulumi's backend does not: the ephemeral run says so in one line (no traceback),
    creates nothing, frees its row and removes its stack file."""
    from lvslab.stackfile import ROOT

    env = {**os.environ, **server.env, "LVSLAB_FLEET_DB": server.url, "LVSLAB_RUNNER": "runner-u",
           "PULUMI_BACKEND_URL": "postgres://nobody@/nothing?host=/nonexistent&port=1&sslmode=disable",
           "PULUMI_CONFIG_PASSPHRASE": "x", "PATH": f"{ROOT / '.lvslab' / 'bin'}:{os.environ['PATH']}"}
    env.pop("PULUMI_CONFIG_PASSPHRASE_FILE", None)
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "lvslab.py"), "ephemeral", "--template", "nginx-ha",
                           "--artefacts", str(tmp_path), "--json", str(tmp_path / "r.json")],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and "Traceback" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert len(report["failed"]) == 1 and report["failed"][0].startswith("state backend: "), report["failed"]
    assert "unable to open state database" in report["failed"][0], report["failed"]
    assert store.labs()[1] == [] and not (ROOT / "stacks" / f"Pulumi.{report['stack']}.yaml").exists()
