"""Finding the VM a request names, as the principal may see it (vm-status.md §3, §3.2).

Its own module because every VM request starts here and the rule has two subtleties: a
path may give a hostname or a uuid and the hostname wins when both match different VMs;
and a VM the principal may not see does not exist for them (404, never 403).
"""

from __future__ import annotations

from vmd.fsm.world import VmIndex
from vmd.model import Principal, Vm


def find_vm(vms: VmIndex, ident: str, principal: Principal) -> Vm | None:
    """The VM whose hostname, else uuid, is `ident` among those `principal` may see.

    A hostname match the principal may not see does not hide a visible VM with that uuid
    (the upstream query filters by owner first, then matches hostname or uuid).
    """
    vm = vms.by_hostname.get(ident)
    if vm is not None and (principal.admin or vm.owner_uuid in principal.owner_uuids):
        return vm
    vm = vms.by_uuid.get(ident)
    if vm is not None and (principal.admin or vm.owner_uuid in principal.owner_uuids):
        return vm
    return None
