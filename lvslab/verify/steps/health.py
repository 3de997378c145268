"""Steps on health checking: a real server leaves and rejoins the table; the sorry server answers when
none is left."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lvslab.config import HEALTH_PAGE_SUFFIX
from lvslab.model import SORRY_PREFIX, NodeFacts, VerifySpec
from lvslab.verify.bounds import health_windows
from lvslab.verify.context import StepContext
from lvslab.verify.failure import CheckFailed
from lvslab.verify.ipvsadm import table_watch_script
from lvslab.verify.live import ipvs_list, parallel, wait_all_in_ipvs
from lvslab.verify.probe import (
    http_get,
    ssh_watch,
)

REAL_SERVER_SITE = "/etc/nginx/conf.d/lvslab.conf"  # cloud-init/real-server.yaml.j2


def health_fault(spec: VerifySpec, victim: NodeFacts) -> tuple[str, str, str]:
    """What the health-check step does to one real server, and how it undoes it. HTTP_GET: the port stays
    open and only the health check's answer goes wrong (a TCP_CHECK would not notice): keepalived's check
    gets status 503 instead of expectStatus, ldirectord's negotiate check (seed 003) a page no longer
    matching `receive`. TCP_CHECK: nginx stopped. Returns (what, break command, repair command)."""
    page = spec.health_check.page_file
    if page:
        return (f"{page} no longer matching receive {spec.health_check.receive!r}",
                f"echo maintenance > {page}", f"echo '{victim.name}{HEALTH_PAGE_SUFFIX}' > {page}")
    if spec.health_check.type == "HTTP_GET":
        # healthCheck.path other than /: nginx answers it from a location of its own (cloud-init/nginx-site.conf.j2)
        # whose 200 becomes 503; path /: the index page moves away (403). Either way nginx keeps listening.
        site, index = REAL_SERVER_SITE, "/var/www/html/index.html"
        own = f"return 200 \"{victim.name} ok"
        return ("the health path answering an error status (nginx still listening)",
                f"if grep -q '{own}' {site}; then sed -i.lvslab-off 's/{own}/return 503 \"{victim.name} ok/' {site}; "
                f"else mv {index} {index}.lvslab-off; fi && systemctl reload nginx",
                f"if [ -e {site}.lvslab-off ]; then mv {site}.lvslab-off {site}; fi; "
                f"if [ -e {index}.lvslab-off ]; then mv {index}.lvslab-off {index}; fi; systemctl reload nginx")
    return "nginx stopped", "systemctl stop nginx", "systemctl start nginx"


def check_health(ctx: StepContext) -> dict[str, Any]:
    """Stop nginx on one real server (lvs-heartbeat: make its health page stop matching ldirectord's
    receive): the health checker takes it out of the IPVS table (quiescent: weight 0); start it (restore the
    page): it comes back. Both decided from the MASTER's table (right for every scheduler and weight), timed
    on this host by a watcher that already runs on the director, from the moment the command on the real
    server returned (that command's own SSH round trip, seconds on starved guests, is reported beside it,
    not counted)."""
    spec = ctx.spec
    victim = next((rs for rs in reversed(spec.real_servers) if rs.weight > 0), spec.real_servers[-1])
    master = ctx.active_director()
    remove_window, add_window = spec.health_check.window()
    remove_bound, add_bound = health_windows(spec.health_check)
    what, break_cmd, repair_cmd = health_fault(spec, victim)
    result: dict[str, Any] = {"server": victim.name, "fault": what, "remove_window_s": remove_window,
                              "add_window_s": add_window, "remove_bound_s": remove_bound, "add_bound_s": add_bound}
    wait_all_in_ipvs(ctx)
    stopped = False
    try:
        def act_stop() -> None:
            nonlocal stopped
            out = ctx.ssh(victim.address, break_cmd)
            stopped = out.returncode == 0
            if not stopped:
                raise CheckFailed("health-check.break", f"{what} on {victim.name}", out.stderr.strip())

        removed, stop_s, table = ssh_watch(ctx.key, master.address,
                                   table_watch_script(victim.address, spec.port, False, remove_bound),
                                   act_stop, remove_bound + 30)
        if removed is None:
            raise CheckFailed("health-check.removed", f"{victim.name} ({what}) out of the IPVS table of "
                              f"{ctx.named(master)} within {remove_bound:g} s ({spec.health_check.type})",
                              f"still in the table: {' '.join(table.split())[-300:]}")
        result["removed_after_s"] = round(removed, 1)
        result["stop_command_s"] = round(stop_s, 1)

        def act_start() -> None:
            nonlocal stopped
            ctx.ssh(victim.address, repair_cmd)
            stopped = False

        back, start_s, table = ssh_watch(ctx.key, master.address,
                                table_watch_script(victim.address, spec.port, True, add_bound),
                                act_start, add_bound + 30)
        if back is None:
            raise CheckFailed("health-check.readded", f"{victim.name} back in the IPVS table of {ctx.named(master)} "
                              f"within {add_bound:g} s", f"table: {' '.join(table.split())[-300:]}")
        result["readded_after_s"] = round(back, 1)
        result["start_command_s"] = round(start_s, 1)
        answered = any(http_get(spec.vip, spec.port, timeout=2).server == victim.name
                       for _ in range(4 * len(spec.real_servers)))
        if spec.scheduler.split and not spec.persistence and not answered:
            raise CheckFailed("health-check.answers", f"{victim.name} answering through the VIP after it was re-added",
                              "no answer from it")
    finally:
        if stopped:
            ctx.ssh(victim.address, repair_cmd)
    result["passed"] = True
    return result


def check_sorry_server(ctx: StepContext) -> dict[str, Any]:
    """nginx stopped on every real server: the VIP answers from the MASTER's sorry server (keepalived's
    sorry_server, IPVS local node); nginx started on one real server: it answers again. Both transitions
    timed from the moment the last stop (the start) command returned, polling the VIP every 0.2 s."""
    spec = ctx.spec
    servers = [rs for rs in spec.real_servers if rs.weight > 0]
    holder = ctx.active_director()
    remove_window, add_window = spec.health_check.window()
    remove_bound, add_bound = health_windows(spec.health_check)
    result: dict[str, Any] = {"remove_window_s": remove_window, "add_window_s": add_window,
                              "remove_bound_s": remove_bound, "add_bound_s": add_bound}
    wait_all_in_ipvs(ctx)

    def first_answer(accept: Callable[[str], bool], limit: float) -> tuple[float | None, str | None, int]:
        t0 = ctx.monotonic()
        others = 0
        while ctx.monotonic() - t0 < limit:
            res = http_get(spec.vip, spec.port, timeout=1)
            if res.ok and res.server and accept(res.server):
                return round(ctx.monotonic() - t0, 2), res.server, others
            others += 1
            ctx.sleep(0.2)
        return None, None, others

    try:
        parallel(lambda rs: ctx.ssh(rs.address, "systemctl stop nginx"), servers)
        after, answer, polls = first_answer(lambda s: s.startswith(SORRY_PREFIX), remove_bound)
        if after is None:
            table = ipvs_list(ctx, holder)
            raise CheckFailed("sorry-server.answers", f"the sorry page ({SORRY_PREFIX}{holder.name}) through the "
                              f"VIP within {remove_bound:g} s of nginx stopping on every real server",
                              f"no sorry answer in {polls} polls; table: {' '.join(table.split())[-300:]}")
        result.update(sorry_after_s=after, sorry_answered_by=answer)
        if answer != SORRY_PREFIX + holder.name:
            raise CheckFailed("sorry-server.of-holder", f"the sorry page of {ctx.named(holder)}, which holds the VIP",
                              f"answered by {answer}")
        back = servers[0]
        ctx.ssh(back.address, "systemctl start nginx")
        after, answer, polls = first_answer(lambda s: not s.startswith(SORRY_PREFIX), add_bound)
        if after is None:
            raise CheckFailed("sorry-server.normal-again", f"{back.name} answering through the VIP within "
                              f"{add_bound:g} s of its nginx starting", f"still the sorry page after {polls} polls")
        result.update(normal_after_s=after, normal_answered_by=answer)
    finally:
        parallel(lambda rs: ctx.ssh(rs.address, "systemctl start nginx"), servers)
    wait_all_in_ipvs(ctx)
    result["passed"] = True
    return result
