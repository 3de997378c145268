"""The one way a check fails: the assertion's id (lvslab.verify.assertions), what was expected, what was
observed on which node, and how to repair it (the message the runner, the Pulumi log and CI show)."""

from __future__ import annotations

from lvslab.verify.assertions import assertion


class CheckFailed(RuntimeError):
    def __init__(self, assertion_id: str, expected: str, observed: str, repair: str | None = None) -> None:
        row = assertion(assertion_id)
        repair = repair or ("" if "repair:" in observed else row.repair)
        super().__init__(f"check {assertion_id} failed: expected {expected}; observed {observed}"
                         + (f"; repair: {repair}" if repair else ""))
        self.assertion = assertion_id
        self.check = row.check
