"""The faults of the scenarios, and the registry the tests and the long run share.

Each fault is `async def fault(ctx, i)`, called `scale.repeats` times (i = 0, 1, ...) while
the load runs (scenarios.run_scenario); `SPECS` names each scenario with its fault and what
it needs (a TCP proxy in front of the broker, a setup, VMs the load leaves alone).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from . import chaos
from .cluster import Timing, VmInfo, ctl
from .scenarios import Ctx, Env, Fault, Figures, Scale, run_scenario


async def cut_proxy(ctx: Ctx, i: int) -> None:
    """Every connection through the proxy reset; on odd repeats the broker then stays
    unreachable for a second (new connections refused)."""
    assert ctx.proxy is not None
    if i % 2:
        ctx.proxy.block()
        await asyncio.sleep(1.0)
        ctx.proxy.unblock()
    else:
        ctx.proxy.cut()
    ctx.extra["cuts"] = ctx.extra.get("cuts", 0) + 1


async def close_connections(ctx: Ctx, i: int) -> None:
    await chaos.close_all_connections(ctx.env.vhost)
    ctx.extra["closed_all"] = ctx.extra.get("closed_all", 0) + 1


async def restart_broker(ctx: Ctx, i: int) -> None:
    took = await chaos.restart_broker()
    ctx.extra["broker_restarts"] = ctx.extra.get("broker_restarts", 0) + 1
    ctx.extra["broker_down_s"] = round(max(took, ctx.extra.get("broker_down_s", 0.0)), 1)


async def close_then_restart(ctx: Ctx, i: int) -> None:
    await (close_connections if i % 2 == 0 else restart_broker)(ctx, i)


async def kill_daemon(ctx: Ctx, i: int) -> None:
    await ctx.cloud.kill_async("daemon")
    await asyncio.sleep(ctx.rng.uniform(0.0, 1.0))
    ctx.cloud.start_daemon()
    ctx.extra["daemon_kills"] = ctx.extra.get("daemon_kills", 0) + 1


async def node_status(ctx: Ctx, vm: VmInfo) -> str:
    answer = await ctx.load.call("admin", "GET", f"/vm/{vm.uuid}/status")
    return str(answer.body["result"]["node_status"])


async def kill_agent(ctx: Ctx, i: int) -> None:
    node = ctx.cloud.nodes[i % len(ctx.cloud.nodes)]
    probe = next(vm for vm in ctx.fleet if vm.node == node.name)
    await ctx.cloud.kill_async(f"agent-{node.name}")
    ctx.extra["agent_kills"] = ctx.extra.get("agent_kills", 0) + 1
    t0 = time.monotonic()
    while await node_status(ctx, probe) != "unreachable":
        assert time.monotonic() - t0 < 30, "node not unreachable after its agent died"
        await asyncio.sleep(0.2)
    ctx.extra["unreachable_after_s"] = round(max(time.monotonic() - t0,
                                                 ctx.extra.get("unreachable_after_s", 0)), 2)
    await asyncio.sleep(1.0)
    ctx.cloud.start_agent(node)
    t0 = time.monotonic()
    while await node_status(ctx, probe) != "online":
        assert time.monotonic() - t0 < 30, "node not online after its agent came back"
        await asyncio.sleep(0.2)
    ctx.extra["online_after_s"] = round(max(time.monotonic() - t0,
                                            ctx.extra.get("online_after_s", 0)), 2)


async def slow_boots(ctx: Ctx) -> None:
    """Starts take 2 s (100 simulated seconds): tasks are running when an agent dies."""
    for vm in ctx.fleet:
        await ctl(ctx.cloud.node(vm.node), "fault", vm.uuid, "boot_seconds=100")


async def hang_and_slow(ctx: Ctx, i: int) -> None:
    """A vmadm that hangs (killed at the task's deadline) and one that is slow (within it),
    on VMs the load leaves alone; the load goes on meanwhile."""
    targets = [vm for vm in ctx.fleet if vm.hostname.startswith("x")]
    hung, slow = targets[(2 * i) % len(targets)], targets[(2 * i + 1) % len(targets)]
    load = ctx.load
    for vm in (hung, slow):
        answer = await load.call("admin", "GET", f"/vm/{vm.uuid}/status")
        if answer.body["result"]["status"] == "stopped":
            req = await load.perform(load.new("admin", "start", "PUT",
                                              f"/vm/{vm.uuid}/status/start", vm=vm.uuid))
            await _task_end(ctx, req.task_id)
    node_h, node_s = ctx.cloud.node(hung.node), ctx.cloud.node(slow.node)
    await ctl(node_h, "fault", hung.uuid, 'hang_next={"cmd": "stop"}')
    # 150 simulated seconds: 3 s at timescale 0.02, inside the stop's deadline (2 + 6 s).
    await ctl(node_s, "fault", slow.uuid, 'delay_next={"cmd": "stop", "seconds": 150}')
    t = ctx.timing.stop_timeout
    reqs = [load.new("admin", "stop", "PUT", f"/vm/{vm.uuid}/status/stop", {"timeout": t},
                     stream=True, vm=vm.uuid) for vm in (hung, slow)]
    done = await asyncio.gather(*(load.perform(r) for r in reqs))
    finals = [r.answers[-1] for r in done]
    ctx.extra.setdefault("hung_stop_final", []).append(finals[0].code)
    ctx.extra.setdefault("slow_stop_final", []).append(finals[1].code)
    await ctl(node_h, "fault", hung.uuid, "hang_next=null")


def without_targets(fleet: list[VmInfo]) -> list[VmInfo]:
    """The load's VMs: all but the targets of `hang_and_slow`."""
    return [vm for vm in fleet if not vm.hostname.startswith("x")]


async def _task_end(ctx: Ctx, task_id: str | None) -> None:
    if task_id is None:
        return
    end = time.monotonic() + 30
    while time.monotonic() < end:
        answer = await ctx.load.call("admin", "GET", f"/task/{task_id}/status")
        if answer.code != 201:
            return
        await asyncio.sleep(0.2)


async def lose_events(ctx: Ctx, i: int) -> None:
    """Kill every `vmadm events` stream of every node while VMs change (vminfod restart)."""
    for node in ctx.cloud.nodes:
        await ctl(node, "events-kill")
    ctx.extra["streams_killed"] = ctx.extra.get("streams_killed", 0) + len(ctx.cloud.nodes)


async def streams_die(ctx: Ctx) -> None:
    """Every events stream also dies by itself after 5 events, all along the scenario."""
    for node in ctx.cloud.nodes:
        await ctl(node, "fault", "global", "events_die_after=5")


@dataclass(frozen=True)
class Spec:
    name: str
    fault: Fault
    what: str  # one line for docs/reliability.md
    proxy: bool = False
    setup: Callable[[Ctx], Awaitable[None]] | None = None
    extra_vms: int = 0
    load_fleet: Callable[[list[VmInfo]], list[VmInfo]] | None = None


SPECS = {s.name: s for s in (
    Spec("broker-cut", cut_proxy, "every broker connection reset through a TCP proxy "
         "(odd repeats: broker unreachable for 1 s)", proxy=True),
    Spec("broker-restart", close_then_restart, "rabbitmqctl close_all_connections -p <vhost> "
         "(even repeats), stop_app + start_app (odd repeats)"),
    Spec("daemon-kill", kill_daemon, "vmd daemon SIGKILLed, restarted after 0-1 s"),
    Spec("agent-kill", kill_agent, "an agent SIGKILLed while starts run (boots take 2 s), "
         "its node unreachable, agent restarted", setup=slow_boots),
    Spec("vmadm-hang", hang_and_slow, "a vmadm stop that hangs (killed at the deadline) and "
         "one 3 s late, on two VMs outside the load", extra_vms=2,
         load_fleet=without_targets),
    Spec("lost-events", lose_events, "every vmadm events stream killed (vminfod restart), "
         "and every stream dies by itself after 5 events", setup=streams_die),
)}


async def run_spec(env: Env, name: str, scale: Scale, timing: Timing | None = None) -> Figures:
    spec = SPECS[name]
    return await run_scenario(env, name, scale, spec.fault, timing=timing, proxy=spec.proxy,
                              extra_vms=spec.extra_vms, load_fleet=spec.load_fleet,
                              setup=spec.setup)
