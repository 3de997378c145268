"""The one way a check fails: the check's id, what was expected and what was observed (the message the
runner, the Pulumi log and CI show)."""

from __future__ import annotations


class CheckFailed(RuntimeError):
    def __init__(self, check: str, expected: str, observed: str) -> None:
        super().__init__(f"check {check} failed: expected {expected}; observed {observed}")
        self.check = check
