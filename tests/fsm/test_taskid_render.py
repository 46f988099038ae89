"""Task ids (§7) and the event bodies (protocol.md §9)."""

from __future__ import annotations

import inspect
import random
import re
import secrets

from vmd.fsm import (
    is_task_id,
    status_event,
    status_routing_key,
    task_event,
    task_id_factory,
    task_routing_key,
)
from vmd.model import Cause

from .helpers import ADMIN, HOST, NODE, NOW, OWNER_A, UUID, done, put, world_in

SHAPE = re.compile(r"^0-[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}$")


def test_task_ids() -> None:
    new = task_id_factory(0)
    ids = {new() for _ in range(20_000)}
    assert len(ids) == 20_000 and all(SHAPE.match(i) for i in ids)
    assert task_id_factory(12)().startswith("12-")
    seeded = [task_id_factory(0, randbits=random.Random(1).getrandbits)() for _ in range(2)]
    assert seeded[0] == seeded[1]
    assert is_task_id("0-a2327793-2600-423d-9f07") and not is_task_id("0-a2327793")


def test_task_ids_come_from_the_csprng() -> None:
    # Issue 12: random.Random's ids were predictable from the ids the list answers hand out.
    default = inspect.signature(task_id_factory).parameters["randbits"].default
    assert default is secrets.randbits


def test_events() -> None:
    world, vm, _ = world_in("stopped")
    d = put(world, ADMIN, "start")
    (c,) = d.changes
    assert d.new_task is not None
    assert status_event(c) == {
        "uuid": UUID, "hostname": HOST, "alias": "web01", "node": NODE, "owner_uuid": OWNER_A,
        "status": "starting", "previous": "stopped", "status_change": "2027-01-15T08:00:00.000Z",
        "seq": 1, "task_id": d.new_task.task_id, "cause": "task", "principal": "admin",
    }
    assert status_routing_key(c) == f"vm.{OWNER_A}.{UUID}.status_change"
    assert c.cause is Cause.TASK
    done(world, d.new_task.task_id, message=f"Successfully started VM {HOST}")
    assert task_event(d.new_task, vm.hostname) == {
        "task_id": d.new_task.task_id, "uuid": UUID, "hostname": HOST, "action": "start",
        "status": "SUCCESS", "result": {"returncode": 0,
                                        "message": f"Successfully started VM {HOST}"},
    }
    assert task_routing_key(d.new_task) == f"task.{OWNER_A}.{d.new_task.task_id}.done"
    assert NOW == 1_800_000_000.0
