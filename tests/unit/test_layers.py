"""The layers, held to their rules by reading the imports (AST), not by a comment:

- the verification's import closure (computed from `python -m lvslab.verify`, the code relayed to a bare
  python3 on a remote hypervisor) imports nothing outside the standard library and the project;
- only components/ imports the providers (pulumi_libvirt, pulumi_command);
- the runner (tools/) never imports components/ (it drives the program through the Automation API);
- lvslab/ never imports components/ (no package cycle: the composition root, /__main__.py, joins them);
- no module imports another module's _private name.

Each rule is also shown failing on a planted violation, so a rule that cannot fail is caught here too."""

from __future__ import annotations

from pathlib import Path

import pytest

from lvslab.imports import ROOT, VERIFY_ENTRY, closure, imported_names, outside_stdlib

PROVIDERS = ("pulumi_libvirt", "pulumi_command")


def project_files(root: Path) -> dict[str, Path]:
    """{module: file} of every Python file of the project (tests aside: they may reach into anything)."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if rel.parts[0] in ("tests", ".lvslab", ".venv") or rel.parts[0].startswith("."):
            continue
        parts = list(rel.with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts) or "__main__"] = path
    return out


def layer_violations(root: Path) -> list[str]:
    """Every broken rule, as 'file:line what'."""
    bad = list(outside_stdlib(closure(VERIFY_ENTRY, root), root))
    bad = [f"verification closure: {b}" for b in bad]
    for module, path in project_files(root).items():
        rel = path.relative_to(root)
        for base, names, line in imported_names(path, module):
            top = base.split(".")[0]
            where = f"{rel}:{line}"
            if top in PROVIDERS and rel.parts[0] != "components":
                bad.append(f"{where} imports the provider {base} outside components/")
            if top == "components" and rel.parts[0] in ("tools", "lvslab"):
                bad.append(f"{where} imports {base}: {rel.parts[0]}/ must not depend on components/")
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            if private:
                bad.append(f"{where} imports the private name(s) {', '.join(private)} of {base}")
    return bad


def test_the_layers_hold() -> None:
    assert layer_violations(ROOT) == []


def test_the_verification_closure_is_computed_and_complete() -> None:
    modules = closure(VERIFY_ENTRY)
    assert {"lvslab.verify.__main__", "lvslab.verify.registry", "lvslab.verify.steps.failover",
            "lvslab.verify.probe", "lvslab.model"} <= set(modules)
    assert not {"lvslab.render", "lvslab.config_schema"} & set(modules)  # jinja2's renderer stays home


def plant(tmp_path: Path, rel: str, text: str) -> Path:
    """A copy of the project's layer-relevant sources with one file added or replaced."""
    for sub in ("lvslab", "components", "tools"):
        for src in (ROOT / sub).rglob("*.py"):
            dest = tmp_path / src.relative_to(ROOT)
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_text(src.read_text())
    (tmp_path / "__main__.py").write_text((ROOT / "__main__.py").read_text())
    target = tmp_path / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(target.read_text() + text if target.exists() else text)
    return tmp_path


@pytest.mark.parametrize("rel,text,expected", [
    ("lvslab/verify/evaluate.py", "import yaml\n", "verification closure: lvslab/verify/evaluate.py:"),
    ("lvslab/guest.py", "from jinja2 import Environment\n", "imports jinja2"),  # reached from the closure
    ("lvslab/render.py", "import pulumi_libvirt\n", "imports the provider pulumi_libvirt outside components/"),
    ("tools/lvslab.py", "from components.lab import Lab\n", "tools/ must not depend on components/"),
    ("lvslab/day2.py", "import components.node\n", "lvslab/ must not depend on components/"),
    ("lvslab/pictures.py", "from lvslab.render import _CLOUD_INIT\n", "private name(s) _CLOUD_INIT"),
])
def test_a_planted_violation_is_caught(tmp_path: Path, rel: str, text: str, expected: str) -> None:
    found = layer_violations(plant(tmp_path, rel, text))
    assert len(found) == 1 and expected in found[0], found


MAX_FILE_LINES, MAX_FUNCTION_LINES = 420, 80  # "about 400" and "about 80": the style's limits
DATA_FILES = {"lvslab/config/schema.py"}  # the schema is data: one declaration per key


def oversized(root: Path) -> list[str]:
    """Python files over MAX_FILE_LINES and functions over MAX_FUNCTION_LINES (tests included)."""
    import ast

    found = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if rel.parts[0].startswith(".") or str(rel) in DATA_FILES:
            continue
        text = path.read_text()
        if len(text.splitlines()) > MAX_FILE_LINES:
            found.append(f"{rel}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    found.append(f"{rel}:{node.lineno} {node.name}: {length} lines")
    return found


def test_files_and_functions_stay_small(tmp_path: Path) -> None:
    assert oversized(ROOT) == []
    (tmp_path / "big.py").write_text("def f() -> None:\n" + "    pass\n" * 90)
    assert oversized(tmp_path) == ["big.py:1 f: 91 lines"]
