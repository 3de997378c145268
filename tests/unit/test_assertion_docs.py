"""README's assertion table is generated from the assertion table and the e2e tests (make docs); its fault
tables list exactly the faults `.ci/run` runs, each in the module that runs it."""

from __future__ import annotations

import re
from pathlib import Path

from lvslab import assertion_docs
from lvslab.faults import CLOUD_INIT_FAULTS, RUNTIME_FAULTS

FAULTS = set(RUNTIME_FAULTS) | set(CLOUD_INIT_FAULTS)


def test_readme_assertion_table_is_generated() -> None:
    text = assertion_docs.README.read_text()
    assert assertion_docs.readme_with_table(text) == text, "README.md drifted: make docs"


def test_a_fault_dropped_from_ci_changes_the_table(tmp_path: Path) -> None:
    e2e = tmp_path / "e2e"
    e2e.mkdir()
    for path in assertion_docs.E2E.glob("test_*.py"):
        (e2e / path.name).write_text(path.read_text().replace('("persistence-long", ', '("persistence-gone", '))
    runs = assertion_docs.ci_fault_runs(e2e)
    assert "persistence.template-timer" not in runs
    assert assertion_docs.ci_fault_runs()["persistence.template-timer"] == [("persistence-long", "test_sticky_tun")]


def readme_table(title: str) -> list[list[str]]:
    text = assertion_docs.README.read_text()
    start = text.index(title)
    lines = text[start:].split("\n\n", 2)[1].splitlines()
    return [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:] if line.startswith("|")]


def test_readme_fault_tables_list_exactly_what_ci_runs() -> None:
    ci = {fault for runs in assertion_docs.ci_fault_runs().values() for fault, _ in runs}
    by_module: dict[str, set[str]] = {}
    for runs in assertion_docs.ci_fault_runs().values():
        for fault, module in runs:
            by_module.setdefault(module, set()).add(fault)
    named = set()
    for row in readme_table("**Features and how each is verified**"):
        named |= {f for f in re.findall(r"[a-z0-9]+(?:-[a-z0-9]+)+", row[-1]) if f in FAULTS}
    assert named <= ci, f"README names faults CI does not run: {sorted(named - ci)}"
    per_lab: dict[str, set[str]] = {}
    for row in readme_table("**What `.ci/run` boots**"):
        module = re.search(r"\((test_[a-z_]+)", row[0])
        assert module, row
        per_lab.setdefault(module.group(1), set()).update(f for f in re.findall(r"[a-z0-9]+(?:-[a-z0-9]+)+", row[-1])
                                                          if f in FAULTS)
    assert per_lab == {m: faults for m, faults in by_module.items()}, (per_lab, by_module)
