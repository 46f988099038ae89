"""Scenario 6: thousands of hostile requests (fuzz.py) against a running cloud, and the proof.

The fuzzer sends over plain aio-pika connections as the generated user (alice, bob, or
`vmd-api`, a broker user vmd's `[auth]` does not know), with hundreds of requests in
flight, and records every reply by `correlation_id`. Then it checks:

- every request got what its `expect` says (fuzz.py): one 4xx reply, a copy in `vmd.dead`,
  a refusal by the broker, or (no `reply_to`) nothing;
- the daemon never restarted (same process, one `ready` line in its log) and no agent died;
- its memory stayed flat: resident size after the run minus after a warm-up;
- nothing reached vmadm: no power call (`start`, `stop`, `reboot`, `update`) in the
  simulator's calls log, every call there is one of the agent's own reads with a known
  uuid, the nodes' VMs are in the state they had, and no `status_change` event was sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
import uuid as uuidlib
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage

from .cluster import RelCloud, Timing, VmInfo, ctl, node_calls, node_states, rss_kib
from .fuzz import Hostile, generate
from .scenarios import Env, Scale, booted

USERS = ("alice", "bob", "admin", "vmd-api")
_READ_CALL = re.compile(
    r"^(lookup -j( -o \S+)?|list .*|get [0-9a-f-]{36}|events -j -r|events -jr) -> "
    r"(exit -?\d+|running|killed)$")


@dataclass
class FuzzFigures:
    requests: int = 0
    by_kind: Counter[str] = field(default_factory=Counter)
    by_expect: Counter[str] = field(default_factory=Counter)
    codes: Counter[int] = field(default_factory=Counter)
    replies: int = 0
    dead_lettered: int = 0
    refused_by_broker: int = 0
    violations: int = 0
    problems: list[str] = field(default_factory=list)
    daemon_restarts: int = 0
    rss_start_kib: int = 0
    rss_end_kib: int = 0
    rss_samples_kib: list[int] = field(default_factory=list)
    vmadm_power_calls: int = 0
    unexpected_calls: int = 0
    status_events: int = 0
    states_changed: int = 0
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "scenario": "hostile-input", "requests": self.requests,
            "replies": self.replies, "codes": dict(sorted(self.codes.items())),
            "dead_lettered": self.dead_lettered, "refused_by_broker": self.refused_by_broker,
            "violations": self.violations, "daemon_restarts": self.daemon_restarts,
            "rss_start_mib": round(self.rss_start_kib / 1024, 1),
            "rss_end_mib": round(self.rss_end_kib / 1024, 1),
            "rss_samples_mib": [round(k / 1024, 1) for k in self.rss_samples_kib],
            "vmadm_power_calls": self.vmadm_power_calls,
            "unexpected_calls": self.unexpected_calls, "status_events": self.status_events,
            "states_changed": self.states_changed, "seconds": round(self.seconds, 1),
            "by_expect": dict(self.by_expect), "by_kind": dict(self.by_kind),
        }


class _UserLink:
    def __init__(self, connection: AbstractConnection, channel: AbstractChannel,
                 own_queue: str) -> None:
        self.connection = connection
        self.channel = channel
        self.own_queue = own_queue


class Fuzzer:
    def __init__(self, url_for: Any) -> None:
        self.url_for = url_for
        self.links: dict[str, _UserLink] = {}
        self.replies: dict[str, list[tuple[int, dict[str, Any]]]] = defaultdict(list)
        self.arrived = asyncio.Event()
        self._forging = asyncio.Semaphore(4)

    async def __aenter__(self) -> Fuzzer:
        for user in USERS:
            connection = await aio_pika.connect(
                self.url_for(user), client_properties={"connection_name": f"rel-fuzz:{user}"})
            channel = await connection.channel(publisher_confirms=True)
            direct = await channel.get_queue("amq.rabbitmq.reply-to", ensure=False)
            await direct.consume(self._on_reply, no_ack=True)
            own = await channel.declare_queue(exclusive=True)
            await own.consume(self._on_reply, no_ack=True)
            self.links[user] = _UserLink(connection, channel, own.name)
        return self

    async def __aexit__(self, *exc: object) -> None:
        for link in self.links.values():
            with contextlib.suppress(Exception):
                await link.connection.close()

    async def _on_reply(self, message: AbstractIncomingMessage) -> None:
        try:
            body = json.loads(message.body)
        except ValueError:
            body = {"unparsable": message.body[:100].decode("latin1")}
        code = message.headers.get("code")
        self.replies[message.correlation_id or ""].append(
            (int(code) if isinstance(code, int) else -1, body))
        self.arrived.set()

    async def send(self, h: Hostile, cid: str) -> str:
        """Publish one; returns "sent" or "refused" (the broker closed the channel)."""
        link = self.links.get(h.user)  # none for the agent users (forged agent messages)
        reply_to = {"direct": "amq.rabbitmq.reply-to", "none": None,
                    "own-queue": link.own_queue if link else None,
                    }.get(h.reply, h.reply.removeprefix("vmd:"))
        message = aio_pika.Message(
            h.body, content_type=h.content_type, user_id=h.user_id, reply_to=reply_to,
            correlation_id=cid, message_id=h.message_id, headers=h.headers,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
        if h.expect == "refused" or h.exchange != "vmd.commands":
            # A connection of its own: the broker closes the channel (PRECONDITION_FAILED),
            # and channels opened and closed by the hundred on one connection race in
            # aiormq's channel numbering (`second 'channel.open' seen`).
            async with self._forging:
                connection = await aio_pika.connect(
                    self.url_for(h.user),
                    client_properties={"connection_name": f"rel-fuzz-forged:{h.user}"})
                try:
                    channel = await connection.channel(publisher_confirms=True)
                    if h.exchange:
                        exchange = await channel.get_exchange(h.exchange, ensure=False)
                    else:
                        exchange = channel.default_exchange
                    await exchange.publish(message, h.routing_key, timeout=10)
                except Exception:
                    return "refused"
                finally:
                    with contextlib.suppress(Exception):
                        await connection.close()
            return "sent"
        assert link is not None
        exchange = await link.channel.get_exchange("vmd.commands", ensure=False)
        await exchange.publish(message, "command", timeout=30)
        return "sent"


def _short(text: str, limit: int = 200) -> str:
    """A text cut to fit an AMQP short string (255 bytes) with room for a suffix."""
    raw = text.encode("utf-8", "replace")[:limit]
    return raw.decode("utf-8", "ignore")


async def _dead_letters(url: str, timeout: float) -> dict[str, dict[str, Any]]:
    """Everything in vmd.dead, by message_id and by correlation_id (consumed)."""
    found: dict[str, dict[str, Any]] = {}
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue("vmd.dead", durable=True, passive=True)
        end = time.monotonic() + timeout
        idle = 0
        while time.monotonic() < end and idle < 10:
            message = await queue.get(no_ack=True, fail=False)
            if message is None:
                idle += 1
                await asyncio.sleep(0.1)
                continue
            idle = 0
            info = {"error": str(message.headers.get("x-vmd-error", ""))}
            for key in (message.message_id, message.correlation_id):
                if key:
                    found[key] = info
    return found


async def run_fuzz(env: Env, n: int, *, inflight: int = 150, samples: int = 5) -> FuzzFigures:
    f = FuzzFigures()
    started = time.monotonic()
    scale = Scale(repeats=0, nodes=1, per_node=6)
    async with booted(env, "hostile", scale, Timing()) as ctx:
        cloud, fleet = ctx.cloud, ctx.fleet
        await ctl(cloud.nodes[0], "iso-add", "debian-12.iso")
        requests = generate(fleet, n)
        before_states = await node_states(cloud.nodes[0])
        calls_before = len(await node_calls(cloud.nodes[0]))
        events_before = sum(len(v) for v in ctx.recorder.vm_events.values())
        daemon_pid = cloud.pid("daemon")
        async with Fuzzer(env.url_for) as fuzzer:
            outcomes = await _send_all(fuzzer, requests, inflight, cloud, f, samples)
            await _wait_replies(fuzzer, requests, outcomes)
            await asyncio.sleep(1.0)  # a second answer to any of them would arrive by now
        dead = await _dead_letters(env.url_for("vmd"), timeout=20)
        _check(f, requests, outcomes, fuzzer.replies, dead)
        f.rss_end_kib = rss_kib(daemon_pid)
        f.daemon_restarts = int(cloud.pid("daemon") != daemon_pid or not cloud.alive("daemon"))
        f.daemon_restarts += max(0, cloud.log("daemon").count('"event":"ready"') - 1)
        dead_procs = [name for name in cloud.procs if not cloud.alive(name)]
        f.problems += [f"{name} died: {cloud.log(name)[-1500:]}" for name in dead_procs]
        f.violations += len(dead_procs)
        await _check_node(f, cloud, fleet, before_states, calls_before)
        f.status_events = sum(len(v) for v in ctx.recorder.vm_events.values()) - events_before
    f.seconds = time.monotonic() - started
    return f


async def _send_all(fuzzer: Fuzzer, requests: list[Hostile], inflight: int, cloud: RelCloud,
                    f: FuzzFigures, samples: int) -> list[tuple[str, str]]:
    """(correlation_id, outcome) per request, in order; samples the daemon's memory."""
    outcomes: list[tuple[str, str]] = [("", "")] * len(requests)
    limit = asyncio.Semaphore(inflight)
    pid = cloud.pid("daemon")
    every = max(1, len(requests) // samples)

    async def one(i: int, h: Hostile) -> None:
        async with limit:
            cid = f"{_short(h.correlation_id or '', 150)}#fz{i}"
            if h.message_id is not None:
                h.message_id = f"{_short(h.message_id, 150)}#{uuidlib.uuid4().hex}"
            outcomes[i] = (cid, await fuzzer.send(h, cid))
            # Replies are awaited at the end; pace by waiting for this one a little.
            end = time.monotonic() + 10
            while h.expect in ("4xx",) and cid not in fuzzer.replies and \
                    time.monotonic() < end:
                fuzzer.arrived.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(fuzzer.arrived.wait(), 0.5)

    tasks = []
    for i, h in enumerate(requests):
        tasks.append(asyncio.create_task(one(i, h)))
        if i % every == every - 1:
            await asyncio.gather(*tasks)
            tasks = []
            if not cloud.alive("daemon"):
                raise AssertionError(f"the daemon died:\n{cloud.log('daemon')[-3000:]}")
            sample = rss_kib(pid)
            f.rss_samples_kib.append(sample)
            if not f.rss_start_kib:
                f.rss_start_kib = sample
    await asyncio.gather(*tasks)
    return outcomes


async def _wait_replies(fuzzer: Fuzzer, requests: list[Hostile],
                        outcomes: list[tuple[str, str]], timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        missing = [cid for (cid, how), h in zip(outcomes, requests, strict=True)
                   if h.expect == "4xx" and how == "sent" and cid not in fuzzer.replies]
        if not missing:
            return
        await asyncio.sleep(0.2)


def _check(f: FuzzFigures, requests: list[Hostile], outcomes: list[tuple[str, str]],
           replies: dict[str, list[tuple[int, dict[str, Any]]]],
           dead: dict[str, dict[str, Any]]) -> None:
    for h, (cid, how) in zip(requests, outcomes, strict=True):
        f.requests += 1
        f.by_kind[h.kind] += 1
        f.by_expect[h.expect] += 1
        got = replies.get(cid, [])
        f.replies += len(got)
        for code, _ in got:
            f.codes[code] += 1
        problem = None
        if how == "refused":
            f.refused_by_broker += 1
            if h.expect != "refused":
                problem = "refused by the broker"
        elif h.expect == "refused":
            problem = "a forged user_id was not refused by the broker"
        elif h.expect == "4xx":
            if len(got) != 1 or not 400 <= got[0][0] < 500:
                problem = f"replies {[(c, str(b)[:200]) for c, b in got]}"
        elif h.expect == "dead":
            if got or (h.message_id or "") not in dead:
                problem = f"not in vmd.dead (replies {got})"
            else:
                f.dead_lettered += 1
        elif h.expect == "misdirected":
            if got:
                problem = f"a reply came back: {got}"
            elif dead.get(cid, {}).get("error") != "reply_to not allowed":
                problem = f"not in vmd.dead as 'reply_to not allowed' ({dead.get(cid)})"
            else:
                f.dead_lettered += 1
        elif got:  # silent
            problem = f"replies without reply_to: {got}"
        if problem is not None:
            f.violations += 1
            f.problems.append(f"{h.kind} ({h.expect}) {h.body[:200]!r}: {problem}")


async def _check_node(f: FuzzFigures, cloud: RelCloud, fleet: list[VmInfo],
                      before: dict[str, str], calls_before: int) -> None:
    node = cloud.nodes[0]
    after = await node_states(node)
    f.states_changed = sum(1 for uuid, state in before.items() if after.get(uuid) != state)
    known = {vm.uuid for vm in fleet}
    for line in (await node_calls(node))[calls_before:]:
        words = line.split()
        if words and words[0] in ("start", "boot", "stop", "halt", "reboot", "update"):
            f.vmadm_power_calls += 1
            f.problems.append(f"vmadm call: {line}")
        elif not _READ_CALL.match(line) or any(
                re.fullmatch(r"[0-9a-f-]{36}", w) and w not in known for w in words):
            f.unexpected_calls += 1
            f.problems.append(f"unexpected vmadm call: {line}")
