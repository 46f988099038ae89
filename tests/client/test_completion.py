"""`vmctl completion bash`, sourced in a real bash: COMP_WORDS/COMP_CWORD set as bash sets
them, the completion function called, COMPREPLY read back. VM hostnames come from the
stand-in vmd over the real broker, as a user's TAB would ask."""

from __future__ import annotations

import asyncio
import shlex
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from .responder import VMCTL, VMS, Responder, run_vmctl, vmctl_env

UrlFor = Callable[[str], str]

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


@pytest.fixture
async def script(tmp_path: Path) -> Path:
    done = await run_vmctl("completion", "bash", url=None)
    assert done.returncode == 0, done.stderr
    assert "complete -F _vmctl vmctl" in done.stdout
    path = tmp_path / "vmctl.bash"
    path.write_text(done.stdout)
    return path


async def complete(script: Path, line: str, url: str | None = None) -> list[str]:
    """What TAB offers at the end of `line` (a trailing space starts a new, empty word)."""
    words = line.split()
    if line.endswith(" "):
        words.append("")
    snippet = (f"source {shlex.quote(str(script))}\n"
               f"COMP_WORDS=({' '.join(shlex.quote(w) for w in words)})\n"
               f"COMP_CWORD={len(words) - 1}\n"
               "_vmctl\n"
               "printf '%s\\n' \"${COMPREPLY[@]}\"\n")
    env = vmctl_env(url)
    env["PATH"] = f"{VMCTL.parent}:{env.get('PATH', '')}"
    proc = await asyncio.create_subprocess_exec(
        "bash", "--norc", "--noprofile", "-c", snippet, env=env,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    async with asyncio.timeout(30):
        out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    assert err == b"", err.decode()
    return [w for w in out.decode().splitlines() if w]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        pytest.param("vmctl ", ["get", "set", "put", "create", "post", "delete", "events",
                                "completion"], id="actions"),
        pytest.param("vmctl s", ["set"], id="action-prefix"),
        pytest.param("vmctl -u amqp://x@h/v g", ["get"], id="action-after-dash-u"),
        pytest.param("vmctl get ", ["/vm/", "/vm/status", "/task/"], id="path-roots"),
        pytest.param("vmctl set /vm/web01/status/s",
                     ["/vm/web01/status/start", "/vm/web01/status/stop"], id="vm-paths-set"),
        pytest.param("vmctl get /vm/web01/",
                     ["/vm/web01/status", "/vm/web01/status/current",
                      "/vm/web01/status/history"], id="vm-paths-get"),
        pytest.param("vmctl set /vm/web01/status/stop -",
                     ["-force", "-timeout", "-freeze", "-unfreeze", "-update"],
                     id="stop-parameters"),
        pytest.param("vmctl set /vm/web01/status/start -cd",
                     ["-cdimage", "-cdimage_once", "-cdimage2"], id="start-parameters"),
        pytest.param("vmctl get /vm/status -order_by -h", ["-hostname"], id="order-by-field"),
        pytest.param("vmctl get /vm/web01/status/history -", ["-limit", "-before"],
                     id="history-parameters"),
        pytest.param("vmctl get /vm/status --tabulate-p",
                     ["--tabulate-pipe", "--tabulate-plain", "--tabulate-presto",
                      "--tabulate-pretty", "--tabulate-psql"], id="tabulate-formats"),
        pytest.param("vmctl get /vm/status --c", ["--csv"], id="csv"),
        pytest.param("vmctl events --", ["--vm", "--task", "--owner", "--json", "--debug",
                                         "--url"], id="events-options"),
        pytest.param("vmctl get /vm/status --timeout ", [], id="option-value"),
        pytest.param("vmctl completion ", ["bash"], id="completion-shells"),
    ],
)
async def test_completes(script: Path, line: str, expected: list[str]) -> None:
    assert await complete(script, line) == expected


async def test_vm_hostnames_come_from_vmd(script: Path, responder: Responder,
                                          amqp_url_for: UrlFor) -> None:
    url = amqp_url_for("alice")
    offered = await complete(script, "vmctl set /vm/", url=url)
    assert offered == ["/vm/status", *(f"/vm/{vm['hostname']}/" for vm in VMS)]
    assert await complete(script, "vmctl get /vm/d", url=url) == ["/vm/db01.example.com/"]
    # The command line's -u is the one asked.
    bad = url.replace("alice:alice@", "alice:wrong@")
    assert await complete(script, f"vmctl -u {url} get /vm/w", url=bad) == [
        "/vm/web01.example.com/"]
    assert all(seen.user_id == "alice" for seen in responder.seen)


async def test_no_broker_completes_the_fixed_paths(script: Path) -> None:
    offered = await complete(script, "vmctl get /vm/", url="amqp://a:a@127.0.0.1:1/vmd")
    assert offered == ["/vm/status"]
