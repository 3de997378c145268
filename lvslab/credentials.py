"""How the lab's secrets are generated (run by command resources on the machine running Pulumi) and read
back. Pure: no pulumi import."""

from __future__ import annotations

# An ed25519 key pair: the public key line, then the private key (stdout is a secret output).
SSH_KEY_COMMAND = ('set -eu; d=$(mktemp -d); trap \'rm -rf "$d"\' EXIT; '
                   'ssh-keygen -q -t ed25519 -N "" -C "$KEY_COMMENT" -f "$d/id"; cat "$d/id.pub" "$d/id"')
# 8 characters: keepalived's PASS authentication uses no more.
PASSWORD_COMMAND = "set -eu; head -c 512 /dev/urandom | tr -dc 'A-Za-z0-9' | head -c 8"


def split_key_pair(stdout: str) -> tuple[str, str]:
    """(public key, private key) from SSH_KEY_COMMAND's output."""
    lines = stdout.strip().splitlines()
    if len(lines) < 3 or not lines[0].startswith("ssh-ed25519 ") or "PRIVATE KEY" not in lines[1]:
        raise ValueError("unexpected output of the SSH key command (not a public key and a private key)")
    return lines[0], "\n".join(lines[1:]) + "\n"
