"""topology nginx-ha's rendered files (seed 004): keepalived tracks nginx, no IPVS, checked by the real tools."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from lvslab.config import parse_config
from lvslab.model import derive
from lvslab.render import (
    director_user_data,
    keepalived_conf,
)
from lvslab.stackfile import load_config
from tests.unit.test_render import KEY, config_test_accepts_only


def nginx_ha_raw() -> dict[str, Any]:
    """stacks/Pulumi.nginx-ha.yaml (topology nginx-ha, weight -60)."""
    return load_config("nginx-ha")


@pytest.mark.tools
@pytest.mark.parametrize("weight", [-60, 0])
def test_nginx_ha_keepalived_tracks_nginx_and_has_no_ipvs(tmp_path: Path, weight: int) -> None:
    """Seed 004: a vrrp_script that looks for nginx, tracked by the one VRRP instance; no virtual_server.
    keepalived accepts it, and refuses a track_script naming a script that does not exist."""
    raw = nginx_ha_raw()
    raw["nginxCheck"]["weight"] = weight
    cfg = parse_config(raw, "nginx-ha")
    conf = keepalived_conf(cfg, derive(cfg).directors[0], "s3cret")
    script = conf.split("vrrp_script chk_nginx {")[1].split("}")[0]
    assert '    script "/usr/bin/pgrep -x nginx"\n' in script and "    interval 2\n" in script
    assert "    fall 2\n" in script and "    rise 1\n" in script
    assert ("    weight -60\n" in script) == (weight == -60) and ("weight" in script) == (weight != 0)
    assert "    track_script {\n        chk_nginx\n    }\n" in conf
    assert "virtual_server" not in conf and "lb_kind" not in conf and "enable_script_security" in conf
    config_test_accepts_only(tmp_path, conf, conf.replace("        chk_nginx\n", "        chk_nginks\n"))


@pytest.mark.tools
def test_nginx_ha_user_data(tmp_path: Path) -> None:
    """An nginx-ha node installs nginx and keepalived (no ipvsadm, no IPVS modules), serves its own name,
    starts nginx before keepalived (whose check looks for it); cloud-init's schema and nginx -t accept it."""
    cfg = parse_config(nginx_ha_raw(), "nginx-ha")
    node = derive(cfg).directors[1]
    text = director_user_data(cfg, node, KEY, "s3cret")
    doc = yaml.safe_load(text)
    assert doc["packages"] == ["nginx", "keepalived"]
    files = {f["path"]: f["content"] for f in doc["write_files"]}
    assert files["/var/www/html/index.html"].strip() == "nginx2"
    assert "add_header X-Real-Server nginx2 always;" in files["/etc/nginx/conf.d/lvslab.conf"]
    assert "vrrp_script chk_nginx" in files["/etc/keepalived/keepalived.conf"]
    assert not any("ip_vs" in f or "ipvs" in f for f in files)
    commands = [" ".join(c) if isinstance(c, list) else c for c in doc["runcmd"]]
    nginx = next(i for i, c in enumerate(commands) if "reload-or-restart nginx" in c)
    assert nginx < commands.index("systemctl restart keepalived")
    (tmp_path / "ud.yaml").write_text(text)
    proc = subprocess.run(["cloud-init", "schema", "-c", str(tmp_path / "ud.yaml")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    site = files["/etc/nginx/conf.d/lvslab.conf"]
    (tmp_path / "nginx.conf").write_text(f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\n"
                                         f"events {{}}\nhttp {{\naccess_log off;\n{site}\n}}\n")
    proc = subprocess.run(["nginx", "-t", "-q", "-c", str(tmp_path / "nginx.conf"), "-p", str(tmp_path)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
