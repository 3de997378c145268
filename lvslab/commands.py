"""The shell commands the lab's command resources run (`command.local.Command` on the machine running
Pulumi, `command.remote.Command` on a node), and how their output is read back. Pure: no pulumi import."""

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


KEEPALIVED_CONF = "/etc/keepalived/keepalived.conf"


def keepalived_push_script(wait_for_boot: str, stop_after: bool = False, conf: str = KEEPALIVED_CONF) -> str:
    """A director's keepalived.conf command (topology lvs-keepalived), run over SSH with the file on stdin:
    wait until cloud-init is done (keepalived installed; `wait_for_boot`), check the new file with
    keepalived --config-test before it replaces the running one, then reload keepalived (VRRP state and the
    VIP stay; IPVS follows the new virtual_server) or start it the first time. Prints what it did.
    stop_after: keepalived is left stopped (RenderFlags.keepalived_running off)."""
    new = f"{conf}.new"
    return (f"set -e; {{ {wait_for_boot}; }} >/dev/null; install -m 0600 /dev/stdin {new}; "
            f"if ! out=$(keepalived --config-test -f {new} 2>&1); then rm -f {new}; "
            f"echo \"keepalived refused the new configuration: $out\" >&2; exit 1; fi; mv {new} {conf}; "
            "if systemctl -q is-active keepalived; then systemctl reload keepalived; echo keepalived reloaded; "
            "else systemctl restart keepalived; echo keepalived started; fi"
            + ("; systemctl stop keepalived; echo 'keepalived stopped (fault keepalived-down-all)'" if stop_after
               else ""))


LDIRECTORD_CONF = "/etc/ha.d/ldirectord.cf"


def ldirectord_push_script(wait_for_boot: str, conf: str = LDIRECTORD_CONF) -> str:
    """A director's ldirectord.cf command (topology lvs-heartbeat), run over SSH with the file on stdin: wait
    until cloud-init is done, have ldirectord read the new file before it replaces the running one
    (`ldirectord -d FILE status`: 3 = read, not running; 2 = configuration error), then make the running
    ldirectord (on the director holding heartbeat's resources) reload it, or start heartbeat the first time:
    it starts ldirectord where the resources go. Prints what it did."""
    new = f"{conf}.new"
    return (f"set -e; {{ {wait_for_boot}; }} >/dev/null; install -m 0644 /dev/stdin {new}; "
            f"rc=0; out=$(ldirectord -d {new} status 2>&1) || rc=$?; "
            f"if [ $rc -ne 3 ]; then rm -f {new}; echo \"ldirectord refused the new configuration: $out\" >&2; "
            f"exit 1; fi; mv {new} {conf}; "
            "if ! systemctl -q is-active heartbeat; then systemctl restart heartbeat; echo heartbeat started; "
            f"elif ldirectord {conf} status >/dev/null 2>&1; then ldirectord {conf} reload >/dev/null; "
            "echo ldirectord reloaded; else echo 'ldirectord.cf replaced (ldirectord runs on the other director)'; fi")
