"""Committed stack files stay as committed. The passphrase secrets provider writes an `encryptionsalt:` line
into stacks/Pulumi.<stack>.yaml whenever it selects a stack; that salt belongs to this checkout's
passphrase, not to the repository (committed, it breaks every other checkout). The stack's state keeps
its own copy of the secrets configuration, so a config without secret values needs no salt in the file."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SALT_KEY = "encryptionsalt:"


def without_added_salt(before: str, after: str) -> str | None:
    """`before` again if the only change from before to after is an added salt line and the file holds no
    secret values (which would need the salt); else None (leave the file alone: a user's own change)."""
    if after == before or "secure:" in after:
        return None
    kept = "".join(line for line in after.splitlines(keepends=True) if not line.startswith(SALT_KEY))
    return before if kept == before and SALT_KEY not in before else None


@contextmanager
def unchanged_by_pulumi(path: Path) -> Iterator[None]:
    """Around a pulumi operation: undo the salt line it adds to a committed stack file."""
    before = path.read_text() if path.exists() else None
    try:
        yield
    finally:
        if before is not None and path.exists():
            restored = without_added_salt(before, path.read_text())
            if restored is not None:
                path.write_text(restored)
