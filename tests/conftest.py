"""Shared fixtures: the dev stack's config as the program sees it."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def stack_config(stack: str) -> dict[str, Any]:
    """stacks/Pulumi.<stack>.yaml config with the project prefix removed."""
    from lvslab.stackfile import load_config

    return load_config(stack)


def committed_text(relpath: str) -> str:
    """A tracked file as git stores it (the index, through the stack files' salt filter): the plain pulumi CLI
    keeps its `encryptionsalt:` line in the working copy of a checkout it ran in. Not a git checkout: the file."""
    out = subprocess.run(["git", "-C", str(ROOT), "show", f":{relpath}"], capture_output=True, text=True)
    return out.stdout if out.returncode == 0 else (ROOT / relpath).read_text()


@pytest.fixture
def dev_raw() -> dict[str, Any]:
    return copy.deepcopy(stack_config("dev"))
