"""`vmd agent -c FILE` as a real process: readiness and SIGTERM's drain with systemd's notify
socket, a crash (kill -9) in the middle of a task and the redelivery after the restart,
configuration errors."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Callable
from pathlib import Path

import aio_pika
import pytest
from support.amqp import message_count_settles

from vmd.bus import FullSync, TaskResult, task_queue
from vmd.model import OutcomeKind

from .conftest import (
    NODE,
    VMADM,
    VMD,
    AgentProcess,
    DaemonSide,
    Notifications,
    Sim,
    calls,
    wait_calls,
    write_config,
)

H = "web01.example.com"


def config_for(tmp_path: Path, url: str, sim: Sim, **overrides: object) -> Path:
    settings: dict[str, object] = {
        "node": NODE, "vmadm": [str(VMADM)], "iso_dir": str(sim.iso_dir),
        "heartbeat_interval": 0.5, "poll_interval": 30, "metrics": "127.0.0.1:0",
        "state_dir": str(tmp_path / "state"), "drain_timeout": 30,
    }
    settings.update(overrides)
    return write_config(tmp_path / "agent.toml", url, settings)


async def test_sigterm_lets_a_running_stop_finish_and_report(
    tmp_path: Path, amqp_url: str, daemon: DaemonSide, sim: Sim,
    agent_process: Callable[..., AgentProcess], notifications: Notifications,
    amqp_channel: aio_pika.abc.AbstractChannel,
) -> None:
    uuid = await sim.create("kvm", "running", hostname=H)
    # The guest takes 100 simulated seconds (2 s here) to shut down.
    await sim.ctl("fault", uuid, "shutdown_seconds=100")
    agent = agent_process(config_for(tmp_path, amqp_url, sim),
                          {**sim.env, "NOTIFY_SOCKET": notifications.path})
    await agent.start()
    ready_at = await notifications.wait_for("READY=1")
    await daemon.wait(FullSync)

    stop = await daemon.send(daemon.task(uuid, "stop", hostname=H, deadline=60, force=False,
                                         timeout=0))
    await wait_calls(sim, lambda ls: any(x.endswith("-> running") for x in ls), uuid)
    agent.signal(signal.SIGTERM)
    # Once the agent says it drains (its consumer is cancelled), tasks sent are not taken:
    # they stay in the queue for the next agent.
    async with asyncio.timeout(20):
        while not any("STATUS=draining" in m for _, m in notifications.messages):
            notifications.drain()
            await asyncio.sleep(0.02)
    later = await daemon.send(daemon.task(uuid, "current", hostname=H))
    assert await agent.wait(30) == 0, agent.stderr()

    result = await daemon.result(stop.task_id, timeout=1)
    assert result.outcome.kind is OutcomeKind.SUCCESS
    result_at = next(r.at for r in daemon.received if r.report is result)
    stopping_at = await notifications.wait_for("STOPPING=1", timeout=1)
    assert ready_at < result_at < stopping_at
    # Only the one stop acted on the VM (a `get` may read it, e.g. for its brand).
    actions = [c for c in await calls(sim, uuid) if c.split()[0] in ("start", "stop", "reboot")]
    assert actions == [f"stop {uuid} -> exit 0"]
    assert not [r for r in daemon.of(TaskResult) if r.task_id == later.task_id]
    assert await message_count_settles(amqp_channel, task_queue(NODE), 1) == 1
    assert "shutdown complete" in agent.stdout()
    assert agent.stderr() == ""


async def test_a_task_is_not_run_again_after_a_crash(
    tmp_path: Path, amqp_url: str, daemon: DaemonSide, sim: Sim,
    agent_process: Callable[..., AgentProcess],
) -> None:
    uuid = await sim.create("kvm", "running", hostname=H)
    await sim.ctl("fault", uuid, "shutdown_seconds=100")
    agent = agent_process(config_for(tmp_path, amqp_url, sim), sim.env)
    await agent.start()
    await daemon.wait(FullSync)
    stop = await daemon.send(daemon.task(uuid, "stop", hostname=H, deadline=60, force=False,
                                         timeout=0))
    await wait_calls(sim, lambda ls: any(x.endswith("-> running") for x in ls), uuid)
    await agent.kill()  # kill -9 mid-task: no result was reported
    assert not daemon.of(TaskResult)
    journal = (tmp_path / "state" / "journal-node1.jsonl").read_text().splitlines()
    assert [json.loads(x)["e"] for x in journal] == ["start"]

    mark = len(daemon.received)
    await agent.start()
    await daemon.wait(FullSync, after=mark)
    # The same task again, as the broker or a daemon would deliver it after the crash.
    await daemon.send(stop)
    result = await daemon.result(stop.task_id)
    assert (result.outcome.kind, result.outcome.returncode) == (OutcomeKind.FAILURE, 255)
    assert result.outcome.message.startswith(f"vmadm stop {H}: outcome unknown")
    # vmadm ran once: the orphaned stop of the first agent finished on its own.
    lines = await wait_calls(sim, lambda ls: not any("-> running" in x for x in ls), uuid)
    assert [x.split()[0] for x in lines if x.startswith("stop")] == ["stop"]
    # A repeat gets the same answer.
    mark = len(daemon.received)
    await daemon.send(stop)
    again = await daemon.wait(TaskResult, lambda r: r.task_id == stop.task_id, after=mark)
    assert again.outcome == result.outcome
    agent.signal(signal.SIGTERM)
    assert await agent.wait(30) == 0
    assert len([x for x in await calls(sim, uuid) if x.startswith("stop")]) == 1


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        pytest.param('[broker]\nurl = "amqp://x@127.0.0.1/v"\n', "[agent] missing",
                     id="no-agent-section"),
        pytest.param('[broker]\nurl = "amqp://x@127.0.0.1/v"\n[agent]\nnode = "n"\n'
                     'max_parallel = "many"\n', "[agent] max_parallel", id="bad-key"),
        pytest.param('[broker]\nurl = "amqp://x@127.0.0.1/v"\n[agent]\nnode = "n"\n'
                     'transport = "ssh"\n[agent.ssh]\nhost = "h"\nknown_hosts = "/k"\n',
                     "no client_keys", id="ssh-without-keys"),
        pytest.param('[broker]\nurl = "amqp://x@127.0.0.1/v"\n[agent]\nnode = "n"\n'
                     'state_dir = "/proc/vmd-agent"\nbackend = "memory"\n', "state_dir",
                     id="unusable-state-dir"),
    ],
)
async def test_configuration_errors_are_one_line_and_exit_2(
    tmp_path: Path, agent_process: Callable[..., AgentProcess], text: str, needle: str
) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(text + '[log]\nformat = "json"\n')
    agent = agent_process(path)
    await agent.start()
    assert await agent.wait(30) == 2
    lines = agent.stderr().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vmd agent: ") and needle in lines[0], lines
    assert "Traceback" not in agent.stdout()


def test_the_entry_point_is_installed() -> None:
    assert VMD.exists()
