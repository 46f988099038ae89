"""Benchmark: restore N VMs from the store, and decide once per VM.

For each N (`--n`, default 100,000 and 1,000,000) it writes a store file with N realistic
VMs through the real write path (`Store.write` of large batches), then starts a FRESH
Python process that opens the store and restores the fleet, so that memory is measured
without the generator's leftovers. It prints, per N: seconds to ready (open + restore),
resident memory per VM (VmRSS after restore minus before, divided by N), and decisions
per second of the pure core (`vmd.fsm.decide` through `make_decision`, once per VM for
`GET /vm/<uuid>/status` and once for `PUT /vm/<uuid>/status/start`), next to the targets.

    .venv/bin/python bench/restore.py [--n 100000 1000000] [--dir DIR] [--keep]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from vmd.fsm import Decision, FsmSettings, TaskBook, VmIndex, World, decide, task_id_factory
from vmd.model import (
    Action,
    Node,
    NodeName,
    NodeStatus,
    Principal,
    Reply,
    Request,
    Task,
    TaskId,
    Vm,
    VmStatus,
    VmUuid,
)
from vmd.store import Batch, Fleet, IdempotencyRecord, Store

NODES = 100
OWNERS = 1000
CHUNK = 50_000
NOW = 1_795_000_000.0  # a fixed "now" (late 2026) so generated files are reproducible
TARGET_READY = {100_000: 2.0, 1_000_000: 20.0}
TARGET_BYTES_PER_VM = 1024

# Weights of statuses in a healthy fleet; transitional VMs get a pending task.
STATUS_WEIGHTS = {
    VmStatus.RUNNING: 70,
    VmStatus.STOPPED: 20,
    VmStatus.FROZEN: 3,
    VmStatus.NOTCREATED: 3,
    VmStatus.ERROR: 2,
    VmStatus.STARTING: 1,
    VmStatus.STOPPING: 1,
}
BRAND_WEIGHTS = {"kvm": 60, "bhyve": 10, "joyent": 20, "lx": 10}


# ----------------------------------------------------------------------------- decision


def make_world(fleet: Fleet) -> World:
    """The pure core's in-memory view of a restored fleet, as the daemon builds it."""
    return World(
        vms=VmIndex(fleet.vms.values()),
        tasks=TaskBook(fleet.tasks.values()),
        nodes=fleet.nodes,
        settings=FsmSettings(),
        new_task_id=task_id_factory(0),
    )


def make_decision(world: World, principal: Principal, request: Request) -> Decision:
    """ONE decision of the pure core (`vmd.fsm.decide`, routing included) on a request."""
    return decide(world, principal, request, NOW)


# ----------------------------------------------------------------------------- generate


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _definition(rng: random.Random, i: int) -> dict[str, Any]:
    return {
        "ram": rng.choice([1024, 2048, 4096, 8192]),
        "vcpus": rng.choice([1, 2, 4, 8]),
        "disks": [{"size": rng.choice([10240, 51200, 102400]), "model": "virtio", "boot": True}],
        "nics": [{"ip": f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", "netmask": "255.0.0.0"}],
    }


def generate(path: Path | str, n: int, seed: int = 1) -> float:
    """Write a store with `n` VMs (a SQLite path or a PostgreSQL URL); return seconds
    taken."""
    rng = random.Random(seed)
    started = time.perf_counter()
    nodes = [NodeName(f"cn{k:03d}.example.com") for k in range(NODES)]
    owners = [_uuid(rng) for _ in range(OWNERS)]
    statuses = rng.choices(list(STATUS_WEIGHTS), weights=list(STATUS_WEIGHTS.values()), k=n)
    brands = rng.choices(list(BRAND_WEIGHTS), weights=list(BRAND_WEIGHTS.values()), k=n)
    with Store.open(path) as store:
        batch = Batch()
        for k, name in enumerate(nodes):
            up = NodeStatus.MAINTENANCE if k == 0 else NodeStatus.ONLINE
            isos = frozenset({"ubuntu-24.04.iso", "debian-12.iso", f"rescue-{k}.iso"})
            batch.put_node(Node(name, up, NOW - 5.0, isos))
        for i in range(n):
            brand = brands[i]
            hvm = brand in ("kvm", "bhyve")
            status = statuses[i]
            vm = Vm(
                uuid=VmUuid(_uuid(rng)),
                hostname=f"vm{i:07d}.example.com",
                alias=f"vm{i:07d}",
                owner_uuid=rng.choice(owners),
                node=rng.choice(nodes),
                brand=brand,
                ostype=("windows" if rng.random() < 0.1 else "linux") if hvm else None,
                status=status,
                status_change=NOW - rng.uniform(0, 86400 * 365),
                observed_at=NOW - rng.uniform(0, 86400 * 365),
                active_definition=_definition(rng, i) if rng.random() < 0.01 else None,
                pending_definition={"ram": 16384} if rng.random() < 0.001 else None,
                snapshots=rng.choice((0, 0, 0, 1, 3)),
                seq=rng.randrange(5000),
            )
            if status in (VmStatus.STARTING, VmStatus.STOPPING):
                task = Task(
                    task_id=TaskId(f"0-{_uuid(rng)[:23]}"),
                    vm_uuid=vm.uuid,
                    action=Action.START if status is VmStatus.STARTING else Action.STOP,
                    method="PUT",
                    params={"update": True},
                    created=NOW - 10.0,
                    deadline=NOW + 300.0,
                    owner_uuid=vm.owner_uuid,
                    node=vm.node,
                    previous_status=VmStatus.STOPPED,
                )
                vm.task_id = task.task_id
                batch.put_task(task)
            if i % 100 == 0:
                reply = Reply(201, {"status": "PENDING", "result": None, "task_id": "0-x"})
                batch.put_idempotency(IdempotencyRecord("admin", f"m{i}", (reply,), NOW - 60.0))
            batch.put_vm(vm)
            if len(batch) >= CHUNK:
                store.write(batch)
                batch = Batch()
        store.write(batch)
    return time.perf_counter() - started


# ----------------------------------------------------------------------------- measure


def _rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def measure(path: Path) -> dict[str, Any]:
    """Run in the fresh child process: restore, index for the fsm, decide once per VM."""
    admin = Principal("admin", admin=True)
    before = _rss_bytes()
    started, cpu = time.perf_counter(), time.process_time()
    store = Store.open(path)
    fleet = store.load_fleet(NOW)
    ready, cpu = time.perf_counter() - started, time.process_time() - cpu
    restored = _rss_bytes()
    n = len(fleet.vms)

    started = time.perf_counter()
    world = make_world(fleet)
    index = time.perf_counter() - started
    indexed = _rss_bytes()
    # What the daemon should do once its state is loaded: a million long-lived records
    # would otherwise be rescanned by every full collection.
    gc.freeze()

    rates = {}
    codes = {}
    for method, suffix in (("GET", "status"), ("PUT", "status/start")):
        requests = [Request(method, f"/vm/{uuid}/{suffix}") for uuid in fleet.vms]
        seen: Counter[int] = Counter()
        started = time.perf_counter()
        for request in requests:
            decision = make_decision(world, admin, request)
            assert decision.reply is not None
            seen[decision.reply.code] += 1
        rates[f"{method} {suffix}"] = n / (time.perf_counter() - started)
        codes[f"{method} {suffix}"] = dict(sorted(seen.items()))
        del requests
    store.close()
    return {
        "n": n,
        "ready_s": ready,
        "ready_cpu_s": cpu,
        "bytes_per_vm": (restored - before) / n,
        "index_s": index,
        "index_bytes_per_vm": (indexed - restored) / n,
        "rates": rates,
        "codes": codes,
        "tasks": len(fleet.tasks),
        "keys": len(fleet.idempotency),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--dir", type=Path, help="where to write store files (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep (and reuse) the store files")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(measure(args.child)))
        return 0
    workdir = args.dir or Path(tempfile.mkdtemp(prefix="vmd-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    rows = []
    for n in args.n:
        path = workdir / f"restore-{n}.sqlite3"
        if path.exists() and args.keep:
            print(f"N={n:,}: reusing {path}", flush=True)
        else:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
            took = generate(path, n)
            size = path.stat().st_size / 2**20
            print(f"N={n:,}: generated {path} in {took:.1f} s ({size:.0f} MiB)", flush=True)
        child = subprocess.run(
            [sys.executable, __file__, "--child", str(path)],
            check=True,
            capture_output=True,
            text=True,
        )
        rows.append(json.loads(child.stdout))
        if not args.keep:
            path.unlink()
    _print_table(rows)
    if not args.keep and args.dir is None:
        os.rmdir(workdir)
    return 0


def _print_table(rows: list[dict[str, Any]]) -> None:
    print()
    print(
        f"{'N':>10} | {'ready s':>7} {'target':>6} {'(cpu s)':>7} | "
        f"{'RSS B/VM':>8} {'target':>6} | "
        f"{'decisions/s GET status':>22} | {'decisions/s PUT start':>21}"
    )
    print("-" * 104)
    for r in rows:
        n = int(r["n"])
        target = TARGET_READY.get(n)
        ready_target = f"< {target:g}" if target else "-"
        print(
            f"{n:>10,} | {r['ready_s']:>7.2f} {ready_target:>6} {r['ready_cpu_s']:>7.2f} | "
            f"{r['bytes_per_vm']:>8.0f} {'< ' + str(TARGET_BYTES_PER_VM):>6} | "
            f"{r['rates']['GET status']:>22,.0f} | {r['rates']['PUT status/start']:>21,.0f}"
        )
    print()
    print("ready = Store.open + load_fleet, wall clock (cpu s: CPU time of the same, which")
    print("does not grow when other processes share the 2 cores); RSS B/VM = VmRSS after")
    print("restore minus before, / N.")
    print("decisions: vmd.fsm.decide once per VM (admin), after gc.freeze(), routing included.")
    for r in rows:
        print(
            f"N={int(r['n']):,}: restored {int(r['tasks']):,} pending tasks and "
            f"{int(r['keys']):,} live idempotency keys; fsm World index built in "
            f"{r['index_s']:.2f} s, +{r['index_bytes_per_vm']:.0f} B/VM; reply codes "
            f"{r['codes']}"
        )


if __name__ == "__main__":
    sys.exit(main())
