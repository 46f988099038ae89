"""The node watcher against the real simulator, through the local and the SSH runner."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from vmd.model import NodeName, Observation
from vmd.node_agent.driver import LocalRunner, NodeWatcher, Vmadm, WatchSettings

from .conftest import VMADM, DriverFactory, Sim, children, needs_sim, wait_for

pytestmark = needs_sim

H = "web01.example.com"


class Collector:
    """Consumes a watcher in a task and keeps what it yields, with the arrival time."""

    def __init__(self, watcher: NodeWatcher) -> None:
        self.watcher = watcher
        self.seen: list[tuple[float, Observation]] = []
        self._new = asyncio.Event()
        self._task = asyncio.ensure_future(self._consume())

    async def _consume(self) -> None:
        async for observation in self.watcher:
            self.seen.append((time.time(), observation))
            self._new.set()

    async def first(self, match: Callable[[Observation], bool],
                    timeout: float = 10.0) -> tuple[float, Observation]:
        async def look() -> tuple[float, Observation]:
            while True:
                for arrived, observation in self.seen:
                    if match(observation):
                        return arrived, observation
                self._new.clear()
                await self._new.wait()
        return await asyncio.wait_for(look(), timeout)

    async def ready(self, uuid: str) -> None:
        """Wait until the stream's `ready` snapshot (with `uuid`) was taken in."""
        await wait_for(lambda: uuid in self.watcher.known)

    async def close(self) -> None:
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass


def events_children() -> list[int]:
    return children(f"{VMADM} events")


async def test_crash_is_yielded_within_half_a_second(make_driver: DriverFactory,
                                                     sim: Sim) -> None:
    vmadm = await make_driver()
    u = await sim.create("kvm", "running", hostname=H)
    watch = Collector(vmadm.watch(WatchSettings(scan_interval=None)))
    try:
        await watch.ready(u)
        await sim.ctl("crash", u)
        crashed = time.time()
        arrived, observation = await watch.first(lambda o: o.uuid == u)
    finally:
        await watch.close()
    after_ctl = arrived - crashed
    after_change = arrived - observation.change_time
    print(f"\ncrash observed {after_ctl * 1000:.0f} ms after vmd-vmadm-ctl returned, "
          f"{after_change * 1000:.0f} ms after the node's change time "
          f"({type(vmadm.runner).__name__})")
    assert observation.state != "running"
    assert observation.node == NodeName("cn1")
    assert observation.vm is not None and observation.vm["hostname"] == H
    # The done-criterion (simulator at timescale 0.02).
    assert after_change < 0.5
    assert after_ctl < 0.5


async def test_changes_missed_while_the_stream_was_down_are_yielded(
        make_driver: DriverFactory, sim: Sim) -> None:
    vmadm = await make_driver()
    u = await sim.create("kvm", "running", hostname=H)
    watcher = vmadm.watch(WatchSettings(restart_delay=1.5, scan_interval=None))
    watch = Collector(watcher)
    try:
        await watch.ready(u)
        [pid] = events_children()
        os.kill(pid, signal.SIGKILL)
        await sim.ctl("crash", u)
        # The change was made before the stream came back: only the resync can report it.
        assert watcher.stats.stream_starts == 1
        _, observation = await watch.first(lambda o: o.uuid == u)
    finally:
        await watch.close()
    assert observation.state == "stopped"
    assert (watcher.stats.stream_restarts, watcher.stats.stream_starts) == (1, 2)
    assert watcher.stats.scans == 0


async def test_periodic_scan_is_the_safety_net(make_driver: DriverFactory, sim: Sim) -> None:
    vmadm = await make_driver()
    u = await sim.create("kvm", "running", hostname=H)
    watcher = vmadm.watch(WatchSettings(restart_delay=3600, scan_interval=0.3))
    watch = Collector(watcher)
    try:
        await watch.ready(u)
        [pid] = events_children()
        os.kill(pid, signal.SIGKILL)
        await sim.ctl("crash", u)
        _, observation = await watch.first(lambda o: o.uuid == u)
    finally:
        await watch.close()
    assert observation.state == "stopped"
    assert watcher.stats.stream_starts == 1
    assert watcher.stats.scans >= 1


async def test_create_and_destroy(make_driver: DriverFactory, sim: Sim) -> None:
    vmadm = await make_driver()
    first = await sim.create("kvm", "running")
    watch = Collector(vmadm.watch(WatchSettings(scan_interval=None)))
    try:
        await watch.ready(first)
        u = await sim.create("joyent", "stopped", hostname=H)
        _, created = await watch.first(lambda o: o.uuid == u)
        await sim.ctl("destroy", u)
        _, deleted = await watch.first(lambda o: o.uuid == u and o.state is None)
    finally:
        await watch.close()
    assert created.state == "stopped"
    assert created.vm is not None and created.vm["brand"] == "joyent"
    assert deleted.vm is None
    # Nothing at all was reported for the untouched VM.
    assert [o.uuid for _, o in watch.seen if o.uuid == first] == []


async def test_baseline_closes_the_gap_after_a_full_sync(make_driver: DriverFactory,
                                                         sim: Sim) -> None:
    vmadm = await make_driver()
    u = await sim.create("kvm", "running", hostname=H)
    listing = await vmadm.listing()
    await sim.ctl("crash", u)  # between the agent's full sync and the watch
    watch = Collector(vmadm.watch(WatchSettings(scan_interval=None), baseline=listing))
    try:
        _, observation = await watch.first(lambda o: o.uuid == u)
    finally:
        await watch.close()
    assert observation.state == "stopped"


async def test_stream_process_is_gone_when_the_watch_ends(make_driver: DriverFactory,
                                                         sim: Sim) -> None:
    vmadm = await make_driver()
    u = await sim.create("kvm", "running")
    watch = Collector(vmadm.watch(WatchSettings(scan_interval=None)))
    await watch.ready(u)
    assert len(events_children()) == 1
    await watch.close()
    await wait_for(lambda: events_children() == [], timeout=5)


LEGACY = f"""
import os, sys
if sys.argv[1:2] == ["events"]:
    print('Invalid command: "events".', file=sys.stderr)
    print("Usage: vmadm <command> [options]", file=sys.stderr)
    sys.exit(2)
os.execv({str(VMADM)!r}, [{str(VMADM)!r}, *sys.argv[1:]])
"""


async def test_legacy_platform_falls_back_to_polling(sim: Sim, tmp_path: Path) -> None:
    script = tmp_path / "legacy_vmadm.py"
    script.write_text(LEGACY)
    vmadm = Vmadm(LocalRunner(env=sim.env), node=NodeName("cn1"),
                  vmadm=[sys.executable, str(script)], iso_dir=str(sim.iso_dir))
    u = await sim.create("kvm", "running")
    watcher = vmadm.watch(WatchSettings(scan_interval=None, legacy_poll_interval=0.2))
    watch = Collector(watcher)
    try:
        await wait_for(lambda: u in watcher.known)
        await sim.ctl("crash", u)
        _, observation = await watch.first(lambda o: o.uuid == u)
    finally:
        await watch.close()
    assert observation.state == "stopped"
    assert watcher.stats.legacy
    assert watcher.stats.stream_starts == 1 and watcher.stats.stream_restarts == 0


@pytest.mark.parametrize("junk", [b"not json\n", b'{"type": "modify"}\n'])
async def test_garbage_on_the_stream_restarts_it(sim: Sim, tmp_path: Path, junk: bytes) -> None:
    # A vmadm whose events stream prints one bad line after the snapshot, then carries on.
    script = tmp_path / "noisy_vmadm.py"
    script.write_text(f"""
import os, subprocess, sys
if sys.argv[1:2] == ["events"] and not os.path.exists({str(tmp_path / 'once')!r}):
    open({str(tmp_path / 'once')!r}, "w").close()
    proc = subprocess.Popen([{str(VMADM)!r}, *sys.argv[1:]], stdout=subprocess.PIPE)
    sys.stdout.buffer.write(proc.stdout.readline())
    sys.stdout.buffer.write({junk!r})
    sys.stdout.flush()
    proc.wait()
os.execv({str(VMADM)!r}, [{str(VMADM)!r}, *sys.argv[1:]])
""")
    vmadm = Vmadm(LocalRunner(env=sim.env), node=NodeName("cn1"),
                  vmadm=[sys.executable, str(script)], iso_dir=str(sim.iso_dir))
    u = await sim.create("kvm", "running")
    watcher = vmadm.watch(WatchSettings(restart_delay=0.1, scan_interval=None))
    watch = Collector(watcher)
    try:
        await wait_for(lambda: watcher.stats.stream_starts == 2)
        await sim.ctl("crash", u)
        _, observation = await watch.first(lambda o: o.uuid == u)
    finally:
        await watch.close()
    assert observation.state != "running"
    assert watcher.stats.bad_lines == 1
