"""The assertion table, the bounds and the third-party client's parser.

- every CheckFailed names an assertion of lvslab.verify.assertions (read from the code's AST), and every
  assertion of the table is raised somewhere (no row without a check, no check without a row);
- the bounds are the formulas README states, pinned by exact values, so a loosened bound fails here;
- hey's summary is parsed from real hey runs against a local server (and a closed port)."""

from __future__ import annotations

import ast
import http.server
import shutil
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from lvslab.imports import ROOT
from lvslab.model import HealthCheckSpec
from lvslab.verify import bounds
from lvslab.verify.assertions import ASSERTIONS
from lvslab.verify.client import ThirdPartyClient, client_error_bound, parse_hey
from lvslab.verify.failure import CheckFailed

ID_PARAMETERS = {"assertion"}  # helpers that raise CheckFailed for their caller take the id under this name


def raised_ids(root: Path) -> tuple[set[str], list[str]]:
    """(assertion ids the verification code names, places where CheckFailed gets something not literal)."""
    ids: set[str] = set()
    dynamic = []
    for path in sorted((root / "lvslab" / "verify").rglob("*.py")):
        if path.name == "assertions.py":
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            args = []
            if isinstance(node.func, ast.Name) and node.func.id == "CheckFailed" and node.args:
                args.append(node.args[0])
            args += [k.value for k in node.keywords if k.arg in ID_PARAMETERS]
            for arg in args:
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    ids.add(arg.value)
                elif not isinstance(arg, ast.Name | ast.Subscript):
                    dynamic.append(f"{path.name}:{node.lineno}")
        for node in ast.walk(tree):  # ids kept in tables (dict values, tuples) and defaults
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in ASSERTIONS:
                ids.add(node.value)
    return ids, dynamic


def test_every_raised_assertion_is_in_the_table_and_every_row_is_raised() -> None:
    ids, dynamic = raised_ids(ROOT)
    assert dynamic == []  # ids are literal (or a name / table lookup of literals), so this test sees them
    assert sorted(ids - set(ASSERTIONS)) == []
    assert sorted(set(ASSERTIONS) - ids) == []


def test_a_planted_unknown_id_is_caught(tmp_path: Path) -> None:
    verify = tmp_path / "lvslab" / "verify"
    verify.mkdir(parents=True)
    (verify / "step.py").write_text('raise CheckFailed("round-robin.typo", "x", "y")\n')
    ids, _ = raised_ids(tmp_path)
    assert ids - set(ASSERTIONS) == {"round-robin.typo"}


def test_a_failed_check_names_its_assertion_and_the_repair() -> None:
    failed = CheckFailed("vip-arp.master-only", "only director1 answers", "answered by ['director1', 'web1']")
    assert failed.assertion == "vip-arp.master-only" and failed.check == "vip-arp"
    assert str(failed) == ("check vip-arp.master-only failed: expected only director1 answers; observed answered "
                           "by ['director1', 'web1']; repair: " + ASSERTIONS["vip-arp.master-only"].repair)
    own = CheckFailed("split-brain.one-holder", "one holder", "held by both; repair: restart keepalived")
    assert str(own).count("repair:") == 1


# --- bounds: exact values of the formulas --------------------------------------------------------------

@pytest.mark.parametrize("timer,persistence,age,ok", [
    (9, 10, 0.4, True), (10, 10, 0.0, True), (8, 10, 1.5, True),
    (7, 10, 1.5, False),  # older than the last request allows
    (59, 10, 0.5, False),  # persists 60 s where 10 s are configured (fault persistence-long)
    (11, 10, 0.0, False),
])
def test_template_timer(timer: int, persistence: int, age: float, ok: bool) -> None:
    assert bounds.template_timer_ok(timer, persistence, age) is ok


@pytest.mark.parametrize("timer,connections,deferrals,bound", [
    (9, [], 0, 10),  # no connection left: gone when its own timer fires (+1 s display granularity)
    (9, [3, 4, 8], 0, 10),  # connections gone first
    (9, [9], 1, 70),  # one as long as the timer (truncated display): it may outlive it, one deferral
    (9, [110], 2, 130),  # TIME_WAIT 120 s: re-armed twice
    (10, [69], 1, 71),
    (10, [70], 2, 131),  # may outlive the first re-arm by a fraction of a second: counted
])
def test_persistence_expiry_bound(timer: int, connections: list[int], deferrals: int, bound: int) -> None:
    assert bounds.template_deferrals(timer, connections) == deferrals
    assert bounds.persistence_expiry_bound(timer, connections) == bound


def test_health_windows() -> None:
    hc = HealthCheckSpec(type="HTTP_GET", delay_loop=2, connect_timeout=2, retry=1, delay_before_retry=1)
    # remove: 2 + (1 + 1) x (2 + 1) = 8, add: 2 + 2 = 4, each + 2 s allowance
    assert hc.window() == (8, 4)
    assert bounds.health_windows(hc) == (10.0, 6.0)
    assert bounds.CHECKER_ALLOWANCE_S == 2.0
    assert bounds.all_in_table_wait(hc) == 36  # 3 x 2 + 30: the gate before a step measures


def test_failover_gap_bounds(dev_raw: dict) -> None:
    from lvslab.config import parse_config
    from lvslab.model import derive, verify_spec

    spec = verify_spec(derive(parse_config(dev_raw, "dev")))
    prio = spec.backup.priority
    skew = (256 - prio) / 256
    assert spec.failover_bound_s == pytest.approx(3 * spec.advert_int + skew)
    # clean: the BACKUP's skew after the priority-0 advert + 1 s; hard: the master-down interval + 1 s
    assert bounds.failover_gap_bound(spec, "clean") == pytest.approx(round(skew + 1.0, 2))
    assert bounds.failover_gap_bound(spec, "hard") == pytest.approx(round(3 * spec.advert_int + skew + 1.0, 2))


@pytest.mark.parametrize("gap,interval,polls", [(0.0, 0.1, 1), (0.61, 0.1, 7), (3.34, 0.1, 34), (1.0, 0.2, 6)])
def test_failed_polls_bound(gap: float, interval: float, polls: int) -> None:
    assert bounds.failed_polls_bound(gap, interval) == polls


def test_client_error_bound() -> None:
    assert client_error_bound(1.61) == 18  # ceil(1.61 x 10/s) + 1
    assert client_error_bound(4.61) == 48


# --- hey, the third-party client -------------------------------------------------------------------------

@pytest.fixture
def local_server() -> Iterator[int]:
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802 (the standard library's name)
            self.send_response(200)
            self.send_header("Content-Length", "3")
            self.end_headers()
            self.wfile.write(b"ok\n")

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.tools
def test_hey_through_a_live_server_and_a_closed_port(local_server: int) -> None:
    if not shutil.which("hey"):
        pytest.fail("hey not installed: run tools/host.sh packages")
    good = ThirdPartyClient("127.0.0.1", local_server, 1).result()
    assert 5 <= good.requests <= 12 and good.errors == 0 and good.statuses == {"200": good.requests}, good
    assert good.slowest_s is not None and good.slowest_s < 1 and good.seconds == pytest.approx(1, abs=0.5)
    bad = ThirdPartyClient("127.0.0.1", closed_port(), 1).result()
    assert bad.statuses == {} and bad.errors == bad.requests >= 5, bad
    assert bad.error_kinds == {"connection refused": bad.errors} and bad.slowest_s in (None, 0.0)


@pytest.mark.tools
def test_hey_interrupted_still_reports(local_server: int) -> None:
    client = ThirdPartyClient("127.0.0.1", local_server, 60)
    threading.Event().wait(1.0)
    client.interrupt()
    figures = client.result(timeout=10)
    assert 3 <= figures.requests <= 15 and figures.errors == 0, figures


def test_hey_parser_on_recorded_output() -> None:
    """A real hey run (tests/unit/data/hey-failover.txt): a server answering 10 requests, two of them too late
    for -t 1, then gone (refused, one reset)."""
    figures = parse_hey((Path(__file__).parent / "data" / "hey-failover.txt").read_text())
    assert figures.statuses == {"200": 10} and figures.errors == 22 and figures.requests == 32, figures
    assert figures.error_kinds == {"context deadline exceeded (Client.Timeout exceeded while awaiting headers)": 2,
                                   "connection refused": 19, "connection reset by peer": 1}
    assert figures.slowest_s == 0.0021 and figures.seconds == 5.0139


def test_hey_parser_never_raises_on_garbage() -> None:
    import random

    rng = random.Random(7)
    alphabet = "[]:0123456789. \n\tSummaryTotalSlowestsecsStatus code distributionError distributionresponses"
    for _ in range(2000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 300)))
        figures = parse_hey(text)
        assert figures.requests == sum(figures.statuses.values()) + figures.errors >= 0


@pytest.mark.parametrize("held,active,label", [
    ({"director1": True, "director2": False}, "director1", "director1"),
    ({"director1": False, "director2": True}, "director2",
     "director2 (holds the VIP; the configured MASTER is director1)"),  # nopreempt: the BACKUP kept it
    ({"director1": True, "director2": True}, "director1", "director1"),  # split brain: the VIP checks say so
])
def test_checks_read_the_director_that_holds_the_vip(dev_raw: dict, held: dict, active: str, label: str) -> None:
    from lvslab.config import parse_config
    from lvslab.model import derive, verify_spec
    from lvslab.verify.context import StepContext

    asked = []

    class Lab(StepContext):
        def vip_holders(self, only: list[str] | None = None) -> dict[str, bool]:
            asked.append(1)
            return held

    ctx = Lab(verify_spec(derive(parse_config(dev_raw, "dev"))), None)  # type: ignore[arg-type]
    assert ctx.active_director().name == active and ctx.named(ctx.active_director()) == label
    ctx.active_director()
    assert len(asked) == 1  # asked once per step


def test_a_sorry_page_is_no_service_in_a_failover() -> None:
    """heartbeat after a takeover: the VIP answers with the director's fallback page until ldirectord has put
    the real servers in: that is part of the outage, not service."""
    from lvslab.verify.evaluate import outage
    from lvslab.verify.probe import PollEvent
    from lvslab.verify.steps.failover import served

    events = [PollEvent(0.0, True, "web1", "m1"), PollEvent(1.0, False, None, "m1"),
              PollEvent(2.0, True, "sorry-director2", "m2"), PollEvent(3.0, True, "sorry-director2", "m2"),
              PollEvent(9.5, True, "web2", "m2")]
    assert outage(events, 0.5) == (1.0, 1, [])  # any 200 counted: the gap looks like 1 s
    assert outage(events, 0.5, served) == (8.5, 3, [])  # a real server only at 9.5 s
