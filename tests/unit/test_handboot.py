"""The hand-driven baseline boots the lab's VM the way libvirt does, isolated from every network."""

from __future__ import annotations

from pathlib import Path

from lvslab.config import parse_config
from lvslab.handboot import qemu_command


def test_baseline_vm_matches_the_lab_vm_and_reaches_nothing(dev_raw: dict) -> None:
    cfg = parse_config(dev_raw, "dev", auth_pass="x" * 8)
    cmd = qemu_command(Path("/img"), "/t/disk.qcow2", "/t/seed.iso", "/t/console.log", cfg, "52:54:00:00:00:01")
    joined = " ".join(cmd)
    assert cmd[cmd.index("-m") + 1] == str(cfg.vm.memory_mib) and cmd[cmd.index("-smp") + 1] == str(cfg.vm.vcpus)
    assert cmd[cmd.index("-append") + 1] == f"root=LABEL=rootfs ro {cfg.image.kernel_cmdline}"
    assert f"tcg,tb-size={cfg.vm.tb_cache_mib}" in joined and "cache=unsafe" in joined and "-cpu max" in joined
    # user-mode networking restricted: the guest can reach neither this host nor anything beyond it
    assert "user,id=n0,restrict=on" in joined and "hostfwd" not in joined
    assert joined.count("readonly=on") == 2  # seed and repository
