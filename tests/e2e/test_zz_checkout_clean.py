"""After the lab modules (file order runs it last; on its own it checks the same): no lab, setup step or
pulumi operation left the checkout dirty (stack salts included)."""

from __future__ import annotations

import subprocess

from tests.e2e.conftest import ROOT


def test_checkout_is_clean_after_the_labs() -> None:
    """Runs last: no lab, setup step or pulumi operation left the checkout dirty (stack salts included)."""
    status = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True, check=True)
    assert status.stdout == "", status.stdout
