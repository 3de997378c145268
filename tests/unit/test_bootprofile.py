# ruff: noqa: E501 - the samples are verbatim log lines
"""Boot profiles parsed from what the guests print (systemd-analyze from a 4-VM dev lab on this machine;
cloud-init events in the format of its log)."""

from __future__ import annotations

import pytest

from lvslab.bootprofile import parse_profile, parse_timespan, summarise

SAMPLE = """### analyze
Startup finished in 21.687s (kernel) + 3min 44.976s (userspace) = 4min 6.663s
graphical.target reached after 1min 54.548s in userspace.
### blame
1min 45.920s cloud-final.service
     40.151s cloud-config.service
     37.241s cloud-init-local.service
     28.542s dev-vda.device
     21.017s cloud-init.service
      721ms nginx.service
### ci-events
2026-11-23 17:29:01,000 - util.py[DEBUG]: Cloud-init v. 22.4.2 running 'init-local' at Mon, 23 Nov 2026 17:29:01 +0000. Up 21.49 seconds.
2026-11-23 17:29:01,100 - handlers.py[DEBUG]: start: init-local/search-NoCloud: searching for local data from DataSourceNoCloud
2026-11-23 17:29:02,588 - handlers.py[DEBUG]: finish: init-local/search-NoCloud: SUCCESS: found local data from DataSourceNoCloud
2026-11-23 17:29:04,385 - handlers.py[DEBUG]: finish: init-local: SUCCESS: searching for local datasources
2026-11-23 17:29:20,000 - util.py[DEBUG]: Cloud-init v. 22.4.2 running 'init' at Mon, 23 Nov 2026 17:29:20 +0000. Up 41.30 seconds.
2026-11-23 17:29:29,141 - handlers.py[DEBUG]: finish: init-network: SUCCESS: searching for network datasources
2026-11-23 17:30:31,526 - util.py[DEBUG]: Cloud-init v. 22.4.2 running 'modules:config' at Mon, 23 Nov 2026 17:30:31 +0000. Up 60.85 seconds.
2026-11-23 17:30:34,381 - handlers.py[DEBUG]: start: modules-config/config-apt-configure: running config-apt-configure with frequency once-per-instance
2026-11-23 17:30:35,407 - handlers.py[DEBUG]: finish: modules-config/config-apt-configure: SUCCESS: config-apt-configure ran successfully
2026-11-23 17:30:35,532 - handlers.py[DEBUG]: finish: modules-config: SUCCESS: running modules for config
2026-11-23 17:30:41,000 - util.py[DEBUG]: Cloud-init v. 22.4.2 running 'modules:final' at Mon, 23 Nov 2026 17:30:40 +0000. Up 68.14 seconds.
2026-11-23 17:30:41,367 - handlers.py[DEBUG]: start: modules-final/config-package-update-upgrade-install: running config-package-update-upgrade-install with frequency once-per-instance
2026-11-23 17:32:11,104 - handlers.py[DEBUG]: finish: modules-final/config-package-update-upgrade-install: SUCCESS: config-package-update-upgrade-install ran successfully
2026-11-23 17:32:13,720 - handlers.py[DEBUG]: finish: modules-final: SUCCESS: running modules for final
"""


@pytest.mark.parametrize("text,seconds", [("1min 45.920s", 105.92), ("721ms", 0.721), ("3.5s", 3.5),
                                          ("1h 2min 3s", 3723.0), ("40.151s", 40.151)])
def test_timespan(text: str, seconds: float) -> None:
    assert parse_timespan(text) == seconds


def test_timespan_rejects_garbage() -> None:
    with pytest.raises(ValueError):
        parse_timespan("Bootup is not yet finished")


def test_profile_from_a_real_guest() -> None:
    p = parse_profile(SAMPLE)
    assert p["kernel_s"] == 21.687 and p["userspace_s"] == 224.976
    assert list(p["slowest_units_s"])[:2] == ["cloud-final.service", "cloud-config.service"]
    final = p["cloud_init_stages"]["modules-final"]
    assert final == {"stage_s": 92.72, "unit_s": 105.92, "outside_modules_s": 13.2}
    assert p["cloud_init_stages"]["init-local"]["outside_modules_s"] == round(37.241 - 3.385, 2)
    assert p["cloud_init_stages"]["modules-config"]["stage_s"] == 4.01
    assert p["slowest_modules_s"]["package-update-upgrade-install"] == 89.74
    assert list(p["slowest_modules_s"])[:2] == ["package-update-upgrade-install", "search-NoCloud"]


def test_unfinished_boot_gives_no_startup_figures() -> None:
    p = parse_profile("### analyze\nBootup is not yet finished (FinishTimestampMonotonic=0).\n")
    assert "kernel_s" not in p and p["cloud_init_stages"] == {}


def test_summary_is_a_mean_per_vm() -> None:
    one = parse_profile(SAMPLE)
    two = parse_profile(SAMPLE.replace("21.687s (kernel)", "11.687s (kernel)"))
    s = summarise({"a": one, "b": two})
    assert s["kernel + initrd"] == 16.7
    assert s["  of which package installs"] == 89.7
    assert s["cloud-init modules-final: modules"] == 92.7
