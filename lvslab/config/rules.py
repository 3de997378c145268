"""The config's rules across keys and the daemons' own rules, as small named functions (the per-key kinds and
limits are the schema's). Each reports through the Reader and is called only when the keys it reads are valid."""

from __future__ import annotations

import os
import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

from lvslab.config.model import HEALTH_PAGE_SUFFIX, Director, HealthCheck, Heartbeat, Image, NginxCheck, RealServer
from lvslab.config.reader import Reader, read, section
from lvslab.config.schema import MAX_ADVERT_INT_V2
from lvslab.hypervisor import HypervisorError, parse_uri
from lvslab.lab.topology import Topology

# Config sections that only mean something with IPVS (topologies lvs-*).
LVS_ONLY_KEYS = ("realServers", "lvs", "healthCheck")
# Keys only ldirectord reads (topology lvs-heartbeat), refused elsewhere: dotted key -> what it is.
LDIRECTORD_ONLY = {"healthCheck.receive": "ldirectord's receive regexp", "lvs.quiescent": "ldirectord's quiescent"}
# Host names (RFC 1123 labels, lowercase, starting with a letter): they become hostnames and libvirt names.
NAME_RE = re.compile(r"[a-z](?:[a-z0-9-]{0,29}[a-z0-9])?")
BRIDGE_RE = re.compile(r"[A-Za-z0-9_.-]{1,15}")
# libvirt URIs of the QEMU driver: qemu:///system, qemu+ssh://user@host/system, qemu+tcp://host/session?...
URI_RE = re.compile(r"qemu(\+[a-z]+)?://[^/\s]*/(system|session)(\?\S*)?")
# What keepalived.conf and heartbeat's authkeys keep whole: printable ASCII without blanks, quotes, the comment
# starts '#' and '!', and the block braces.
AUTH_PASS_RE = re.compile(r"[A-Za-z0-9$%&()*+,\-./:;<=>?@\[\]^_`|~]+")
# The query parameters of a qemu+ssh URI that both terraform-provider-libvirt (libvirt/uri/ssh.go: keyfile,
# knownhosts, socket) and lvs-lab's own SSH (lvslab.hypervisor) read; anything else would be dropped silently.
URI_PARAMETERS = ("keyfile", "knownhosts", "socket")
# libvirt's own spellings (its remote driver's URI parameters) where the provider reads another.
URI_SPELLINGS = {"known_hosts": "libvirt's known_hosts= is spelt knownhosts= here; "}
# An HTTP path nginx can serve as a plain location and keepalived can put in `url { path ... }`.
PATH_RE = re.compile(r"/[A-Za-z0-9._~/-]*")


def check_topology_keys(r: Reader, raw: dict[str, Any], topo: Topology) -> dict[str, Any]:
    """Keys the topology does not use are refused, each saying why (Topology.refused, the IPVS sections
    without IPVS, heartbeat's and ldirectord's keys elsewhere); returns raw without them (no follow-ups)."""
    if "heartbeat" in raw and not topo.heartbeat:
        r.fail("heartbeat", f"is only used with topology lvs-heartbeat (heartbeat's timing); with {topo.name} "
               "keepalived's VRRP moves the VIP (vrrp)", raw["heartbeat"])
    if topo.heartbeat:
        for dotted, why in topo.refused.items():
            section_name, _, name = dotted.partition(".")
            holder = raw.get(section_name) if name else raw
            if isinstance(holder, dict) and (name or section_name) in holder:
                r.fail(dotted, f"is not used with topology {topo.name}: {why}", holder[name or section_name])
        raw = without(raw, topo.refused)
    else:
        for dotted, what in LDIRECTORD_ONLY.items():
            section_name, _, name = dotted.partition(".")
            if isinstance(raw.get(section_name), dict) and name in raw[section_name]:
                r.fail(dotted, f"is only used with topology lvs-heartbeat ({what}); not with {topo.name}",
                       raw[section_name][name])
        raw = without(raw, LDIRECTORD_ONLY)
    if not topo.uses_ipvs:
        for key in LVS_ONLY_KEYS:
            if key in raw:
                r.fail(key, f"is not used with topology {topo.name} (two nginx nodes share the VIP, no IPVS: the "
                       "directors serve the pages themselves)", raw[key])
        raw = {k: v for k, v in raw.items() if k not in LVS_ONLY_KEYS}
    elif "nginxCheck" in raw:
        r.fail("nginxCheck", f"is only used with topology nginx-ha (keepalived's check of nginx); with {topo.name} "
               f"{topo.ipvs_manager} checks the real servers (healthCheck)", raw["nginxCheck"])
    return raw


def without(raw: dict[str, Any], dotted_keys: dict[str, str]) -> dict[str, Any]:
    """raw minus the given keys ("section" or "section.key"); the caller's dicts are left alone."""
    out = dict(raw)
    for dotted in dotted_keys:
        section_name, _, name = dotted.partition(".")
        if not name:
            out.pop(section_name, None)
        elif isinstance(out.get(section_name), dict):
            out[section_name] = {k: v for k, v in out[section_name].items() if k != name}
    return out


def check_libvirt_uri(r: Reader, libvirt_uri: str) -> None:
    if libvirt_uri and not URI_RE.fullmatch(libvirt_uri):
        r.fail("libvirtUri", "must be a libvirt URI of the QEMU driver, e.g. qemu:///system or "
               "qemu+ssh://user@host/system", libvirt_uri)
        return
    if not libvirt_uri:
        return
    try:
        hv = parse_uri(libvirt_uri)
    except HypervisorError as exc:
        r.fail("libvirtUri", str(exc), libvirt_uri)
        return
    unknown = sorted(set(parse_qs(urlsplit(libvirt_uri).query, keep_blank_values=True)) - set(URI_PARAMETERS))
    for name in unknown:
        hint = URI_SPELLINGS.get(name, "")
        r.fail("libvirtUri", f"parameter {name}= is not read: {hint}lvs-lab and terraform-provider-libvirt read "
               f"{', '.join(p + '=' for p in URI_PARAMETERS)} (its libvirt/uri/ssh.go)", libvirt_uri)
    if hv.remote and not hv.keyfile:
        r.fail("libvirtUri", "a remote hypervisor needs keyfile=PATH in the URI (the SSH key the lab's "
               "commands and checks use to reach it and to hop through it to the nodes)", libvirt_uri)


def check_director_states(r: Reader, directors: list[Director], heartbeat_ha: bool, preempt: bool) -> None:
    """One MASTER with the higher priority and one BACKUP, or both BACKUP with nopreempt (keepalived's
    non-preemptive setup); heartbeat needs a MASTER (haresources names it)."""
    states = sorted(d.state for d in directors)
    high, low = sorted(directors, key=lambda d: d.priority, reverse=True)
    if high.priority == low.priority:
        r.fail("directors", "the two priorities must differ (the higher one is the MASTER)",
               [d.priority for d in directors])
    elif heartbeat_ha and states != ["BACKUP", "MASTER"]:
        r.fail("directors", "must be one MASTER and one BACKUP with topology lvs-heartbeat (haresources names "
               "the MASTER; heartbeat.autoFailback decides whether the VIP returns to it)", states)
    elif states == ["BACKUP", "MASTER"]:
        if high.state != "MASTER":
            r.fail("directors", f"the MASTER's priority must be higher than the BACKUP's "
                   f"({low.name} {low.priority} <= {high.name} {high.priority})", states)
    elif states == ["BACKUP", "BACKUP"]:
        if preempt:
            r.fail("directors", "both BACKUP is keepalived's non-preemptive setup: it needs vrrp.preempt "
                   "false (nopreempt on the higher priority); else make one the MASTER", states)
    else:
        r.fail("directors", "must be one MASTER and one BACKUP, or both BACKUP with vrrp.preempt false",
               [d.state for d in directors])


def health_check(r: Reader, hc: dict[str, Any], lvs: dict[str, Any], heartbeat_ha: bool,
                 servers: list[RealServer]) -> HealthCheck:
    health = HealthCheck(
        type=read(r, hc, "healthCheck.type"),
        path=read(r, hc, "healthCheck.path"),
        expect_status=read(r, hc, "healthCheck.expectStatus") or 0,
        connect_timeout=read(r, hc, "healthCheck.connectTimeout") or 0,
        retry=read(r, hc, "healthCheck.retry") or 0,
        delay_before_retry=read(r, hc, "healthCheck.delayBeforeRetry") or 0,
        delay_loop=read(r, hc, "healthCheck.delayLoop") or 0,
        receive=read(r, hc, "healthCheck.receive"),
        quiescent=read(r, lvs, "lvs.quiescent"),
    )
    if heartbeat_ha:
        check_receive(r, health, "receive" in hc, servers)
    if health.path and not PATH_RE.fullmatch(health.path):
        r.fail("healthCheck.path", "must be an absolute URL path of letters, digits and . _ ~ / - (no spaces, "
               "query or fragment); the real servers' nginx serves it", health.path)
    return health


def check_receive(r: Reader, health: HealthCheck, given: bool, servers: list[RealServer]) -> None:
    """ldirectord's receive: a regexp (Perl; Python's re is close enough to catch mistakes) inside quotes in
    ldirectord.cf that every real server's health page ("<name> ok") matches."""
    if health.type != "HTTP_GET":
        if given:
            # (the type itself is not quoted here: a bad one has its own message, and may be any length)
            r.fail("healthCheck.receive", "is only used with healthCheck.type HTTP_GET (ldirectord's negotiate "
                   "check); TCP_CHECK only connects", health.receive)
        return
    if not health.receive or any(c in health.receive for c in '"\n'):
        r.fail("healthCheck.receive", "must be a non-empty regexp without double quotes or newlines (ldirectord.cf "
               "quotes it)", health.receive)
        return
    try:
        pattern = re.compile(health.receive)
    except re.error as exc:
        r.fail("healthCheck.receive", f"must be a valid regexp ({exc})", health.receive)
        return
    missed = [s.name for s in servers if not pattern.search(s.name + HEALTH_PAGE_SUFFIX)]
    if missed:
        r.fail("healthCheck.receive", f"must match every real server's health page '<name>{HEALTH_PAGE_SUFFIX}': "
               f"ldirectord would keep {', '.join(missed)} out of the table", health.receive)


def check_advert_int(r: Reader, advert_int: float | None, version: int | None) -> None:
    """VRRPv2 adverts carry whole seconds in one byte; VRRPv3 centiseconds up to 40.95 s."""
    if advert_int is None or version is None:
        return
    if advert_int <= 0:
        r.fail("vrrp.advertInt", "must be greater than 0 seconds", advert_int)
    elif version == 2 and (advert_int != int(advert_int) or advert_int > MAX_ADVERT_INT_V2):
        r.fail("vrrp.advertInt", f"must be whole seconds from 1 to {MAX_ADVERT_INT_V2} with VRRP version 2",
               advert_int)
    elif version == 3 and not 0.01 <= advert_int <= 40.95:
        r.fail("vrrp.advertInt", "must be between 0.01 and 40.95 seconds with VRRP version 3", advert_int)


def check_auth_pass(r: Reader, auth_pass: str | None, is_secret: bool, vrrp_version: int, heartbeat_ha: bool) -> None:
    """keepalived's PASS authentication (VRRP 2) uses at most 8 characters; the value is reported by length.
    With heartbeat it becomes the sha1 key of /etc/ha.d/authkeys (any length), a secret all the same."""
    if auth_pass is None:
        return
    if not AUTH_PASS_RE.fullmatch(auth_pass):
        # keepalived's config reader ends a word at blanks and starts a comment at '#' or '!' (its parser.c), and
        # heartbeat's authkeys is "1 sha1 KEY": the daemon would use less of the password than was set.
        r.fail("authPass", "must be printable ASCII without blanks, quotes, braces, '#' or '!': keepalived.conf "
               "(and heartbeat's authkeys) would cut it there", f"<secret of {len(auth_pass)} characters>")
        return
    if heartbeat_ha or vrrp_version != 2:
        if not is_secret and heartbeat_ha:
            r.fail("authPass", "must be stored as a secret (pulumi config set --secret authPass ...): it becomes "
                   "heartbeat's authkeys", "<plaintext>")
        return
    if not 1 <= len(auth_pass) <= 8:
        r.fail("authPass", "must be 1 to 8 characters: keepalived's PASS authentication silently "
               "truncates longer passwords", f"<secret of {len(auth_pass)} characters>")
    elif not is_secret:
        r.fail("authPass", "must be stored as a secret (pulumi config set --secret authPass ...)", "<plaintext>")


def check_image(r: Reader, raw: dict[str, Any]) -> tuple[Image, str]:
    """The image and the package source, which must fit together."""
    im = section(r, raw.get("image", {}), "image")
    image = Image(source=read(r, im, "image.source"), boot_method=read(r, im, "image.bootMethod"),
                  kernel=read(r, im, "image.kernel"), initrd=read(r, im, "image.initrd"),
                  kernel_cmdline=read(r, im, "image.kernelCmdline"))
    package_source = read(r, raw, "packageSource")
    before = len(r.problems)
    for key, path in (("image.source", image.source), ("image.kernel", image.kernel),
                      ("image.initrd", image.initrd)):
        if not path or (key == "image.source" and path == "local"):
            continue
        if not os.path.isabs(path) or not os.path.isfile(path):
            what = "'local' (the image lvs-lab builds) or " if key == "image.source" else ""
            r.fail(key, f"must be {what}an absolute path to an existing file on this machine (it is uploaded "
                   "to the hypervisor; URLs are not fetched)", path)
    if len(r.problems) > before:
        pass  # one mistake, one message: no follow-up checks on an unusable image
    elif image.source == "local" and image.boot_method == "bootloader":
        r.fail("image.bootMethod", "bootloader needs an image.source with a bootloader; the image lvs-lab builds "
               "boots its kernel directly (kernel)", image.boot_method)
    elif image.source != "local" and image.boot_method == "kernel" and not image.kernel:
        r.fail("image.kernel", "is required when image.source is not 'local' and image.bootMethod is 'kernel'",
               image.kernel)
    elif image.source != "local" and image.boot_method == "bootloader" and (image.kernel or image.initrd):
        r.fail("image.kernel", "is not used with image.bootMethod bootloader (the image boots itself)",
               image.kernel or image.initrd)
    elif image.source != "local" and package_source == "local":
        r.fail("packageSource", "local (the repository built with lvs-lab's image) works with image.source "
               "local only; set packageSource: mirror for a custom image", package_source)
    return image, package_source


def nginx_check(r: Reader, nc: dict[str, Any]) -> NginxCheck:
    check = NginxCheck(interval=read(r, nc, "nginxCheck.interval") or 0, fall=read(r, nc, "nginxCheck.fall") or 0,
                       rise=read(r, nc, "nginxCheck.rise") or 0, weight=read(r, nc, "nginxCheck.weight") or 0,
                       process=read(r, nc, "nginxCheck.process") or "")
    if check.process and not NAME_RE.fullmatch(check.process):
        r.fail("nginxCheck.process", "must be a process name (pgrep -x): a lowercase letter, then lowercase "
               "letters, digits and '-'", check.process)
    elif len(check.process) > COMM_MAX:
        # pgrep matches /proc/PID/stat's comm, the kernel's TASK_COMM_LEN (16) less its NUL: a longer name
        # never matches, so the script would always fail.
        r.fail("nginxCheck.process", f"must be at most {COMM_MAX} characters: pgrep -x matches the kernel's "
               "process name, cut to 15 (TASK_COMM_LEN), so a longer one never matches", check.process)
    return check


COMM_MAX = 15  # include/linux/sched.h: TASK_COMM_LEN 16, with the terminating NUL
# keepalived's effective priority of a VRRP instance with track scripts stays within 1..254 (vrrp_track.c,
# vrrp_set_effective_priority: a weight never makes an instance the address owner, 255).
PRIORITY_MAX = 254


def check_nginx_weight(r: Reader, check: NginxCheck, directors: list[Director], preempt: bool) -> None:
    """The MASTER with nginx down must end up below the BACKUP with nginx up, or the VIP never moves. With
    nopreempt no priority moves it at all (keepalived.conf(5), nopreempt: a BACKUP does not take over from a
    lower-priority MASTER), so only weight 0 (FAULT: the MASTER gives the VIP up) works."""
    high, low = sorted(directors, key=lambda d: d.priority, reverse=True)
    if not preempt:
        r.fail("nginxCheck.weight", "must be 0 with vrrp.preempt false: under nopreempt a BACKUP never takes "
               "the VIP from a MASTER whose priority dropped; with 0 a failed check puts the MASTER in FAULT "
               "and it gives the VIP up", check.weight)
    elif check.weight > 0 and low.priority + check.weight >= PRIORITY_MAX:
        r.fail("nginxCheck.weight", f"must keep {low.name}'s priority {low.priority} + weight below "
               f"{PRIORITY_MAX} (weight < {PRIORITY_MAX - low.priority}): keepalived caps a priority raised by a "
               "script at 254, so both healthy directors would be equal", check.weight)
    elif check.weight < 0 and high.priority + check.weight >= low.priority:
        r.fail("nginxCheck.weight", f"must bring {high.name}'s priority {high.priority} below {low.name}'s "
               f"{low.priority} when nginx is down (weight < {low.priority - high.priority}), or the VIP "
               "never moves", check.weight)
    elif check.weight > 0 and low.priority + check.weight <= high.priority:
        r.fail("nginxCheck.weight", f"must lift {low.name}'s priority {low.priority} above {high.name}'s "
               f"{high.priority} while {high.name}'s nginx is down (weight > {high.priority - low.priority}), "
               "or the VIP never moves", check.weight)


def heartbeat_timing(r: Reader, raw: Any) -> Heartbeat:
    """heartbeat's ha.cf timing, checked against heartbeat's own rules."""
    hb = section(r, raw, "heartbeat")
    keepalive = read(r, hb, "heartbeat.keepalive")
    deadtime = read(r, hb, "heartbeat.deadtime")
    warntime = read(r, hb, "heartbeat.warntime")
    initdead = read(r, hb, "heartbeat.initdead")
    auto_failback = read(r, hb, "heartbeat.autoFailback")
    udp_port = read(r, hb, "heartbeat.udpPort")
    # heartbeat's init_config (heartbeat/config.c): "if (config->deadtime_ms <= 2 * config->heartbeat_ms)" is
    # an error ("Dead time ... is too small compared to keeplive"): heartbeat refuses to start.
    if keepalive and deadtime and deadtime <= 2 * keepalive:
        r.fail("heartbeat.deadtime", f"must be more than twice heartbeat.keepalive ({keepalive} s): heartbeat refuses "
               "to start otherwise (its config.c), and one lost heartbeat would declare the peer dead", deadtime)
    elif deadtime and warntime and warntime >= deadtime:
        r.fail("heartbeat.warntime", f"must be below heartbeat.deadtime ({deadtime} s): it warns of a late "
               "heartbeat before the peer is declared dead", warntime)
    # config.c refuses initdead < deadtime; ha.cf's documentation asks for at least twice deadtime (the network
    # may come up slowly at boot): the stricter rule, said as the documentation's.
    if deadtime and initdead and initdead < 2 * deadtime:
        r.fail("heartbeat.initdead", f"must be at least twice heartbeat.deadtime ({deadtime} s), ha.cf's rule "
               "for the first wait at boot (heartbeat itself refuses less than deadtime)", initdead)
    return Heartbeat(keepalive=keepalive or 0, deadtime=deadtime or 0, warntime=warntime or 0,
                     initdead=initdead or 0, auto_failback=auto_failback, udp_port=udp_port or 0)
