"""A start from an ISO end to end, as a real SmartOS node needs it (issue 17).

Real `vmd daemon` and `vmd agent` processes, the simulator (`vmd-vmadm`, `vmd-zonecfg`), the
public protocol (`vmd.client`). The agent runs vmadm locally, or over SSH through an asyncssh
server on 127.0.0.1 that runs the commands it receives (tests/node_agent/conftest.py). On the
simulated node the test checks what the driver must have done before `vmadm start`: the lofs
mount of the ISO directory at /iso (zonecfg `fs`), the placeholder under the zone root, and
`REQ_ID=<task id>` on every call of the task.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from node_agent.conftest import SshNode
from support.cloud import BIN, Cloud, SimNode, vm_statuses, wait_for

from vmd.client import Client

pytestmark = pytest.mark.slow

H = "web01.example.com"
ISO = "debian-12.iso"
VMADM, ZONECFG = BIN / "vmd-vmadm", BIN / "vmd-zonecfg"


@dataclass
class SshCloud(Cloud):
    """A cloud whose agents reach their node over SSH (`ssh_node`, started by the test)."""

    ssh_node: SshNode | None = None

    def agent_config(self, node: SimNode) -> Path:
        path = super().agent_config(node)
        if self.ssh_node is None:
            return path
        s = self.ssh_node.settings()
        # The SSH server runs allow-listed absolute paths, as a forced PATH would not help.
        text = (path.read_text()
                .replace('transport = "local"', 'transport = "ssh"')
                .replace('vmadm = ["vmd-vmadm"]', f'vmadm = ["{VMADM}"]')
                .replace('zonecfg = ["vmd-zonecfg"]', f'zonecfg = ["{ZONECFG}"]'))
        keys = ", ".join(f'"{k}"' for k in s.client_keys)
        text += (f'\n[agent.ssh]\nhost = "{s.host}"\nport = {s.port}\nusername = "{s.username}"\n'
                 f'client_keys = [{keys}]\nknown_hosts = "{s.known_hosts}"\n')
        path.write_text(text)
        return path


@pytest.fixture(params=["local", "ssh"])
async def iso_cloud(
    request: pytest.FixtureRequest, tmp_path: Path, amqp_url_for: Callable[[str], str]
) -> AsyncIterator[Cloud]:
    cloud = SshCloud(tmp_path, amqp_url_for("vmd"))
    node = cloud.add_node("node1")
    if request.param == "ssh":
        cloud.ssh_node = SshNode(tmp_path, node.env(), frozenset(
            {str(VMADM), str(ZONECFG), "ls", "mkdir", "touch"}))
        await cloud.ssh_node.start()
    try:
        yield cloud
    finally:
        cloud.stop()
        if cloud.ssh_node is not None:
            await cloud.ssh_node.stop()


async def _boot(cloud: Cloud, admin: Client) -> tuple[SimNode, str]:
    node = cloud.nodes[0]
    node.ctl("iso-add", ISO)
    uuid = node.create(H, state="stopped")
    cloud.start()

    async def listed() -> bool:
        cloud.assert_alive()
        try:
            return H in await vm_statuses(admin)
        except Exception:
            return False

    await wait_for(listed, timeout=30, interval=0.3)
    return node, uuid


async def _start_from_iso(admin: Client) -> tuple[str, dict[str, object]]:
    first = await admin.start(H, cdimage=ISO)
    assert first.code == 201, first
    task_id = str(first.body["task_id"])
    final = await admin.wait_task(task_id, final_timeout=60)
    return task_id, dict(final.body)


async def test_a_start_from_an_iso_mounts_and_touches_it_first(
    iso_cloud: Cloud, admin: Client
) -> None:
    node, uuid = await _boot(iso_cloud, admin)
    task_id, final = await _start_from_iso(admin)
    assert final["status"] == "SUCCESS", final
    assert final["result"] == {"returncode": 0, "message": f"Successfully started VM {H}"}
    assert (await vm_statuses(admin))[H] == "running"

    # Every call so far is the agent's; its own (syncs, lookups) carry ids of their own kind.
    others = {line.split()[0] for line in node.ctl("calls", "--req-id").splitlines()
              if not line.startswith(f"REQ_ID={task_id} ")}
    assert others and all(i.startswith("REQ_ID=vmd-sync-") for i in others), others
    iso_dir = node.root / "iso"
    task_calls = [line for line in node.ctl("calls", "--req-id", uuid).splitlines()
                  if line.startswith(f"REQ_ID={task_id} ")]
    assert [line.split(" -> ")[0].split(maxsplit=1)[1] for line in task_calls] == [
        f"get {uuid}",
        f"zonecfg -z {uuid} info fs",
        f"zonecfg -z {uuid} add fs; set dir=/iso; set special={iso_dir}; set type=lofs; "
        "add options [ro,nodevices]; end",
        f"start {uuid} order=c,once=d cdrom=/iso/{ISO},ide",
    ]
    assert all(line.endswith(" -> exit 0") for line in task_calls)
    vm = json.loads(node.vmadm("get", uuid, check=True).stdout)
    assert vm["filesystems"] == [{"target": "/iso", "source": str(iso_dir), "type": "lofs",
                                  "options": ["ro", "nodevices"]}]
    assert (node.root / "zones" / uuid / "root" / "iso" / ISO).is_file()
    last = json.loads(node.ctl("last-start", uuid))
    assert last["cdroms"] == [{"path": f"/iso/{ISO}", "model": "ide", "image": str(iso_dir / ISO)}]


async def test_a_failed_preparation_fails_the_start_and_the_vm_stays_stopped(
    iso_cloud: Cloud, admin: Client
) -> None:
    node, uuid = await _boot(iso_cloud, admin)
    refused = f"{uuid}: Could not add fs: permission denied"
    node.ctl("fault", uuid, "fail_next=" + json.dumps(
        [{"cmd": "zonecfg", "stderr": refused, "exit": 1}]))
    task_id, final = await _start_from_iso(admin)
    assert final["status"] == "FAILURE", final
    message = (f"preparing the ISO: zonecfg -z {H} info fs failed (exit 1): "
               f"{H}: Could not add fs: permission denied")
    assert final["result"] == {"returncode": 1, "message": message,
                               "detail": f"Got bad return code (1). Error: {message}"}

    async def stopped() -> bool:
        return (await vm_statuses(admin))[H] == "stopped"

    await wait_for(stopped, timeout=15)
    assert [line.split()[1] for line in node.ctl("calls", "--req-id", uuid).splitlines()
            if line.startswith(f"REQ_ID={task_id} ")] == ["get", "zonecfg"]
    assert json.loads(node.vmadm("get", uuid, check=True).stdout)["state"] == "stopped"
