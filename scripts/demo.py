"""Start a demo vmd cloud: the daemon and three simulated compute nodes on the local RabbitMQ.

Run through `scripts/demo` (which installs what is missing and makes sure RabbitMQ runs).
Everything lives under one state directory (default `./demo-state`, recreated on each run):
per node a simulator root (`VMADM_SIM_ROOT`) with a dozen VMs, the config files, the
daemon's SQLite store and one log file per process. Ctrl-C stops everything (SIGTERM,
so the processes drain as in production).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ADMIN_URL = "amqp://admin:admin@127.0.0.1:5672/vmd"
ALICE_URL = "amqp://alice:alice@127.0.0.1:5672/vmd"
SERVICE_URL = "amqp://vmd:vmd@127.0.0.1:5672/vmd"
ALICE_OWNER = "8a1a4e6c-0000-4000-8000-000000000001"
BOB_OWNER = "8a1a4e6c-0000-4000-8000-000000000002"
NODES = ("node01", "node02", "node03")
BRANDS = ("kvm", "kvm", "bhyve", "joyent", "lx", "kvm")
ROLES = ("web", "db", "cache", "mail", "build", "proxy", "api", "queue", "dns", "log", "ci", "vpn")
TIMESCALE = "0.1"  # simulated seconds run ten times faster: a boot takes 0.1 s


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


def agent_url(node: str) -> str:
    """Each node's agent has its own broker user (scripts/ensure-rabbitmq, docs/security.md)."""
    return f"amqp://vmd-agent-{node}:vmd-agent-{node}@127.0.0.1:5672/vmd"


def write_configs(base: Path) -> None:
    agents = "".join(f'"vmd-agent-{node}" = ["{node}"]\n' for node in NODES)
    (base / "daemon.toml").write_text(f"""\
[broker]
url = "{SERVICE_URL}"

[daemon]
store = "{base / 'vmd.sqlite3'}"
shard = 0
no_shutdown = ["dns01.example.com"]
heartbeat_interval = 2
reconcile_interval = 30
metrics = "127.0.0.1:9464"

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
url = "{agent_url(node)}"

[agent]
node = "{node}"
vmadm = ["vmd-vmadm"]
transport = "local"
heartbeat_interval = 2
poll_interval = 30
metrics = "127.0.0.1:{9465 + i}"
iso_dir = "{base / node / 'sim' / 'iso'}"
zonecfg = ["vmd-zonecfg"]
state_dir = "{base / node / 'agent-state'}"

[log]
level = "info"
format = "json"
""")


def vm_count() -> int | None:
    done = subprocess.run(["vmctl", "-u", ADMIN_URL, "--timeout", "5", "get", "/vm/status"],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return None
    try:
        return len(json.loads(done.stdout)["text"]["result"])
    except (ValueError, KeyError, TypeError):
        return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default=os.environ.get("VMD_DEMO_DIR", "demo-state"),
                        help="state directory, recreated on each run (default ./demo-state)")
    parser.add_argument("--vms-per-node", type=int, default=12)
    args = parser.parse_args()
    base = Path(args.dir).resolve()
    if base.exists():
        shutil.rmtree(base)
    base.mkdir(parents=True)

    log(f"creating {len(NODES)} simulated compute nodes under {base}")
    inventory = {node: make_node(base / node / "sim", i + 1, args.vms_per_node)
                 for i, node in enumerate(NODES)}
    write_configs(base)
    total = sum(len(v) for v in inventory.values())

    procs: list[tuple[str, subprocess.Popen[bytes]]] = []

    def spawn(name: str, argv: list[str], env: dict[str, str]) -> None:
        logfile = (base / f"{name}.log").open("wb")
        proc = subprocess.Popen(argv, env=env, stdout=logfile, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        procs.append((name, proc))

    def stop_all() -> None:
        for _, proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 40
        for name, proc in procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log(f"{name} did not stop in time: killing it")
                proc.kill()

    try:
        spawn("daemon", ["vmd", "daemon", "-c", str(base / "daemon.toml")], dict(os.environ))
        for node in NODES:
            spawn(f"agent-{node}", ["vmd", "agent", "-c", str(base / f"agent-{node}.toml")],
                  sim_env(base / node / "sim"))
        log(f"started the daemon and {len(NODES)} agents; waiting for {total} VMs to appear")
        deadline = time.monotonic() + 90
        seen = None
        while time.monotonic() < deadline:
            for name, proc in procs:
                if proc.poll() is not None:
                    log(f"{name} exited with {proc.returncode}; its log: {base / name}.log")
                    stop_all()
                    return 1
            seen = vm_count()
            if seen == total:
                break
            time.sleep(0.5)
        else:
            log(f"only {seen} of {total} VMs appeared within 90 s; logs in {base}")
            stop_all()
            return 1

        first = inventory["node01"][0]
        crash_vm = next(v for v in inventory["node02"] if v[2] == "running")
        stopped = next(v for v in inventory["node01"] if v[2] == "stopped")
        print(f"""
vmd demo cloud is up: 1 daemon, {len(NODES)} compute nodes, {total} VMs. Logs: {base}/*.log
Metrics: http://127.0.0.1:9464/metrics (daemon), :9465-:{9464 + len(NODES)} (agents).

In another terminal:

  export PATH="{Path.cwd() / '.venv' / 'bin'}:$PATH"
  export VMD_URL={ADMIN_URL}        # the admin; alice: {ALICE_URL}

  vmctl get /vm/status --table
  vmctl set /vm/{stopped[1]}/status/start
  vmctl set /vm/{first[1]}/status/stop -freeze        # ends frozen
  vmctl set /vm/{first[1]}/status/start                # 417 Bad action: frozen
  vmctl set /vm/{first[1]}/status/stop -unfreeze      # frozen -> stopped
  VMADM_SIM_ROOT={base / 'node02' / 'sim'} vmd-vmadm-ctl crash {crash_vm[0]}
  vmctl get /vm/{crash_vm[1]}/status                    # stopped: the crash was observed
  vmctl -u {ALICE_URL} get /vm/status --table       # alice sees only her VMs

Ctrl-C stops everything.
""", flush=True)
        while all(proc.poll() is None for _, proc in procs):
            time.sleep(0.5)
        for name, proc in procs:
            if proc.poll() is not None:
                log(f"{name} exited with {proc.returncode}; its log: {base / name}.log")
        stop_all()
        return 1
    except KeyboardInterrupt:
        log("stopping (SIGTERM to every process, waiting for them to drain)")
        stop_all()
        return 0


if __name__ == "__main__":
    sys.exit(main())
