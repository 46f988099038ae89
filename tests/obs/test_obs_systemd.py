"""vmd.obs.systemd against a real unix datagram socket standing in for systemd's."""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from vmd.obs import systemd


class Receiver:
    """A bound AF_UNIX datagram socket; a thread stamps each datagram as it arrives.

    The thread is what lets a test see a gap while the event loop is blocked.
    """

    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.settimeout(0.05)
        self.got: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            self.got.append((time.monotonic(), data.decode()))

    def messages(self) -> list[str]:
        return [m for _, m in self.got]

    def wait_for(self, count: int, timeout: float = 10.0) -> list[str]:
        end = time.monotonic() + timeout
        while len(self.got) < count and time.monotonic() < end:
            time.sleep(0.01)
        return self.messages()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    # A short path: sun_path holds 108 bytes, pytest's tmp_path can be longer.
    with tempfile.TemporaryDirectory(prefix="vmd-") as tmp:
        path = str(Path(tmp) / "notify")
        r = Receiver(path)
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        monkeypatch.delenv("WATCHDOG_USEC", raising=False)
        monkeypatch.delenv("WATCHDOG_PID", raising=False)
        try:
            yield r
        finally:
            r.close()


def test_ready_status_stopping_arrive(receiver: Receiver) -> None:
    notify = systemd.Notifier()
    assert notify.ready("consuming")
    assert notify.status("draining: 3 requests\nin hand")
    assert notify.status("draining: 3 requests in hand") is False  # unchanged: not sent
    assert notify.stopping("stopping: store closed")
    assert systemd.notify("WATCHDOG=1")
    assert receiver.wait_for(4) == [
        "READY=1\nSTATUS=consuming",
        "STATUS=draining: 3 requests in hand",  # a newline would start a new assignment
        "STOPPING=1\nSTATUS=stopping: store closed",
        "WATCHDOG=1",
    ]


def test_waiting_for_the_broker_goes_through_the_notifier(receiver: Receiver) -> None:
    # STATUS= is one value at systemd: once the retries showed theirs, the text shown before
    # them is sent again, not skipped as unchanged. Each retry renews the start timeout.
    notify = systemd.Notifier()
    assert notify.status("standby")
    assert notify.waiting_for_broker(2, "connection refused\nby peer", 1.5)
    assert notify.waiting_for_broker(2, "connection refused\nby peer", 1.5)
    assert notify.status("standby")
    waiting = ("STATUS=waiting for the broker (attempt 2, last error: connection refused by peer)"
               f"\nEXTEND_TIMEOUT_USEC={int((1.5 + systemd.START_MARGIN) * 1e6)}")
    assert receiver.wait_for(4) == ["STATUS=standby", waiting, waiting, "STATUS=standby"]


def test_abstract_namespace_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"vmd-test-{uuid.uuid4().hex}"
    r = Receiver("\0" + name)
    try:
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert systemd.notify("READY=1")
        assert r.wait_for(1) == ["READY=1"]
    finally:
        r.close()


def test_no_socket_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert systemd.Notifier().ready("consuming") is False
    assert systemd.notify("WATCHDOG=1") is False


@pytest.mark.parametrize("address", [
    pytest.param("/nonexistent/vmd/notify", id="missing-path"),
    pytest.param("vsock:2:1234", id="unsupported-kind"),
])
def test_unusable_socket_is_not_fatal(monkeypatch: pytest.MonkeyPatch, address: str) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", address)
    assert systemd.Notifier().stopping("stopping") is False


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        pytest.param({"WATCHDOG_USEC": "30000000"}, 15.0, id="half-of-30s"),
        pytest.param({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "<self>"}, 15.0,
                     id="for-us"),
        pytest.param({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None,
                     id="for-another-process"),
        pytest.param({"WATCHDOG_USEC": "0"}, None, id="zero"),
        pytest.param({"WATCHDOG_USEC": "soon"}, None, id="garbage"),
        pytest.param({}, None, id="unset"),
    ],
)
def test_watchdog_interval(env: dict[str, str], expected: float | None) -> None:
    env = {k: str(os.getpid()) if v == "<self>" else v for k, v in env.items()}
    assert systemd.watchdog_interval(env) == expected


async def test_watchdog_loop_pings_at_half_the_timeout(
        receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "100000")  # 0.1 s: a ping every 0.05 s
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    task = asyncio.create_task(systemd.watchdog_loop(), name="watchdog")
    while len(receiver.got) < 11:
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert set(receiver.messages()) == {"WATCHDOG=1"}
    times = [t for t, _ in receiver.got]
    # Ten intervals of 0.05 s: never faster than asked. A lower bound, so a slow machine
    # cannot fail it; the margin absorbs a late stamp of the first ping by the thread.
    assert times[10] - times[0] >= 10 * 0.05 * 0.7


async def test_blocked_loop_stops_the_pings(
        receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "100000")
    task = asyncio.create_task(systemd.watchdog_loop(), name="watchdog")
    while len(receiver.got) < 3:
        await asyncio.sleep(0.01)
    blocked_at = time.monotonic()
    # A blocking call on the event loop: exactly what the watchdog must expose.
    time.sleep(0.6)  # noqa: ASYNC251
    unblocked_at = time.monotonic()
    count = len(receiver.got)
    while len(receiver.got) < count + 3:
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    times = [t for t, _ in receiver.got]
    # Stamps are taken by the receiving thread, so allow it 0.2 s to stamp the ping sent
    # just before the block; nothing may arrive later than that while the loop is blocked.
    assert not [t for t in times if blocked_at + 0.2 < t < unblocked_at]
    gaps = [(b - a, a, b) for a, b in itertools.pairwise(times)]
    gap, start, end = max(gaps)
    assert gap >= 0.4  # eight times the interval: systemd would have seen it
    assert start <= blocked_at + 0.2 and end >= unblocked_at  # and it is the blocked spell


async def test_unhealthy_skips_pings(receiver: Receiver) -> None:
    healthy = False
    task = asyncio.create_task(systemd.watchdog_loop(interval=0.02, healthy=lambda: healthy))
    await asyncio.sleep(0.15)
    assert receiver.messages() == []
    healthy = True
    while not receiver.got:
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert receiver.messages()[0] == "WATCHDOG=1"


async def test_disabled_watchdog_waits_until_cancelled(
        receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "100000")
    monkeypatch.setenv("WATCHDOG_PID", "1")  # meant for another process
    task = asyncio.create_task(systemd.watchdog_loop())
    done, _ = await asyncio.wait([task], timeout=0.3)
    assert not done  # still running: it ends only by cancellation
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert receiver.messages() == []


def test_a_reader_that_never_drains_does_not_block(monkeypatch: pytest.MonkeyPatch,
                                                   tmp_path: Path) -> None:
    # A receiver that never reads: its queue fills, and notify must drop, not block.
    path = str(tmp_path / "full.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        results = []
        done = threading.Event()

        def flood() -> None:
            for _ in range(5000):
                results.append(systemd.notify("STATUS=" + "x" * 1000))
            done.set()

        threading.Thread(target=flood, daemon=True).start()
        assert done.wait(20), "notify blocked on a full socket"
        assert results[0] is True and results[-1] is False
