"""Stack files (stacks/Pulumi.<stack>.yaml): the one loader the runner, the handboot baseline and the tests
use, and committed stack files stay as committed. The passphrase secrets provider writes an `encryptionsalt:` line
into stacks/Pulumi.<stack>.yaml whenever it selects a stack; that salt belongs to this checkout's
passphrase, not to the repository (committed, it breaks every other checkout). The stack's state keeps
its own copy of the secrets configuration, so a config without secret values needs no salt in the file."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

SALT_KEY = "encryptionsalt:"


def without_added_salt(before: str, after: str) -> str | None:
    """`before` again if the only change from before to after is an added salt line and the file holds no
    secret values (which would need the salt); else None (leave the file alone: a user's own change)."""
    if after == before or "secure:" in after:
        return None
    kept = "".join(line for line in after.splitlines(keepends=True) if not line.startswith(SALT_KEY))
    return before if kept == before and SALT_KEY not in before else None


def git_hides_salt(path: Path) -> bool:
    """True when git sees no change in `path` although its salt line was added (the filter `make setup` installs
    from .gitattributes leaves the line out), after refreshing git's index entry: git reports a file whose size
    changed as modified without comparing contents, so the entry takes the new size (`git add` of content equal
    to the index: nothing is staged). False outside a git checkout or without the filter."""
    where = ["git", "-C", str(path.parent)]
    same = subprocess.run([*where, "diff", "--quiet", "--", path.name], capture_output=True)
    if same.returncode != 0:
        return False
    return subprocess.run([*where, "add", "--", path.name], capture_output=True).returncode == 0


@contextmanager
def unchanged_by_pulumi(path: Path) -> Iterator[None]:
    """Around a pulumi operation: a salt line it adds to a committed stack file is kept where git's filter hides
    it (the plain pulumi CLI then finds and reuses it), else taken out again."""
    before = path.read_text() if path.exists() else None
    try:
        yield
    finally:
        if before is not None and path.exists():
            restored = without_added_salt(before, path.read_text())
            if restored is not None and not git_hides_salt(path):
                path.write_text(restored)


ROOT = Path(__file__).resolve().parent.parent  # the project: Pulumi.yaml, stacks/
STACKS = ROOT / "stacks"


def stack_file(stack: str, root: Path = ROOT) -> Path:
    return root / "stacks" / f"Pulumi.{stack}.yaml"


def read_stack(stack: str, root: Path = ROOT) -> dict[str, Any]:
    """The one loader of a stack file: its `config:` as written (keys with their namespace, "lvs-lab:vip")."""
    import yaml  # (PyYAML: the runner's and the tests' side, never the relayed verification)

    return dict(yaml.safe_load(stack_file(stack, root).read_text()).get("config") or {})


def project_config(config: dict[str, Any], project: str = "lvs-lab") -> dict[str, Any]:
    """A stack's config as the program sees it: this project's keys without the namespace."""
    return {k.partition(":")[2]: v for k, v in config.items() if k.startswith(f"{project}:")}


def load_config(stack: str, root: Path = ROOT) -> dict[str, Any]:
    """read_stack + project_config: what parse_config takes."""
    return project_config(read_stack(stack, root))


def write_stack(stack: str, config: dict[str, Any], root: Path = ROOT) -> Path:
    """A stack file with this config (keys with their namespace), as the runner's ephemeral stacks are made."""
    import yaml

    path = stack_file(stack, root)
    path.write_text(yaml.safe_dump({"config": config}))
    return path
