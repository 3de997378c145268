"""What a CI system reads from an ephemeral run: JUnit XML (one test case per phase, per verification step, per
fault and for the leak check, each with its time and failure message) and one self-contained HTML page (steps,
figures, pictures inlined, links to the logs beside it). Both are built from the run's JSON report only."""

from __future__ import annotations

import base64
import json
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

# A failure message of the run -> the phase test case it belongs to (the first prefix that matches).
PHASE_OF_FAILURE = (("idempotency: a preview right after up", "preview"),
                    ("idempotency: a preview after refresh", "preview-after-refresh"),
                    ("destroy:", "destroy"), ("leak check:", "leak-check"), ("interrupted", "up"))
_CHECK_FAILED = re.compile(r"check (\S+) failed")


@dataclass(frozen=True)
class Case:
    """One JUnit test case: classname.name, seconds, and the failure message (None: passed) or a skip reason."""

    classname: str
    name: str
    seconds: float
    failure: str | None = None
    skipped: str | None = None


def cases(report: dict[str, Any]) -> list[Case]:
    """The run's test cases, in the order they ran."""
    failed: list[str] = list(report.get("failed") or [])
    verification: dict[str, Any] = report.get("verification") or {}
    found: list[Case] = []
    up_failure = next((f for f in failed if f.startswith("up/verification:")), None)
    for phase, seconds in (report.get("phases") or {}).items():
        problem = up_failure if phase == "up" else None
        problem = problem or next((f for f in failed for prefix, name in PHASE_OF_FAILURE
                                   if name == phase and f.startswith(prefix)), None)
        found.append(Case("phase", phase, float(seconds), problem))
    for step, result in verification.items():
        result = result or {}
        error = None if result.get("passed", True) else str(result.get("error") or "failed")
        found.append(Case("verification", step, float(result.get("duration_s") or 0.0), error))
    caught = _CHECK_FAILED.search(up_failure or "")
    if caught and not verification:  # up stopped at a failing step: its outputs were never written
        found.append(Case("verification", caught.group(1), 0.0, up_failure))
    expected = report.get("expect_fail")
    for fault in report.get("faults") or []:
        hit = bool(expected) and any(f"check {expected} failed" in f for f in failed)
        found.append(Case("fault", f"{fault} makes {expected or 'a check'} fail", 0.0,
                          None if hit else f"expected assertion {expected} to fail; failures: {failed}"))
    if "teardown" in report:
        leaks = next((f for f in failed if f.startswith("leak check:")), None)
        found.append(Case("teardown", "leak-check", 0.0, leaks))
    elif report.get("kept"):
        found.append(Case("teardown", "leak-check", 0.0, skipped="lab kept (--keep): destroyed later"))
    return found


def junit_xml(report: dict[str, Any]) -> str:
    """One <testsuite> in <testsuites>, the attributes Jenkins' junit-10.xsd (Ant's format) requires."""
    found = cases(report)
    suites = ET.Element("testsuites")
    suite = ET.SubElement(suites, "testsuite", {
        "name": f"lvs-lab.{report.get('stack', 'ephemeral')}", "tests": str(len(found)),
        "failures": str(sum(1 for c in found if c.failure)), "errors": "0",
        "skipped": str(sum(1 for c in found if c.skipped)), "time": f"{float(report.get('seconds') or 0):.1f}",
        "hostname": str(report.get("hypervisor", "local"))})
    props = ET.SubElement(suite, "properties")
    for key in ("stack", "slot", "hypervisor"):
        ET.SubElement(props, "property", {"name": key, "value": str(report.get(key, ""))})
    for case in found:
        element = ET.SubElement(suite, "testcase", {"classname": f"lvs-lab.{case.classname}", "name": case.name,
                                                   "time": f"{case.seconds:.1f}"})
        if case.skipped:
            ET.SubElement(element, "skipped", {"message": case.skipped})
        if case.failure:
            failure = ET.SubElement(element, "failure", {"message": case.failure[:500], "type": "AssertionError"})
            failure.text = case.failure
    ET.indent(suites)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


TEMPLATE = Path(__file__).with_name("ci_report.html.j2")


def html_report(report: dict[str, Any], pictures: list[Path], logs: dict[str, str]) -> str:
    """The page: one self-contained file (pictures as data: URIs), `logs` {label: relative link}."""
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    found = cases(report)
    figures = {step: json.dumps({k: v for k, v in (r or {}).items() if k not in ("passed", "timeline")},
                                indent=1, sort_keys=True)[:4000]
               for step, r in (report.get("verification") or {}).items()}
    return env.from_string(TEMPLATE.read_text()).render(
        report=report, cases=found, figures=figures, passed=not report.get("failed"),
        pictures=[(p.name, _data_uri(p)) for p in pictures if p.exists()], logs=logs)


def write_ci_reports(report: dict[str, Any], directory: Path) -> list[Path]:
    """report.xml and report.html in `directory` (the run's artefacts), linking what else lies there."""
    directory.mkdir(parents=True, exist_ok=True)
    xml_path, html_path = directory / "report.xml", directory / "report.html"
    xml_path.write_text(junit_xml(report))
    logs = {p.name: p.name for p in sorted(directory.iterdir())
            if p.is_file() and p.suffix in (".txt", ".log", ".json", ".xml")}
    logs |= {"consoles/": "consoles/"} if (directory / "consoles").is_dir() else {}
    html_path.write_text(html_report(report, sorted(directory.glob("*.png")), logs))
    return [xml_path, html_path]
