"""Shared fixtures: the dev stack's config as the program sees it."""

from __future__ import annotations

import copy
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


@pytest.fixture
def dev_raw() -> dict[str, Any]:
    return copy.deepcopy(stack_config("dev"))
