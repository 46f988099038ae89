"""The HTTP gateway against the real daemon and agent: Danube Cloud's clients' view (issue #8).

Requests go over HTTP with an API key, as `es` sends them (trailing `/`, `ES-STREAM: es`),
through `vmd api` (a real process) to the real daemon and agent over the simulator.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

import aiohttp
import pytest
from support.cloud import BIN, Cloud, base_env, boot, wait_for

from vmd.client import Client

pytestmark = pytest.mark.slow

ADMIN_KEY = "0123456789abcdef0123456789abcdef"
ALICE_KEY = "fedcba9876543210fedcba9876543210"


def start_gateway(cloud: Cloud, broker_url: str) -> subprocess.Popen[bytes]:
    config = cloud.base / "api.toml"
    config.write_text(f"""\
[api]
listen = "127.0.0.1:0"
prefix = "/api"
broker_url = "{broker_url}"
timeout = 15
metrics = "127.0.0.1:0"

[api.keys]
"{ADMIN_KEY}" = "admin"
"{ALICE_KEY}" = "alice"

[log]
level = "info"
format = "json"
""")
    with (cloud.base / "api.log").open("ab") as log:
        proc = subprocess.Popen([str(BIN / "vmd"), "api", "-c", str(config)], env=base_env(),
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    cloud.procs["api"] = proc
    return proc


def gateway_url(cloud: Cloud) -> str | None:
    for line in cloud.log("api").splitlines():
        try:
            entry: dict[str, Any] = json.loads(line)
        except ValueError:
            continue
        if entry.get("event") == "serving":
            return str(entry["url"])
    return None


async def test_seed_examples_over_http(cloud: Cloud, admin: Client, amqp_url_for: Any) -> None:
    await boot(cloud, admin)
    start_gateway(cloud, amqp_url_for("vmd-api"))
    await wait_for(lambda: gateway_url(cloud) is not None or cloud.assert_alive(), timeout=20)
    base = str(gateway_url(cloud)).rstrip("/")
    api = base if base.endswith("/api") else base + "/api"
    headers = {"ES-API-KEY": ADMIN_KEY}
    async with aiohttp.ClientSession() as http:
        # es get /vm/status
        async with http.get(f"{api}/vm/status/", headers=headers) as r:
            assert r.status == 200
            body = await r.json()
            assert body["status"] == "SUCCESS"
            assert {vm["hostname"] for vm in body["result"]} >= {"web01.example.com"}
            assert "es_task_id" in r.headers
        # es set /vm/<hostname>/status/start: ES-STREAM es -> spaces, "<code>\n", final JSON
        async with http.put(f"{api}/vm/web01.example.com/status/start/",
                            headers={**headers, "ES-STREAM": "es"}, json={}) as r:
            assert r.status == 201
            assert r.headers.get("es_stream") and r.headers.get("es_task_id")
            raw = (await r.read()).decode()
        code, _, final = raw.strip().partition("\n")
        assert code == "200", raw
        assert json.loads(final)["result"] == {
            "returncode": 0, "message": "Successfully started VM web01.example.com"}
        # es get /vm/<hostname>/status/current (alice's key, Authorization: Token)
        async with http.get(f"{api}/vm/web01.example.com/status/current",
                            headers={"Authorization": f"Token {ALICE_KEY}"}) as r:
            assert r.status == 201
            pending = await r.json()
            assert pending["status"] == "PENDING"
        async with http.get(f"{api}/vm/app01.example.com/status/",
                            headers={"Authorization": f"Token {ALICE_KEY}"}) as r:
            assert (r.status, await r.json()) == (404, {"detail": "VM not found"})
        async with http.get(f"{api}/vm/status/") as r:
            assert r.status == 403
            assert (await r.json()) == {"detail": "Authentication credentials were not provided."}
