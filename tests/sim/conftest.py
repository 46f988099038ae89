"""Fixtures for the simulator tests: a fresh simulated node per test, driven through the
real `vmd-vmadm` / `vmd-vmadm-ctl` executables as subprocesses."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

BIN = Path(sys.executable).parent
VMADM = str(BIN / "vmd-vmadm")
CTL = str(BIN / "vmd-vmadm-ctl")
ZONECFG = str(BIN / "vmd-zonecfg")
SCALE = 0.01
OWNER = "8a1a4e6c-0000-4000-8000-000000000001"
MISSING = "00000000-1111-4222-8333-444444444444"


@dataclass
class Result:
    rc: int
    out: str
    err: str

    @property
    def last(self) -> str:
        """The last stderr line (vmadm's message)."""
        lines = self.err.strip().splitlines()
        return lines[-1] if lines else ""

    @property
    def first(self) -> str:
        lines = self.err.strip().splitlines()
        return lines[0] if lines else ""


class Stream:
    """A running `vmd-vmadm events` process whose stdout lines are collected by a thread."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()
        self._err: str | None = None

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        with self.proc.stdout:
            for line in self.proc.stdout:
                self.lines.put(line.rstrip("\n"))

    def next_line(self, timeout: float = 20.0) -> str:
        line = self.lines.get(timeout=timeout)
        self.seen.append(line)
        return line

    def next_json(self, timeout: float = 20.0) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(self.next_line(timeout))
        return value

    def until(
        self, pred: Callable[[dict[str, Any]], bool], timeout: float = 20.0
    ) -> dict[str, Any]:
        """The next JSON event for which `pred` holds (earlier ones are skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            ev = self.next_json(max(0.01, deadline - time.monotonic()))
            if pred(ev):
                return ev

    def wait(self, timeout: float = 20.0) -> tuple[int, str]:
        """Wait for the stream to end by itself: (exit code, stderr)."""
        rc = self.proc.wait(timeout=timeout)
        return rc, self.stop()

    def stop(self) -> str:
        """Terminate (if still running); returns what the stream wrote on stderr."""
        if self._err is None:
            if self.proc.poll() is None:
                self.proc.terminate()
            self.proc.wait(timeout=20)
            self._thread.join(timeout=20)
            assert self.proc.stderr is not None
            with self.proc.stderr:
                self._err = self.proc.stderr.read()
        return self._err


class Node:
    """One simulated node (a VMADM_SIM_ROOT) at a given time scale."""

    def __init__(self, root: Path, scale: float = SCALE) -> None:
        self.root = root
        self.scale = scale
        self.env = {**os.environ, "VMADM_SIM_ROOT": str(root), "VMADM_SIM_TIMESCALE": str(scale)}
        self.env.pop("VMADM_DEBUG_LEVEL", None)
        self._procs: list[subprocess.Popen[str]] = []
        self._streams: list[Stream] = []

    def at_scale(self, scale: float) -> Node:
        other = Node(self.root, scale)
        other._procs = self._procs
        other._streams = self._streams
        return other

    def vmadm(self, *args: str, stdin: str | None = "", timeout: float = 60, **env: str) -> Result:
        done = subprocess.run(
            [VMADM, *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**self.env, **env},
        )
        return Result(done.returncode, done.stdout, done.stderr)

    def zonecfg(self, *args: str, **env: str) -> Result:
        done = subprocess.run([ZONECFG, *args], capture_output=True, text=True, timeout=60,
                              env={**self.env, **env})
        return Result(done.returncode, done.stdout, done.stderr)

    def ctl(self, *args: str, timeout: float = 60) -> Result:
        done = subprocess.run(
            [CTL, *args], capture_output=True, text=True, timeout=timeout, env=self.env
        )
        return Result(done.returncode, done.stdout, done.stderr)

    def ok(self, *args: str) -> str:
        r = self.ctl(*args)
        assert r.rc == 0, f"vmd-vmadm-ctl {args}: {r.err}"
        return r.out

    def create(self, brand: str = "kvm", state: str = "running", **opts: str) -> str:
        args = ["create", "--brand", brand, "--state", state, "--owner", OWNER]
        args += ["--alias", opts.pop("alias", f"{brand}-vm")]
        for k, v in opts.items():
            flag = f"--{k.replace('_', '-')}"
            args += [flag] if v == "" else [flag, v]
        return self.ok(*args).split()[-1]

    def get(self, uuid: str) -> dict[str, Any]:
        r = self.vmadm("get", uuid)
        assert r.rc == 0, r.err
        value: dict[str, Any] = json.loads(r.out)
        return value

    def fault(self, target: str, **knobs: Any) -> None:
        pairs = [f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in knobs.items()]
        self.ok("fault", target, *pairs)

    def popen(self, *args: str, **env: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [VMADM, *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**self.env, **env},
        )
        self._procs.append(proc)
        return proc

    def events(self, *args: str) -> Stream:
        proc = self.popen("events", *args)
        self._procs.remove(proc)
        stream = Stream(proc)
        self._streams.append(stream)
        return stream

    def attach(self, stream: Stream) -> None:
        """Return once `stream` (started without -r) is attached: a marker change shows up.

        Under load a marker event may arrive after a retry: callers skip marker events."""
        marker = self.create("joyent", "stopped", alias="marker")
        for n in range(100):
            self.ok("set", marker, f"alias=marker-{n}")
            try:
                stream.until(lambda e: e["uuid"] == marker, timeout=1.0)
            except queue.Empty:
                continue
            return
        raise AssertionError("the events stream never attached")

    def journal(self) -> list[dict[str, Any]]:
        path = self.root / "events.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line]

    def wait_state(self, uuid: str, state: str, timeout: float = 20.0) -> None:
        r = self.ctl("wait", uuid, state, "--timeout", str(timeout))
        assert r.rc == 0, r.err

    def cleanup(self) -> None:
        for stream in self._streams:
            stream.stop()
        for proc in self._procs:
            if proc.poll() is None:
                proc.kill()
            proc.communicate()


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    root = tmp_path / "node"
    root.mkdir()
    n = Node(root)
    try:
        yield n
    finally:
        n.cleanup()
