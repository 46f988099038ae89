"""A hostname shared by several VMs (issue 12, finding 6): indexed per VM set, resolved
within what the principal may see; an admin (or an owner) who sees several gets 409 and
must use the uuid; a rename or a replaced record leaves the others reachable."""

from __future__ import annotations

import pytest

from vmd.fsm import VmIndex
from vmd.fsm.lookup import resolve_vm
from vmd.model import Principal, Reply, Vm, VmStatus

from .helpers import ADMIN, ALICE, BOB, OWNER_A, OWNER_B, make_vm, make_world, put, req

SHARED = "web.example.com"
UA = "00000000-0000-4000-8000-00000000000a"
UB = "00000000-0000-4000-8000-00000000000b"
UA2 = "00000000-0000-4000-8000-0000000000a2"


def uuids(vms: tuple[Vm, ...]) -> set[str]:
    return {vm.uuid for vm in vms}


def two_owners() -> tuple[Vm, Vm]:
    return (make_vm(VmStatus.RUNNING, uuid=UA, hostname=SHARED, owner=OWNER_A),
            make_vm(VmStatus.STOPPED, uuid=UB, hostname=SHARED, owner=OWNER_B))


@pytest.mark.parametrize("first", [pytest.param(0, id="a-indexed-first"),
                                   pytest.param(1, id="b-indexed-first")])
def test_each_owner_finds_their_own(first: int) -> None:
    a, b = two_owners()
    world = make_world(*((a, b) if first == 0 else (b, a)))
    for principal, vm in ((ALICE, a), (BOB, b)):
        d = req(world, principal, "GET", f"/vm/{SHARED}/status")
        assert d.reply is not None and d.reply.code == 200
        assert d.reply.body["result"]["uuid"] == vm.uuid
    assert resolve_vm(world.vms, SHARED, Principal("nobody")) == Reply(
        404, {"detail": "VM not found"})


def test_admin_gets_409_with_the_uuids_and_the_uuid_works() -> None:
    world = make_world(*two_owners())
    d = req(world, ADMIN, "GET", f"/vm/{SHARED}/status")
    assert d.reply == Reply(409, {"detail": f"Hostname {SHARED} is shared by 2 VMs "
                                            f"({UA}, {UB}); use the VM's uuid"})
    stop = put(world, ADMIN, "stop", {"force": True}, ident=SHARED)
    assert stop.reply is not None and stop.reply.code == 409 and stop.new_task is None
    by_uuid = req(world, ADMIN, "GET", f"/vm/{UB}/status")
    assert by_uuid.reply is not None and by_uuid.reply.body["result"]["uuid"] == UB


def test_an_owner_with_two_vms_of_one_hostname_gets_409() -> None:
    a, b = two_owners()
    a2 = make_vm(uuid=UA2, hostname=SHARED, owner=OWNER_A)
    world = make_world(a, b, a2)
    d = req(world, ALICE, "GET", f"/vm/{SHARED}/status")
    # Only the VMs alice may see are named (bob's stays hidden).
    assert d.reply == Reply(409, {"detail": f"Hostname {SHARED} is shared by 2 VMs "
                                            f"({UA}, {UA2}); use the VM's uuid"})
    d = req(world, BOB, "GET", f"/vm/{SHARED}/status")
    assert d.reply is not None and d.reply.body["result"]["uuid"] == UB


def test_rename_leaves_the_other_reachable() -> None:
    a, b = two_owners()
    world = make_world(a, b)
    world.vms.update(b, hostname="other.example.com")
    assert world.vms.by_hostname[SHARED] is a and SHARED not in world.vms.shared_hostnames
    assert world.vms.named("other.example.com") == (b,)
    assert resolve_vm(world.vms, SHARED, ADMIN) is a
    assert resolve_vm(world.vms, SHARED, BOB) == Reply(404, {"detail": "VM not found"})
    world.vms.update(b, hostname=SHARED)
    assert uuids(world.vms.named(SHARED)) == {UA, UB} and SHARED not in world.vms.by_hostname


def test_index_per_vm_set() -> None:
    a, b = two_owners()
    index = VmIndex([a, b])
    c = make_vm(uuid="00000000-0000-4000-8000-00000000000c", hostname=SHARED)
    index.add(c)
    assert uuids(index.named(SHARED)) == {UA, UB, c.uuid}
    # A record replaced under its uuid (a full sync's fresh object) takes its place.
    b2 = make_vm(uuid=UB, hostname=SHARED, owner=OWNER_B)
    index.add(b2)
    assert uuids(index.named(SHARED)) == {UA, UB, c.uuid} and len(index) == 3
    assert b2 in index.named(SHARED) and all(v is not b for v in index.named(SHARED))
    index.update(a, hostname="a.example.com")
    index.update(c, hostname="c.example.com")
    assert index.named(SHARED) == (b2,) and index.by_hostname[SHARED] is b2
    assert index.shared_hostnames == {}
    assert index.named("nothing.example.com") == ()


def test_hostname_still_wins_over_another_vms_uuid() -> None:
    # docs/fsm.md §3: a hostname and a uuid matching different VMs: the hostname wins.
    a = make_vm(uuid=UA, hostname=UB, owner=OWNER_A)
    b = make_vm(uuid=UB, hostname="b.example.com", owner=OWNER_A)
    world = make_world(a, b)
    assert resolve_vm(world.vms, UB, ALICE) is a
