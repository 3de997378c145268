"""Dynamic resources for the lab's credentials and its verification steps (the role pulumi-command's
remote/local Command would play; see providers/libvirt.py for why it is not used).

- SshKeyPair: an ed25519 key generated once and kept in the state; the private key is a secret output.
- Password: a random VRRP auth_pass (8 characters, the PASS limit) when the stack sets none.
- Check: runs one named step of lvslab.checks on create; replaced (re-run) when its triggers change.
"""

from __future__ import annotations

import json
import secrets
import string
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, ReadResult, Resource, ResourceProvider


class _ReplaceWhenWatchedChange(ResourceProvider):
    """Only the `watched` inputs decide a replacement; outputs (keys, results) never do."""

    watched: tuple[str, ...] = ()
    delete_first = False

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        changed = [k for k in self.watched if olds.get(k) != news.get(k)]
        return DiffResult(changes=bool(changed), replaces=changed, delete_before_replace=self.delete_first)

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        return ReadResult(id_, props)


class _KeyProvider(_ReplaceWhenWatchedChange):
    watched = ("comment",)

    def create(self, props: dict[str, Any]) -> CreateResult:
        with tempfile.TemporaryDirectory() as tmp:
            key = Path(tmp, "id")
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", props["comment"], "-f", str(key)],
                           check=True)
            outs = {**props, "public_key": key.with_suffix(".pub").read_text().strip(),
                    "private_key": key.read_text()}
        return CreateResult(id_=props["comment"], outs=outs)


class SshKeyPair(Resource):
    public_key: pulumi.Output[str]
    private_key: pulumi.Output[str]

    def __init__(self, name: str, comment: str, opts: pulumi.ResourceOptions | None = None) -> None:
        opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(additional_secret_outputs=["private_key"]))
        super().__init__(_KeyProvider(), name, {"comment": comment, "public_key": None, "private_key": None}, opts)


class _PasswordProvider(_ReplaceWhenWatchedChange):
    watched = ("length",)

    def create(self, props: dict[str, Any]) -> CreateResult:
        alphabet = string.ascii_letters + string.digits
        value = "".join(secrets.choice(alphabet) for _ in range(int(props["length"])))
        return CreateResult(id_=secrets.token_hex(4), outs={**props, "value": value})


class Password(Resource):
    value: pulumi.Output[str]

    def __init__(self, name: str, length: int, opts: pulumi.ResourceOptions | None = None) -> None:
        opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(additional_secret_outputs=["value"]))
        super().__init__(_PasswordProvider(), name, {"length": length, "value": None}, opts)


class _CheckProvider(_ReplaceWhenWatchedChange):
    """Only `step`, `spec` and `triggers` decide whether a check re-runs (not the key, not results)."""

    watched = ("step", "spec", "triggers")
    delete_first = True

    def create(self, props: dict[str, Any]) -> CreateResult:
        from lvslab.checks import run_step  # imported in the provider process

        spec = json.loads(props["spec"])
        result = run_step(props["step"], spec, props["private_key"])
        outs = {k: props[k] for k in self.watched}
        outs["result"] = json.dumps(result)
        return CreateResult(id_=f"{props['step']}-{secrets.token_hex(4)}", outs=outs)

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        """Nothing to undo: a check leaves the lab as it found it."""


class Check(Resource):
    """One verification step; `result` is its JSON report. Fails `pulumi up` with the check's message."""

    result: pulumi.Output[str]

    def __init__(self, name: str, step: str, spec: pulumi.Input[str], triggers: pulumi.Input[list[Any]],
                 private_key: pulumi.Input[str], opts: pulumi.ResourceOptions | None = None) -> None:
        props = {"step": step, "spec": spec, "triggers": triggers, "private_key": private_key, "result": None}
        super().__init__(_CheckProvider(), name, props, opts)
