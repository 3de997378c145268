"""The shell commands the lab's `command.local.Command` resources run on the machine running Pulumi, and
how their output is read back. Pure: no pulumi import."""

from __future__ import annotations

# An ed25519 key pair: the public key line, then the private key (stdout is a secret output).
SSH_KEY_COMMAND = ('set -eu; d=$(mktemp -d); trap \'rm -rf "$d"\' EXIT; '
                   'ssh-keygen -q -t ed25519 -N "" -C "$KEY_COMMENT" -f "$d/id"; cat "$d/id.pub" "$d/id"')
# 8 characters: keepalived's PASS authentication uses no more.
PASSWORD_COMMAND = "set -eu; head -c 512 /dev/urandom | tr -dc 'A-Za-z0-9' | head -c 8"

# A node's NoCloud seed (ISO9660, label cidata) from $USER_DATA, $META_DATA and $NETWORK_CONFIG, written
# to $SEED_ISO (0600: director user-data holds the VRRP password); prints the ISO's sha256, which replaces
# the seed volume (and with it the node) when the content changes.
SEED_ISO_COMMAND = (
    'set -eu; umask 077; d=$(mktemp -d); trap \'rm -rf "$d"\' EXIT; '
    'printf "%s" "$USER_DATA" > "$d/user-data"; printf "%s" "$META_DATA" > "$d/meta-data"; '
    'printf "%s" "$NETWORK_CONFIG" > "$d/network-config"; '
    'genisoimage -quiet -output "$d/seed.iso" -volid cidata -joliet -rock '
    '"$d/user-data" "$d/meta-data" "$d/network-config"; '
    'mv "$d/seed.iso" "$SEED_ISO"; sha256sum "$SEED_ISO" | cut -d" " -f1'
)
SEED_ISO_DELETE = 'rm -f "$SEED_ISO"'


def host_dirs_commands(*paths: str) -> tuple[str, str]:
    """(create, delete) of host directories owned by one lab: made before its first node, removed after its
    last (one deleter, so parallel node deletes cannot race on a shared directory)."""
    quoted = " ".join(f"'{p}'" for p in paths)
    return f"mkdir -p {quoted}", f"rm -rf {quoted}"


def split_key_pair(stdout: str) -> tuple[str, str]:
    """(public key, private key) from SSH_KEY_COMMAND's output."""
    lines = stdout.strip().splitlines()
    if len(lines) < 3 or not lines[0].startswith("ssh-ed25519 ") or "PRIVATE KEY" not in lines[1]:
        raise ValueError("unexpected output of the SSH key command (not a public key and a private key)")
    return lines[0], "\n".join(lines[1:]) + "\n"
