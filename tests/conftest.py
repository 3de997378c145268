"""Shared fixtures: the dev stack's config as the program sees it."""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def stack_config(stack: str) -> dict[str, Any]:
    """stacks/Pulumi.<stack>.yaml config with the project prefix removed."""
    data = yaml.safe_load((ROOT / "stacks" / f"Pulumi.{stack}.yaml").read_text())["config"]
    return {k.partition(":")[2]: v for k, v in data.items() if k.startswith("lvs-lab:")}


@pytest.fixture
def dev_raw() -> dict[str, Any]:
    return copy.deepcopy(stack_config("dev"))
