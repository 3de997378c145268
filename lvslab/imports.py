"""Which modules a module pulls in: its lvs-lab import closure, read from the sources (AST), not by importing.
The relay ships exactly the verification's closure to a remote hypervisor, and tests/unit/test_layers.py
holds the layers to their rules with the same reading."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent  # the project: lvslab/, components/, tools/ ...
VERIFY_ENTRY = "lvslab.verify.__main__"  # what `python -m lvslab.verify` runs


def module_file(module: str, root: Path = ROOT) -> Path | None:
    """The source of a project module (a package's __init__.py), or None if it is not the project's."""
    base = root.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_names(path: Path, module: str) -> list[tuple[str, list[str], int]]:
    """(module, names imported from it, line) of every import statement in a file, relative ones resolved."""
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, [], node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            found.append((base, [alias.name for alias in node.names], node.lineno))
    return found


def project_imports(path: Path, module: str, root: Path = ROOT) -> set[str]:
    """The project modules a file imports (a `from package import module` counts as the submodule)."""
    out = set()
    for base, names, _ in imported_names(path, module):
        if module_file(base, root) is None:
            continue
        out.add(base)
        out |= {f"{base}.{n}" for n in names if module_file(f"{base}.{n}", root) is not None}
    return out


def closure(entry: str, root: Path = ROOT) -> dict[str, Path]:
    """Every project module `entry` imports, directly or not, with the packages they live in: {module: file}."""
    seen: dict[str, Path] = {}
    todo = [entry]
    while todo:
        module = todo.pop()
        parts = module.split(".")
        for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__ first
            name = ".".join(parts[:i])
            path = module_file(name, root)
            if path is not None and name not in seen:
                seen[name] = path
                todo.extend(project_imports(path, name, root))
    return seen


def outside_stdlib(modules: dict[str, Path], root: Path = ROOT) -> list[str]:
    """'file:line imports X' for every import in these modules of something neither the standard library
    nor the project."""
    bad = []
    for module, path in sorted(modules.items()):
        for base, _, line in imported_names(path, module):
            top = base.split(".")[0]
            if base and top not in sys.stdlib_module_names and module_file(top, root) is None:
                bad.append(f"{path.relative_to(root)}:{line} imports {base}")
    return bad
