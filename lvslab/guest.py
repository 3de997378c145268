"""Shell run on a node over SSH by the lab's resources and by the readiness step: wait for cloud-init, take
the boot profile. Pure strings, standard library only (components/ and lvslab.verify both use them)."""

from __future__ import annotations

from lvslab.bootprofile import PROFILE_SCRIPT


def cloud_init_done_script(name: str, run_dir: str = "/run/cloud-init",
                           marker: str = "/var/lib/lvslab/ready") -> str:
    """Shell that waits until cloud-init finished (result.json written at the end of its last stage) or
    reported an error, then exits 0 if it finished without errors. Plain shell on purpose: `cloud-init
    status --wait` is a Python process polling every 0.25 s, started while the emulated guest still boots
    (measured: 3-5 s of guest CPU to start). cloud-init writes its JSON with indent=1, so an empty error
    list is `"errors": []` and a non-empty one opens with `"errors": [` at the end of a line."""
    status, result = f"{run_dir}/status.json", f"{run_dir}/result.json"
    return (f"while [ ! -e {result} ] && ! grep -qs '\"errors\": \\[$' {status}; do sleep 1; done; "
            f"if [ -e {result} ] && grep -q '\"errors\": \\[\\]' {result}; then "
            f"echo \"cloud-init done on {name}, ready marker $(cat {marker} 2>&1)\"; else "
            f"echo \"check readiness failed: expected cloud-init done on {name}; observed "
            f"$(cat {status} {result} 2>&1 | tr -s '\\n ' ' ')\" >&2; exit 1; fi")


# Where each node's ready command leaves its boot profile (taken as soon as that node finished booting, while
# the others still boot: the readiness step after the last node then only reads it, not 4-8 s per node).
BOOT_PROFILE_FILE = "/var/lib/lvslab/boot-profile.txt"
PROFILE_WAIT_S = 60


def ready_script(name: str, run_dir: str = "/run/cloud-init", profile_file: str = BOOT_PROFILE_FILE) -> str:
    """The ready command of each node (components/node.py): wait for cloud-init, then return at once (the next
    VM's boot waits for this command: vm.bootsAtOnce) and leave the boot profile to a background job that
    takes it once systemd says the boot is over (its kernel/userspace split exists only then). The profile
    is diagnostics: its failure never fails readiness."""
    return (f"{{ {cloud_init_done_script(name, run_dir)}; }} && {{ ( timeout {PROFILE_WAIT_S} systemctl "
            f"is-system-running --wait >/dev/null; {{ {PROFILE_SCRIPT}; }} > {profile_file}.tmp 2>&1; "
            f"mv {profile_file}.tmp {profile_file} ) </dev/null >/dev/null 2>&1 & }}")


def readiness_script(name: str, run_dir: str = "/run/cloud-init", profile_file: str = BOOT_PROFILE_FILE) -> str:
    """The readiness step's one SSH call per node: cloud-init done, then the boot profile the ready command's
    background job keeps (waited for; taken now if there is none)."""
    return (f"{{ {cloud_init_done_script(name, run_dir)}; }} && {{ i=0; while [ ! -e {profile_file} ] && "
            f"[ $i -lt {PROFILE_WAIT_S + 10} ]; do sleep 1; i=$((i+1)); done; "
            f"cat {profile_file} 2>/dev/null || {{ {PROFILE_SCRIPT}; }}; }}")
