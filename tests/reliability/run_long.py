"""The long version of the fault suite: every scenario repeated more, under a bigger load.

    scripts/reliability [--vhost VHOST] [--repeats N] [--daemon-kills N] [--broker-restarts N]
                        [--fuzz N] [--only NAME,...] [--json FILE]

(`scripts/reliability` runs this file with the venv's Python.) It needs what the tests need:
RabbitMQ on 127.0.0.1:5672 with the test users (scripts/ensure-rabbitmq), the venv. It runs
the scenarios of faults.SPECS and the hostile-input fuzzer (the rights checks have nothing
to repeat: they run in pytest, tests/reliability/test_rights.py), and prints one JSON line
per scenario and a Markdown table for docs/reliability.md. The
`broker-restart` scenario restarts the whole broker (every vhost): run it when nobody else
uses this RabbitMQ, or leave it out with `--only`.

Exit code: 0 when every invariant held, 1 otherwise (the failing figures are printed).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TESTS = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(TESTS))

import aio_pika  # noqa: E402

from reliability.faults import SPECS, run_spec  # noqa: E402
from reliability.hostile import run_fuzz  # noqa: E402
from reliability.scenarios import Env, Scale  # noqa: E402
from vmd.bus.topology import DAEMON, node_tasks  # noqa: E402

ROOT = TESTS.parent
NODES = tuple(f"node{i}" for i in range(1, 10))


def url_for(vhost: str) -> Any:
    return lambda user: f"amqp://{user}:{user}@127.0.0.1:5672/{vhost}"


async def clean(vhost: str) -> None:
    """The clean slate of tests/conftest.py: vmd's queues and exchanges deleted by name."""
    try:
        connection = await aio_pika.connect(url_for(vhost)("vmd"), timeout=5)
    except Exception:
        await asyncio.to_thread(subprocess.run, [str(ROOT / "scripts" / "ensure-rabbitmq"), vhost],
                                check=True)
        connection = await aio_pika.connect(url_for(vhost)("vmd"), timeout=5)
    topology = DAEMON
    for node in NODES:
        topology = topology + node_tasks(node)
    async with connection:
        channel = await connection.channel()
        for queue in sorted({q.name for q in topology.queues}):
            await channel.queue_delete(queue)
        for exchange in sorted({e.name for e in topology.exchanges}):
            await channel.exchange_delete(exchange)


def scale_for(name: str, args: argparse.Namespace) -> Scale:
    repeats = {"daemon-kill": args.daemon_kills, "broker-restart": args.broker_restarts,
               "vmadm-hang": max(1, args.repeats // 2)}.get(name, args.repeats)
    return Scale(repeats=repeats, nodes=2, per_node=8, concurrency=args.clients,
                 pause=0.02, gap=args.gap)


async def main(args: argparse.Namespace) -> int:
    names = args.only.split(",") if args.only else [*SPECS, "hostile-input"]
    rows: list[dict[str, Any]] = []
    failed = 0
    keep = args.keep or None
    with tempfile.TemporaryDirectory(prefix="vmd-reliability-") as scratch:
        tmp = keep or scratch
        for name in names:
            await clean(args.vhost)
            env = Env(args.vhost, Path(tmp) / name, url_for(args.vhost))
            env.base.mkdir(parents=True)
            started = time.monotonic()
            if name == "hostile-input":
                fuzz = await run_fuzz(env, args.fuzz)
                summary = fuzz.summary()
                ok = fuzz.violations == 0 and fuzz.daemon_restarts == 0 and \
                    fuzz.vmadm_power_calls == 0 and fuzz.unexpected_calls == 0 and \
                    fuzz.states_changed == 0 and fuzz.status_events == 0
                problems = fuzz.problems
            else:
                figures = await run_spec(env, name, scale_for(name, args))
                summary = figures.summary()
                try:
                    figures.assert_ok()
                    ok = True
                except AssertionError:
                    ok = False
                problems = figures.problems
            summary["ok"] = ok
            summary["wall_s"] = round(time.monotonic() - started, 1)
            rows.append(summary)
            print(json.dumps(summary), flush=True)
            if not ok:
                failed += 1
                print("\n".join(problems[:40]), file=sys.stderr, flush=True)
    print()
    print(markdown(rows))
    if args.json:
        await asyncio.to_thread(Path(args.json).write_text, json.dumps(rows, indent=1) + "\n")
    return 1 if failed else 0


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| scenario | repeated | load | requests | answers | duplicates | lost changes "
             "| stuck VMs | converged |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["scenario"] == "hostile-input":
            lines.append(f"| hostile-input | {r['requests']} requests | fuzzer | "
                         f"{r['requests']} | {r['replies']} (+{r['dead_lettered']} dead-"
                         f"lettered, {r['refused_by_broker']} refused by the broker) | 0 | - "
                         f"| - | - |")
            continue
        load = (f"{r['vms']} VMs, {r['concurrency']} clients, {r['node_changes']} node "
                f"changes, {r['seconds']} s")
        lines.append(f"| {r['scenario']} | {r['repeats']} | {load} | {r['requests']} | "
                     f"{r['answers']} | {r['duplicates']} | {r['lost_changes']} | "
                     f"{r['stuck_vms']} | {r['converged_in']} s |")
    return "\n".join(lines)


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--vhost", default=os.environ.get("VMD_TEST_VHOST", "vmd-reliability"))
    p.add_argument("--repeats", type=int, default=6, help="faults per scenario (default 6)")
    p.add_argument("--daemon-kills", type=int, default=10, help="default 10")
    p.add_argument("--broker-restarts", type=int, default=4,
                   help="close_all_connections and stop_app/start_app, alternating (4)")
    p.add_argument("--fuzz", type=int, default=10_000, help="hostile requests (10000)")
    p.add_argument("--gap", type=float, default=4.0, help="seconds of load between faults")
    p.add_argument("--clients", type=int, default=12, help="concurrent requesters (12)")
    p.add_argument("--only", default="", help=f"comma-separated, among: "
                   f"{', '.join([*SPECS, 'hostile-input'])}")
    p.add_argument("--json", default="", help="also write the figures to this file")
    p.add_argument("--keep", default="", help="keep logs, stores and requests.jsonl here")
    return p.parse_args(argv)


if __name__ == "__main__":
    # aio-pika/aiormq log every connection the faults cut, with a traceback: expected here.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("aiormq", "aio_pika"):
        logging.getLogger(noisy).setLevel(logging.CRITICAL)
    sys.exit(asyncio.run(main(parse(sys.argv[1:]))))
