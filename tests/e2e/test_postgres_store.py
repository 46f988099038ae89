"""The daemon on a PostgreSQL store, end to end, in the normal suite (issue 14).

Why one smoke test here: the whole daemon and e2e suites run on PostgreSQL only on demand
(`VMD_TEST_STORE=postgresql`, docs/testing.md), so the normal run would not notice that a
real daemon no longer works on that backend at all. This one does, in seconds: a real `vmd
daemon` whose `[daemon] store` is a fresh PostgreSQL database serves a start and a stop
through a real agent and the simulator, writes its state to that database (read back with
plain SQL, so it cannot have used a SQLite file instead), and after a drained restart
answers a repeated request from the idempotency record it stored there, the first answer,
not a second execution.
"""

from __future__ import annotations

import signal

import psycopg
import pytest
from support.cloud import Cloud, boot, vm_statuses, wait_for
from support.postgres import pg_store_url  # noqa: F401 - the fixture

from vmd.client import Client

pytestmark = pytest.mark.slow


def _stored_status(url: str, hostname: str) -> str | None:
    with psycopg.connect(url) as db:
        row = db.execute("SELECT status FROM vms WHERE hostname = %s", (hostname,)).fetchone()
    return None if row is None else str(row[0])


async def test_start_stop_and_restore_after_a_restart(cloud: Cloud, admin: Client,
                                                      pg_store_url: str) -> None:  # noqa: F811
    cloud.store_url = pg_store_url
    uuids = await boot(cloud, admin)
    started = await admin.start("web01.example.com", wait=True, message_id="pg-start-web01")
    assert started.code == 200 and started.body["status"] == "SUCCESS", started
    stopped = await admin.stop("db01.example.com", wait=True)
    assert stopped.code == 200 and stopped.body["status"] == "SUCCESS", stopped
    # In PostgreSQL, not in a file next to the settings.
    assert _stored_status(pg_store_url, "web01.example.com") == "running"
    assert _stored_status(pg_store_url, "db01.example.com") == "stopped"
    assert not cloud.store.exists()

    # A drained restart (SIGTERM releases the lease, so the next one takes it at once).
    cloud.signal("daemon", signal.SIGTERM)
    assert cloud.wait("daemon", timeout=30) == 0
    cloud.start_daemon()

    async def listed() -> bool:
        cloud.assert_alive()
        try:
            return await vm_statuses(admin) == {
                "web01.example.com": "running", "db01.example.com": "stopped",
                "app01.example.com": "running", "internal.example.com": "running"}
        except Exception:
            return False

    await wait_for(listed, timeout=30, interval=0.3)
    # The same request again: the first answer from the stored record (a 201 with the
    # first task's id), where a new execution would be a 417 (web01 is already running).
    again = await admin.start("web01.example.com", message_id="pg-start-web01")
    assert again.code == 201 and again.body["task_id"] == started.body["task_id"], again
    starts = [c for c in cloud.node("node1").calls(uuids["web01.example.com"])
              if c.startswith("start")]
    assert len(starts) == 1, starts
