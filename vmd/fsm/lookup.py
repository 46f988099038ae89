"""Finding the VM a request names, as the principal may see it (docs/fsm.md §3, §3.2).

Its own module because every VM request starts here and the rule has three subtleties: a
path may give a hostname or a uuid and the hostname wins when both match different VMs;
a VM the principal may not see does not exist for them (404, never 403); and a hostname
may be shared by several VMs (nothing on a node keeps hostnames unique).

A shared hostname resolves within what the principal may see: when exactly one of its VMs
is visible, that one (another owner's VM with the same hostname neither hides it nor is
revealed); when several are (an admin, or an owner whose own VMs share it), the answer is
409 with the uuids of those VMs, and the request must name its VM by uuid. Picking one of
them would let `PUT .../stop` stop a VM the operator did not mean; a 404 would say the name
is unknown although it names two VMs. No hostname match leaves the uuid lookup.
"""

from __future__ import annotations

from vmd.fsm import replies
from vmd.fsm.world import VmIndex
from vmd.model import Principal, Reply, Vm

VM_NOT_FOUND = replies.error(404, replies.VM_NOT_FOUND)


def resolve_vm(vms: VmIndex, ident: str, principal: Principal) -> Vm | Reply:
    """The VM whose hostname, else uuid, is `ident` among those `principal` may see; else
    the 404 `VM not found`, or the 409 of a hostname several visible VMs share.

    A hostname match the principal may not see does not hide a visible VM with that uuid
    (the upstream query filters by owner first, then matches hostname or uuid).
    """
    may_see = principal.may_see
    vm = vms.by_hostname.get(ident)
    if vm is not None:
        if may_see(vm.owner_uuid):
            return vm
    else:
        group = vms.shared_hostnames.get(ident)
        if group is not None:
            seen = [v for v in group.values() if may_see(v.owner_uuid)]
            if len(seen) == 1:
                return seen[0]
            if seen:
                return replies.error(409, replies.shared_hostname(
                    ident, sorted(v.uuid for v in seen)))
    vm = vms.by_uuid.get(ident)
    if vm is not None and may_see(vm.owner_uuid):
        return vm
    return VM_NOT_FOUND


def find_vm(vms: VmIndex, ident: str, principal: Principal) -> Vm | None:
    """`resolve_vm`, None for either error (for a caller that answers 404 itself)."""
    vm = resolve_vm(vms, ident, principal)
    return vm if type(vm) is Vm else None
