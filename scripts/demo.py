"""Start a demo vmd cloud: the daemon, three simulated compute nodes and the HTTP gateway
on the local RabbitMQ.

Run through `scripts/demo` (which installs what is missing and makes sure RabbitMQ runs).
Everything lives under one state directory (default `./demo-state`, recreated on each run):
per node a simulator root (`VMADM_SIM_ROOT`) with a dozen VMs, the config files, the
daemon's SQLite store and one log file per process. The gateway (`vmd api`) listens where
Danube Cloud's `es` looks by default (http://127.0.0.1:8000/api) with two API keys made for
this run, one for the admin and one for alice; the demo prints vmctl, `curl` and `es`
examples. Ctrl-C stops everything (SIGTERM, so the processes drain as in production).

`--vhost`, `--api-listen 127.0.0.1:0` and `--metrics-port 0` run it beside another cloud
(tests/client/test_demo.py does, on the test vhost).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ALICE_OWNER = "8a1a4e6c-0000-4000-8000-000000000001"
BOB_OWNER = "8a1a4e6c-0000-4000-8000-000000000002"
NODES = ("node01", "node02", "node03")
BRANDS = ("kvm", "kvm", "bhyve", "joyent", "lx", "kvm")
ROLES = ("web", "db", "cache", "mail", "build", "proxy", "api", "queue", "dns", "log", "ci", "vpn")
TIMESCALE = "0.1"  # simulated seconds run ten times faster: a boot takes 0.1 s
UP_WITHIN = 90.0  # seconds for every VM to appear and the gateway to answer


@dataclass(frozen=True, slots=True)
class Demo:
    """Where the demo runs: its state directory, vhost and addresses."""

    base: Path
    vhost: str = "vmd"
    api_listen: str = "127.0.0.1:8000"
    metrics_port: int = 9463  # the gateway's; the daemon's is +1, the agents' +2, +3, ...

    def url(self, user: str) -> str:
        """A broker URL of one of scripts/ensure-rabbitmq's users (password = name)."""
        return f"amqp://{user}:{user}@127.0.0.1:5672/{self.vhost}"

    def metrics(self, index: int) -> str:
        """The metrics address of process `index` (0 gateway, 1 daemon, 2.. agents)."""
        return f"127.0.0.1:{self.metrics_port + index if self.metrics_port else 0}"


def log(text: str) -> None:
    print(f"demo: {text}", file=sys.stderr, flush=True)


def sim_env(root: Path) -> dict[str, str]:
    return {**os.environ, "VMADM_SIM_ROOT": str(root), "VMADM_SIM_TIMESCALE": TIMESCALE}


def ctl(root: Path, *args: str) -> str:
    done = subprocess.run(["vmd-vmadm-ctl", *args], env=sim_env(root), capture_output=True,
                          text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"demo: vmd-vmadm-ctl {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout.strip()


def make_node(root: Path, index: int, per_node: int) -> list[tuple[str, str, str]]:
    """Create the simulated node's ISOs and VMs; return (uuid, hostname, state) per VM."""
    root.mkdir(parents=True)
    for iso in ("rescuecd.iso", "debian-12.iso"):
        ctl(root, "iso-add", iso)
    vms = []
    for i in range(per_node):
        role = ROLES[i % len(ROLES)]
        hostname = f"{role}{index:02d}.example.com"
        owner = ALICE_OWNER if i % 2 == 0 else BOB_OWNER
        state = "running" if i % 3 != 2 else "stopped"
        brand = BRANDS[i % len(BRANDS)]
        args = ["create", "--brand", brand, "--alias", f"{role}{index:02d}", "--hostname",
                hostname, "--owner", owner, "--state", state]
        if role == "mail":
            args += ["--ostype", "windows"]
        uuid = ctl(root, *args).split()[-1]
        vms.append((uuid, hostname, state))
    return vms


def agent_url(demo: Demo, node: str) -> str:
    """Each node's agent has its own broker user (scripts/ensure-rabbitmq, docs/security.md)."""
    return demo.url(f"vmd-agent-{node}")


def write_configs(demo: Demo) -> None:
    base = demo.base
    agents = "".join(f'"vmd-agent-{node}" = ["{node}"]\n' for node in NODES)
    (base / "daemon.toml").write_text(f"""\
[broker]
url = "{demo.url('vmd')}"

[daemon]
store = "{base / 'vmd.sqlite3'}"
shard = 0
no_shutdown = ["dns01.example.com"]
heartbeat_interval = 2
reconcile_interval = 30
metrics = "{demo.metrics(1)}"

[auth]
admins = ["admin"]
[auth.owners]
alice = ["{ALICE_OWNER}"]
bob = ["{BOB_OWNER}"]
[auth.agents]
{agents}
[log]
level = "info"
format = "json"
""")
    for i, node in enumerate(NODES):
        (base / f"agent-{node}.toml").write_text(f"""\
[broker]
url = "{agent_url(demo, node)}"

[agent]
node = "{node}"
vmadm = ["vmd-vmadm"]
transport = "local"
heartbeat_interval = 2
poll_interval = 30
metrics = "{demo.metrics(2 + i)}"
iso_dir = "{base / node / 'sim' / 'iso'}"
zonecfg = ["vmd-zonecfg"]
state_dir = "{base / node / 'agent-state'}"

[log]
level = "info"
format = "json"
""")


def write_api_config(demo: Demo, keys: dict[str, str]) -> None:
    """The gateway's settings: its own broker user (the only impersonator, docs/api.md),
    an API key per principal; mode 0600, as the file holds the keys and a password."""
    lines = "".join(f'"{key}" = "{principal}"\n' for principal, key in keys.items())
    path = demo.base / "api.toml"
    path.write_text(f"""\
[api]
listen = "{demo.api_listen}"
prefix = "/api"
broker_url = "{demo.url('vmd-api')}"
timeout = 30
metrics = "{demo.metrics(0)}"

[api.keys]
{lines}
[log]
level = "info"
format = "json"
""")
    path.chmod(0o600)


def gateway_api(demo: Demo) -> str | None:
    """The gateway's API URL (`http://host:port/api`), from its `serving` log line."""
    try:
        text = (demo.base / "api.log").read_text(errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("event") == "serving":
            url = str(entry.get("url", "")).rstrip("/")
            return url if url.endswith("/api") else url + "/api"
    return None


def gateway_answers(api: str, key: str) -> bool:
    """Whether `GET <api>/vm/status/` with the key answers 200 (the gateway and vmd are up)."""
    request = urllib.request.Request(f"{api}/vm/status/", headers={"ES-API-KEY": key})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def vm_count(demo: Demo) -> int | None:
    done = subprocess.run(
        ["vmctl", "-u", demo.url("admin"), "--timeout", "5", "get", "/vm/status"],
        capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return None
    try:
        return len(json.loads(done.stdout)["text"]["result"])
    except (ValueError, KeyError, TypeError):
        return None


class Processes:
    """The demo's processes, each in a session of its own (Ctrl-C reaches only the demo,
    which stops them with SIGTERM so they drain), each logging to <name>.log."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []

    def spawn(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        with (self.base / f"{name}.log").open("wb") as logfile:
            proc = subprocess.Popen(argv, env=env, stdout=logfile, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        self.procs.append((name, proc))

    def exited(self) -> str | None:
        """A line about the first process that exited, or None while all run."""
        for name, proc in self.procs:
            if proc.poll() is not None:
                return f"{name} exited with {proc.returncode}; its log: {self.base / name}.log"
        return None

    def stop_all(self) -> None:
        for _, proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 40
        for name, proc in self.procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log(f"{name} did not stop in time: killing it")
                proc.kill()


def wait_until_up(demo: Demo, procs: Processes, total: int, key: str) -> str | None:
    """The gateway's API URL once every VM is known and the gateway answers; None (with the
    reason logged) when a process exited or it took longer than UP_WITHIN."""
    deadline = time.monotonic() + UP_WITHIN
    seen = None
    while time.monotonic() < deadline:
        exited = procs.exited()
        if exited is not None:
            log(exited)
            return None
        seen = vm_count(demo)
        api = gateway_api(demo)
        if seen == total and api is not None and gateway_answers(api, key):
            return api
        time.sleep(0.5)
    log(f"only {seen} of {total} VMs appeared, or the gateway did not answer, within "
        f"{UP_WITHIN:g} s; logs in {demo.base}")
    return None


def banner(demo: Demo, inventory: dict[str, list[tuple[str, str, str]]], api: str,
           keys: dict[str, str]) -> str:
    """What to try, with this run's VMs, URLs and API keys."""
    total = sum(len(v) for v in inventory.values())
    first = inventory["node01"][0]
    crash_vm = next(v for v in inventory["node02"] if v[2] == "running")
    stopped = next(v for v in inventory["node01"] if v[2] == "stopped")
    http_vm, es_vm = [v for v in inventory["node03"] if v[2] == "running"][:2]
    admin_url, alice_url = demo.url("admin"), demo.url("alice")
    if demo.metrics_port:
        metrics = (f"Metrics: http://{demo.metrics(1)}/metrics (daemon), "
                   f":{demo.metrics_port + 2}-:{demo.metrics_port + 1 + len(NODES)} (agents), "
                   f":{demo.metrics_port} (gateway).")
    else:
        metrics = "Metrics: on ports of each process's choosing (see their logs)."
    es_note = ("its default API_URL is this gateway's address" if api.endswith(":8000/api")
               else f"set API_URL = '{api}' in your copy of es")
    return f"""
vmd demo cloud is up: 1 daemon, {len(NODES)} compute nodes, {total} VMs, the HTTP gateway at
{api}/. Logs: {demo.base}/*.log
{metrics}

In another terminal:

  export PATH="{Path.cwd() / '.venv' / 'bin'}:$PATH"
  export VMD_URL={admin_url}        # the admin; alice: {alice_url}

  vmctl get /vm/status --table
  vmctl set /vm/{stopped[1]}/status/start
  vmctl set /vm/{first[1]}/status/stop -freeze        # ends frozen
  vmctl set /vm/{first[1]}/status/start                # 417 Bad action: frozen
  vmctl set /vm/{first[1]}/status/stop -unfreeze      # frozen -> stopped
  VMADM_SIM_ROOT={demo.base / 'node02' / 'sim'} vmd-vmadm-ctl crash {crash_vm[0]}
  vmctl get /vm/{crash_vm[1]}/status                    # stopped: the crash was observed
  vmctl -u {alice_url} get /vm/status --table       # alice sees only her VMs
  vmctl get /vm/status -order_by hostname --csv         # es's --csv and --tabulate[-fmt]

Over HTTP, through the gateway (`vmd api`), with this run's API keys:

  export ADMIN_KEY={keys['admin']} ALICE_KEY={keys['alice']}
  curl -s -H "ES-API-KEY: $ADMIN_KEY" {api}/vm/status/
  curl -s -H "ES-API-KEY: $ALICE_KEY" {api}/vm/status/          # alice's VMs only
  curl -s -X PUT -H "ES-API-KEY: $ADMIN_KEY" -H "ES-STREAM: es" \\
       {api}/vm/{http_vm[1]}/status/stop/       # waits: the final code, then the task

Danube Cloud's es ({es_note}):

  export ES_API_KEY=$ADMIN_KEY
  es get /vm/status -order_by hostname --tabulate
  es set /vm/{es_vm[1]}/status/reboot       # progress dots, then the final result

Ctrl-C stops everything.
"""


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default=os.environ.get("VMD_DEMO_DIR", "demo-state"),
                        help="state directory, recreated on each run (default ./demo-state)")
    parser.add_argument("--vms-per-node", type=int, default=12)
    parser.add_argument("--vhost", default="vmd", help="the RabbitMQ vhost (default vmd)")
    parser.add_argument("--api-listen", default="127.0.0.1:8000",
                        help="the gateway's host:port (default es's 127.0.0.1:8000; port 0: any)")
    parser.add_argument("--metrics-port", type=int, default=9463,
                        help="the gateway's metrics port; the daemon's is the next, then the "
                             "agents' (default 9463; 0: each process picks one)")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    demo = Demo(Path(args.dir).resolve(), args.vhost, args.api_listen, args.metrics_port)
    if demo.base.exists():
        shutil.rmtree(demo.base)
    demo.base.mkdir(parents=True)

    log(f"creating {len(NODES)} simulated compute nodes under {demo.base}")
    inventory = {node: make_node(demo.base / node / "sim", i + 1, args.vms_per_node)
                 for i, node in enumerate(NODES)}
    write_configs(demo)
    # Fresh API keys for each run (`openssl rand -hex 20`, docs/api.md).
    keys = {"admin": secrets.token_hex(20), "alice": secrets.token_hex(20)}
    write_api_config(demo, keys)
    total = sum(len(v) for v in inventory.values())

    procs = Processes(demo.base)
    try:
        procs.spawn("daemon", ["vmd", "daemon", "-c", str(demo.base / "daemon.toml")],
                    dict(os.environ))
        for node in NODES:
            procs.spawn(f"agent-{node}",
                        ["vmd", "agent", "-c", str(demo.base / f"agent-{node}.toml")],
                        sim_env(demo.base / node / "sim"))
        procs.spawn("api", ["vmd", "api", "-c", str(demo.base / "api.toml")], dict(os.environ))
        log(f"started the daemon, {len(NODES)} agents and the gateway; waiting for {total} "
            "VMs to appear")
        api = wait_until_up(demo, procs, total, keys["admin"])
        if api is None:
            procs.stop_all()
            return 1
        print(banner(demo, inventory, api, keys), flush=True)
        while (exited := procs.exited()) is None:
            time.sleep(0.5)
        log(exited)
        procs.stop_all()
        return 1
    except KeyboardInterrupt:
        log("stopping (SIGTERM to every process, waiting for them to drain)")
        procs.stop_all()
        return 0


if __name__ == "__main__":
    sys.exit(main())
