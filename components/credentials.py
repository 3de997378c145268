"""The lab's secrets, generated once and kept in the Pulumi state as secrets (never printed): the SSH key
the verification logs in with, and the VRRP auth_pass when the stack sets none."""

from __future__ import annotations

import pulumi
import pulumi_command as command

from lvslab.commands import PASSWORD_COMMAND, SSH_KEY_COMMAND, split_key_pair

QUIET = command.local.Logging.NONE  # the output is the secret: never into the Pulumi log


class Credentials(pulumi.ComponentResource):
    public_key: pulumi.Output[str]
    private_key: pulumi.Output[str]
    auth_pass: pulumi.Output[str] | None

    def __init__(self, name: str, comment: str, generate_auth_pass: bool,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("lvslab:index:Credentials", name, None, opts)
        secret_stdout = pulumi.ResourceOptions(parent=self, additional_secret_outputs=["stdout"])
        key = command.local.Command(f"{name}-ssh-key", create=SSH_KEY_COMMAND, environment={"KEY_COMMENT": comment},
                                    logging=QUIET, opts=secret_stdout)
        pair = key.stdout.apply(split_key_pair)
        # A public key is no secret; unsecret it so the real servers' user-data stays readable in the state.
        self.public_key = pulumi.Output.unsecret(pair.apply(lambda p: p[0]))
        self.private_key = pulumi.Output.secret(pair.apply(lambda p: p[1]))
        self.auth_pass = None
        if generate_auth_pass:
            password = command.local.Command(f"{name}-vrrp-auth-pass", create=PASSWORD_COMMAND, logging=QUIET,
                                             opts=secret_stdout)
            self.auth_pass = pulumi.Output.secret(password.stdout)
        self.register_outputs({"publicKey": self.public_key})
