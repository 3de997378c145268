"""The pictures of a run, drawn from a report recorded on a real ci lab (tests/unit/data/report-ci.json:
its stack outputs and failover step, trimmed) and opened as images."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from lvslab.pictures import topology_dot, write_pictures

RECORDED = Path(__file__).parent / "data" / "report-ci.json"


def recorded() -> dict[str, Any]:
    return json.loads(RECORDED.read_text())


def colours(path: Path) -> set[tuple[int, int, int]]:
    from PIL import Image

    with Image.open(path) as image:
        return {c[:3] for _, c in image.convert("RGB").getcolors(maxcolors=1 << 20)}


def test_topology_names_every_node_and_the_vip() -> None:
    report = recorded()
    dot = topology_dot(report)
    for node in report["lab"]["nodes"]:
        assert f'"{node["name"]}" [label="{node["name"]}\\n{node["role"]}' in dot and node["address"] in dot
    master = report["lab"]["master"]
    assert f"{master}\\ndirector (MASTER)" in dot and "vip -- " not in dot and "held by ? (not observed" in dot
    # the VIP is drawn on the director the checks saw holding it, not the configured MASTER
    report["verification"]["restore"] = {"vip_holder": "director2"}
    dot = topology_dot(report)
    assert 'vip -- "director2"' in dot and "held by director2 (observed)" in dot and "on director2" in dot
    assert report["lab"]["network"]["bridge"] in dot


@pytest.mark.tools
def test_pictures_are_images_with_their_content(tmp_path: Path) -> None:
    """Both PNGs: their size, the colours that mark directors and the VIP (topology), failed polls and the
    VRRP bound (timeline), and the title with the measured gap; without failed polls no failure marks."""
    if not shutil.which("dot"):
        pytest.fail("graphviz not installed: run tools/host.sh packages")
    from PIL import Image

    report = recorded()
    topology, failover = write_pictures(report, tmp_path / "run")
    assert (topology.name, failover.name) == ("run-topology.png", "run-failover.png")
    with Image.open(topology) as image:
        assert image.format == "PNG" and image.size[0] >= 600 and image.size[1] >= 300
    assert {(0xC8, 0xE6, 0xC9), (0xFF, 0xF2, 0xB3)} <= colours(topology)  # directors, VIP
    fo = report["verification"]["failover"]
    with Image.open(failover) as image:
        assert image.size == (900, 480)
        assert image.info["Title"] == (f"lvs-lab {report['stack']}: failover ({fo['mode']}), service gap "
                                       f"{fo['service_gap_s']} s, {fo['failed_requests']} failed polls")
    assert fo["failed_requests"] > 0 and (0xC6, 0x28, 0x28) in colours(failover)  # the failed polls
    assert (0xEF, 0x6C, 0x00) in colours(failover)  # the VRRP bound
    # the same failover without a failed poll: no failure marks
    fo["timeline"] = [e for e in fo["timeline"] if e[1]]
    _, clean = write_pictures(report, tmp_path / "clean")
    assert (0xC6, 0x28, 0x28) not in colours(clean)


def test_no_timeline_no_failover_picture(tmp_path: Path) -> None:
    report = recorded()
    del report["verification"]["failover"]["timeline"]
    report.pop("lab")
    assert write_pictures(report, tmp_path / "run") == []
