"""The ephemeral run's CI reports: the JUnit XML validates against Jenkins' junit-10.xsd (as pytest's own tests
use it, taken from pytest's pinned sdist on PyPI and cached) and reads back through junitparser; the HTML page,
opened in headless chromium, shows every test case's result."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lvslab.ci_reports import cases, html_report, junit_xml, write_ci_reports
from tests.report_tools import junit_schema, rendered_dom


def failed_report() -> dict[str, Any]:
    """A run whose up stopped at a failing check, then destroyed without leaks."""
    return {"stack": "ci3-abc123", "slot": 3, "hypervisor": "local", "seconds": 412.5,
            "phases": {"up": 380.2, "destroy": 30.1},
            "failed": ["up/verification: check failover.gap failed: expected service gap <= 1.61 s; observed 3.4 s"],
            "faults": ["backup-wrong-vrid"], "expect_fail": "split-brain.one-holder", "kept": False,
            "teardown": {"left": [], "unexplained": []}}


def passed_report() -> dict[str, Any]:
    return {"stack": "ci4-def456", "slot": 4, "hypervisor": "local", "seconds": 500.0,
            "phases": {"up": 400.0, "preview": 20.0, "refresh": 15.0, "preview-after-refresh": 18.0, "destroy": 40.0},
            "failed": [], "faults": [], "expect_fail": None, "kept": False, "teardown": {"left": []},
            "verification": {"readiness": {"passed": True, "duration_s": 12.5},
                             "round-robin": {"passed": True, "duration_s": 3.2, "counts": {"web1": 4, "web2": 4}},
                             "failover": {"passed": True, "duration_s": 9.8, "service_gap_s": 0.7}}}


def test_cases_follow_the_run() -> None:
    found = {f"{c.classname}.{c.name}": c for c in cases(failed_report())}
    assert found["phase.up"].failure and "failover.gap" in found["phase.up"].failure
    assert found["verification.failover.gap"].failure  # the step that stopped up, from its message
    assert found["fault.backup-wrong-vrid makes split-brain.one-holder fail"].failure  # the wrong check failed
    assert found["teardown.leak-check"].failure is None
    kept = passed_report() | {"kept": True}
    del kept["teardown"]
    assert [c.skipped for c in cases(kept) if c.classname == "teardown"] == ["lab kept (--keep): destroyed later"]


@pytest.mark.parametrize("report", [failed_report(), passed_report()])
def test_junit_xml_validates_and_reads_back(report: dict[str, Any], tmp_path: Path) -> None:
    import junitparser
    import xmlschema

    path = tmp_path / "report.xml"
    path.write_text(junit_xml(report))
    xmlschema.XMLSchema(str(junit_schema())).validate(str(path))
    suites = junitparser.JUnitXml.fromfile(str(path))
    suite = next(iter(suites))
    read = {f"{c.classname}.{c.name}": c for c in suite}
    assert suite.tests == len(read) == len(cases(report))
    assert suite.failures == sum(1 for c in cases(report) if c.failure)
    for case in cases(report):
        got = read[f"lvs-lab.{case.classname}.{case.name}"]
        assert got.time == pytest.approx(case.seconds, abs=0.05)
        assert got.is_passed == (case.failure is None and case.skipped is None)
        if case.failure:
            assert got.result[0].message == case.failure[:500]


def test_a_broken_report_fails_the_schema(tmp_path: Path) -> None:
    """The validation can fail: a test case without its name is refused by the schema."""
    import xmlschema

    text = junit_xml(passed_report()).replace('name="readiness" ', "", 1)
    with pytest.raises(xmlschema.XMLSchemaValidationError):
        xmlschema.XMLSchema(str(junit_schema())).validate(text)


@pytest.mark.tools
@pytest.mark.parametrize("report", [failed_report(), passed_report()])
def test_html_report_shows_every_case_in_a_browser(report: dict[str, Any], tmp_path: Path) -> None:
    import html.parser

    (tmp_path / "events.log").write_text("pulumi output\n")
    paths = write_ci_reports(report, tmp_path)
    assert [p.name for p in paths] == ["report.xml", "report.html"]
    dom = rendered_dom(tmp_path / "report.html")

    class Rows(html.parser.HTMLParser):
        """Each test-case row's cells, as the browser left them."""

        def __init__(self) -> None:
            super().__init__()
            self.rows: dict[str, list[str]] = {}
            self.current: str | None = None

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            case = dict(attrs).get("data-case")
            if tag == "tr" and case:
                self.current = case
                self.rows[case] = []

        def handle_data(self, data: str) -> None:
            if self.current and data.strip():
                self.rows[self.current].append(data.strip())

        def handle_endtag(self, tag: str) -> None:
            if tag == "tr":
                self.current = None

    rows = Rows()
    rows.feed(dom)
    for case in cases(report):
        cells = rows.rows[f"{case.classname}.{case.name}"]
        assert ("FAIL" if case.failure else "SKIP" if case.skipped else "PASS") in cells, cells
    assert ('class="fail">FAIL</span>' in dom) == bool(report["failed"])
    assert '<a href="events.log">events.log</a>' in dom and '<a href="report.xml">report.xml</a>' in dom


def test_html_is_self_contained_and_escaped(tmp_path: Path) -> None:
    """Pictures inlined as data: URIs (the page works when copied alone); a failure message is text, not markup."""
    picture = tmp_path / "run-topology.png"
    picture.write_bytes(b"\x89PNG\r\n\x1a\n" + b"0" * 16)
    report = failed_report()
    report["failed"] = ["up/verification: check x.y failed: <script>alert(1)</script>"]
    page = html_report(report, [picture], {})
    assert "data:image/png;base64," in page and 'src="run-topology.png"' not in page
    assert "<script>" not in page and "&lt;script&gt;" in page
