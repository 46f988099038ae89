"""Benchmark: how long an out-of-band change on a node takes to become a `status_change` event.

docs/architecture.md ("How an observation flows") promises that a change made on the node
behind vmd's back (a crashed guest, an operator's own `vmadm start`) reaches the daemon
within a second. This measures that path end to end with the real parts, as deployed:

    node change (the simulator's event date)
      -> `vmadm events -j -r` (vmd-vmadm, a separate process polling its journal)
      -> the agent's watcher and reporter (a real `vmd agent`, confirmed publish)
      -> RabbitMQ -> the daemon (a real `vmd daemon`: observe, commit with SQLite FULL sync)
      -> the `status_change` event at a subscriber bound to `vmd.events` (`vm.#`)

Each round changes one VM and waits for its event before the next, alternately a crash
(`vmd-vmadm-ctl crash`: running -> stopped) and an operator's `vmd-vmadm start`
(stopped -> running). The lag is the event's arrival (wall clock) minus the node's change
time (the `date` of the simulator's event line, the same clock). It prints the lag's
percentiles and the share of rounds over the 1 s bound.

This was the timed test `tests/agent/test_reports.py::test_out_of_band_changes_reach_...`
(issue 13): a wall-clock bound on a path through three processes and the broker belongs
in a benchmark, where the machine's load is printed beside the figures; the test keeps
the behaviour (the change arrives, with the node's change time).

    .venv/bin/python bench/observation_lag.py             # 200 rounds over 10 VMs
    .venv/bin/python bench/observation_lag.py --quick     # 20 rounds
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

import aio_pika
import aio_pika.abc
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common

from vmd.node_agent.driver.events import parse_date

NODE = "cn00.bench"
OWNER = "8a1a4e6c-0000-4000-8000-00000000beef"
TIMESCALE = "0.02"  # as the agent tests: a simulated start takes 20 ms
BOUND = 1.0  # docs/architecture.md
VMADM = str(common.BIN / "vmd-vmadm")
CTL = str(common.BIN / "vmd-vmadm-ctl")
ZONECFG = str(common.BIN / "vmd-zonecfg")


class Events:
    """Arrival times of `status_change` events, per (uuid, status)."""

    def __init__(self) -> None:
        self.seen: dict[tuple[str, str], float] = {}
        self.changed = asyncio.Event()

    async def on_event(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        at = time.time()
        key = message.routing_key or ""
        if not key.endswith(".status_change"):
            return
        uuid = key.split(".")[2]
        self.seen[(uuid, orjson.loads(message.body)["status"])] = at
        self.changed.set()

    async def wait(self, uuid: str, status: str, timeout: float) -> float:
        async with asyncio.timeout(timeout):
            while (uuid, status) not in self.seen:
                self.changed.clear()
                await self.changed.wait()
        return self.seen.pop((uuid, status))


def change_time(root: Path, uuid: str, state: str) -> float:
    """The node's change time (event date) of the last time the VM reached `state`."""
    found = None
    for line in (root / "events.jsonl").read_text().splitlines():
        event = json.loads(line)
        if event.get("uuid") == uuid and (event.get("vm") or {}).get("state") == state:
            found = parse_date(event["date"])
    if found is None:
        raise RuntimeError(f"no event of {uuid} reaching {state}")
    return found


async def run_tool(argv: list[str], env: dict[str, str]) -> str:
    proc = await asyncio.create_subprocess_exec(
        *argv, env={**os.environ, **env}, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"{argv}: exit {proc.returncode}: {err.decode()}")
    return out.decode()


def agent_config(base: Path, root: Path) -> Path:
    path = base / "agent-sim.toml"
    path.write_text(f"""\
[broker]
url = "{common.amqp_url(common.BENCH_AGENT)}"

[agent]
node = "{NODE}"
backend = "vmadm"
vmadm = ["{VMADM}"]
zonecfg = ["{ZONECFG}"]
iso_dir = "{root / 'iso'}"
heartbeat_interval = 5
poll_interval = 3600
metrics = "127.0.0.1:0"
state_dir = "{base / 'agent-state'}"
drain_timeout = 10

[log]
level = "info"
format = "json"
""")
    return path


async def measure(root: Path, env: dict[str, str], uuids: list[str], rounds: int,
                  timeout: float, events: Events) -> list[float]:
    lags = []
    for k in range(rounds):
        uuid = uuids[k % len(uuids)]
        # Every VM starts running: its first change is a crash, its next a start, ...
        if (k // len(uuids)) % 2 == 0:
            await run_tool([CTL, "crash", uuid], env)
            state = "stopped"
        else:
            await run_tool([VMADM, "start", uuid], env)
            state = "running"
        arrived = await events.wait(uuid, state, timeout)
        lags.append(arrived - change_time(root, uuid, state))
    return lags


async def run(base: Path, cloud: common.Cluster, args: argparse.Namespace) -> list[float]:
    root = base / "node"
    (root / "iso").mkdir(parents=True)
    env = {"VMADM_SIM_ROOT": str(root), "VMADM_SIM_TIMESCALE": TIMESCALE}
    uuids = []
    for i in range(args.vms):
        out = await run_tool([CTL, "create", "--brand", "kvm", "--state", "running",
                              "--alias", f"lag{i:02d}", "--hostname", f"lag{i:02d}.example.com",
                              "--owner", OWNER], env)
        uuids.append(out.split()[-1])

    connection = await aio_pika.connect(common.amqp_url("admin"))
    try:
        channel = await connection.channel()
        exchange = await channel.get_exchange("vmd.events")
        queue = await channel.declare_queue(f"admin.bench.lag.{os.getpid()}", exclusive=True)
        await queue.bind(exchange, "vm.#")
        events = Events()
        await queue.consume(events.on_event, no_ack=True)

        os.environ.update(env)  # the agent's vmd-vmadm finds the simulated node
        agent = cloud.spawn("agent", cloud.vmd("agent", "-c", str(agent_config(base, root))))
        agent.wait_ready(60)
        # The daemon sees every VM first in the agent's full sync (first seen: running).
        for uuid in uuids:
            await events.wait(uuid, "running", args.timeout)
        # The watcher's events stream starts after that sync; a change before its `ready`
        # line would be found by a snapshot diff with the line's date instead.
        await asyncio.sleep(1.0)
        return await measure(root, env, uuids, args.rounds, args.timeout, events)
    finally:
        await connection.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--vms", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="20 rounds (smoke test)")
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    if args.quick:
        args.rounds = 20
    common.fresh_vhost()
    common.print_machine("bench/observation_lag.py" + (" --quick" if args.quick else ""))
    with common.workdir(args.keep) as base, common.cluster(base) as cloud:
        cloud.start_daemon().wait_ready(60)
        lags = sorted(asyncio.run(run(base, cloud, args)))
        cloud.assert_alive()
    over = sum(1 for lag in lags if lag >= BOUND)
    print(f"observation lag: node change -> status_change event, {len(lags)} rounds "
          f"over {args.vms} VMs (crash, then an operator's vmadm start, in turn)")
    rows = [[f"{q}", common.percentile(lags, q) * 1000]
            for q in (0.5, 0.9, 0.99)] + [["max", lags[-1] * 1000]]
    common.print_table(["percentile", "lag ms"], rows)
    print(f"over the {BOUND:g} s bound: {over} of {len(lags)}   "
          f"{common.verdict(over == 0)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
