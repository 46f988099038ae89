"""`GET /vm/status` built in steps (vmd.fsm.listing): `order_by` bounds, one composite key
equal to the old one-sort-per-field order, slices equal to the one-step answer, and a
snapshot that later decisions do not reach."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest

from vmd.fsm import replies
from vmd.fsm.listing import CHUNK, StatusList, sort_rows
from vmd.fsm.params import ORDER_FIELDS, parse_order_by
from vmd.fsm.render import vm_row
from vmd.model import Principal, Vm, VmStatus

from .helpers import ADMIN, ALICE, NOW, OWNER_A, OWNER_B, make_vm, make_world, put, req


class CountingList(list[Any]):
    """A JSON list that counts how many of its items were read."""

    read = 0

    def __iter__(self) -> Iterator[Any]:
        for item in super().__iter__():
            self.read += 1
            yield item


@pytest.mark.parametrize(
    "order_by",
    [
        pytest.param("hostname,hostname", id="repeated"),
        pytest.param("hostname,-hostname", id="repeated-other-direction"),
        pytest.param("status, +status", id="repeated-with-plus"),
        pytest.param(["alias", "uuid", "alias"], id="repeated-in-a-list"),
        pytest.param(",".join(["hostname"] * 7000), id="7000-items"),
        pytest.param(",".join((*ORDER_FIELDS, "hostname")), id="six-items"),
    ],
)
def test_order_by_repeated_field_is_412(order_by: Any) -> None:
    assert parse_order_by(order_by) is None
    d = req(make_world(make_vm()), ADMIN, "GET", "/vm/status", {"order_by": order_by})
    assert d.reply is not None and d.reply.code == 412
    assert d.reply.body == {"detail": replies.INVALID_ORDER_BY}


def test_order_by_all_five_fields_once_is_valid() -> None:
    order = parse_order_by(",".join(f"-{f}" for f in ORDER_FIELDS))
    assert order == [(f, True) for f in ORDER_FIELDS]
    assert parse_order_by(",,, hostname ,,") == [("hostname", False)]


def test_order_by_reads_no_further_than_the_first_repeat() -> None:
    items = CountingList(["status", "-hostname", "status", *(["uuid"] * 7000)])
    assert parse_order_by(items) is None
    assert items.read == 3


STATUSES = list(VmStatus)
TEXTS = ["a", "ab", "abc", "b", "B", "é", "ée", "z", "\U0001f600", "a\udc80", ""]


def random_fleet(n: int, seed: int) -> list[Vm]:
    rnd = random.Random(seed)
    vms = []
    for i in range(n):
        vm = make_vm(rnd.choice(STATUSES), uuid=f"00000000-0000-4000-8000-{i:012d}",
                     hostname=rnd.choice(TEXTS) + rnd.choice(TEXTS),
                     status_change=rnd.choice([None, NOW - rnd.randrange(5)]))
        vm.alias = rnd.choice(TEXTS)
        vms.append(vm)
    rnd.shuffle(vms)
    return vms


def old_order(vms: list[Vm], order: list[tuple[str, bool]]) -> list[str]:
    """The order of one stable sort per field (what vmd did before): uuid ascending last."""
    keys: dict[str, Any] = {
        "hostname": lambda vm: vm.hostname, "alias": lambda vm: vm.alias,
        "status": lambda vm: vm.status.value, "uuid": lambda vm: vm.uuid,
        "status_change": lambda vm: (vm.status_change is not None, vm.status_change or 0.0),
    }
    out = sorted(vms, key=keys["uuid"])
    for name, descending in reversed(order):
        out.sort(key=keys[name], reverse=descending)
    return [vm.uuid for vm in out]


ORDERS = ["hostname", "-hostname", "alias,-hostname", "-alias", "status,-status_change",
          "-status,alias,-uuid", "status_change", "-status_change,-alias,hostname",
          "-uuid", "uuid,-hostname", "-hostname,-alias,-status,-status_change,-uuid"]


@pytest.mark.parametrize("order_by", [pytest.param(o, id=o) for o in ORDERS])
def test_composite_key_equals_one_sort_per_field(order_by: str) -> None:
    vms = random_fleet(400, seed=len(order_by))
    order = parse_order_by(order_by)
    assert order is not None
    rows = sort_rows([vm_row(vm) for vm in vms], order)
    assert [r[1] for r in rows] == old_order(vms, order)


@pytest.mark.parametrize("order_by", [pytest.param(o, id=o) for o in ORDERS[:6]])
def test_slices_equal_the_one_step_answer(order_by: str) -> None:
    world = make_world(*random_fleet(2 * CHUNK + 123, seed=3))
    order = parse_order_by(order_by)
    assert order is not None
    whole = StatusList(world, ADMIN, order).render()
    slices = list(StatusList(world, ADMIN, order).slices(1000))
    # One empty slice per sorted chunk first, then the objects, 1000 at a time.
    assert [len(s) for s in slices[:3]] == [0, 0, 0]
    assert all(0 < len(s) <= 1000 for s in slices[3:])
    assert [o for s in slices for o in s] == whole
    assert [o["uuid"] for o in whole] == old_order(list(world.vms), order)


def test_the_answer_is_the_moment_of_the_snapshot() -> None:
    vms = [make_vm(VmStatus.STOPPED, uuid=f"00000000-0000-4000-8000-{i:012d}",
                   hostname=f"vm{i:05d}.example.com") for i in range(CHUNK + 10)]
    world = make_world(*vms)
    order = parse_order_by("-status,hostname")
    assert order is not None
    job = StatusList(world, ALICE, order)
    pieces = job.slices(100)
    first = next(pieces)
    # Decided after the snapshot: a start (status and a pending task), a rename, a new VM.
    started = put(world, ALICE, "start", ident="vm00003.example.com")
    assert started.reply is not None and started.reply.code == 201
    world.vms.update(vms[5], hostname="renamed.example.com")
    world.vms.add(make_vm(uuid="00000000-0000-4000-8000-999999999999",
                          hostname="late.example.com", owner=OWNER_A))
    objects = first + [o for s in pieces for o in s]
    assert len(objects) == len(vms)
    assert [o["hostname"] for o in objects] == [vm_row(v)[0] for v in vms[:5]] + [
        "vm00005.example.com"] + [vm_row(v)[0] for v in vms[6:]]
    assert {o["status"] for o in objects} == {"stopped"}
    assert all(o["tasks"] == {} for o in objects)


def test_owners_see_their_own_only() -> None:
    vms = [make_vm(uuid=f"00000000-0000-4000-8000-{i:012d}", hostname=f"h{i}",
                   owner=OWNER_A if i % 3 else OWNER_B) for i in range(30)]
    world = make_world(*vms)
    assert world.vms.owned_count({OWNER_A}) == 20
    assert world.vms.owned_count({OWNER_A, OWNER_B, "nobody"}) == 30
    listed = StatusList(world, ALICE, [("hostname", False)]).render()
    assert len(listed) == 20
    assert StatusList(world, Principal("nobody"), [("hostname", False)]).render() == []
