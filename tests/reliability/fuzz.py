"""Hostile input: hypothesis generates requests that vmd must refuse, the fuzzer sends them.

Every generated `Hostile` request is invalid by construction, in one of these ways (the
`kind`, counted in the figures): a body that is not JSON or not an object; `method`/`path`/
`data` of the wrong type; a body near or over the 64 KiB limit; a wrong value at every
parameter key of start/stop/reboot (only keys the action reads, on VMs whose brand
validates them: an ignored key would let the request through, rightly); huge strings and
numbers (digit strings and number literals over Python's 4300-digit conversion limit,
literals that overflow to infinity); unicode, path traversal and shell syntax in VM names
and in `cdimage`; unknown methods; forged or odd properties (no `user_id`, a user vmd does
not know, a `user_id` that is not the connection's, odd headers, content types and ids, a
`reply_to` naming one of vmd's own queues).

What each must get (`expect`):
- `4xx`: exactly one reply, code 400-499;
- `dead`: no `reply_to` and unparsable: a copy in `vmd.dead` (matched by `message_id`);
- `refused`: the broker itself refuses it (a forged `user_id` closes the channel);
- `silent`: no `reply_to` but parsable: no answer to give; it must have no effect either;
- `misdirected`: `reply_to` is one of vmd's queues, another user's queue or a name like
  neither Direct Reply-to nor a server-named queue: no reply anywhere, a copy in `vmd.dead`
  with `x-vmd-error: reply_to not allowed` (matched by `correlation_id`), nothing runs.

The generation uses hypothesis' strategies through one `@given` run that collects the
examples (`generate`), so sending can be pipelined afterwards (hundreds in flight).
"""

from __future__ import annotations

import dataclasses
import json
import random
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from vmd.bus.agent_messages import (
    AgentTask,
    FullSync,
    Heartbeat,
    ObservationReport,
    TaskResult,
    to_json,
)
from vmd.model import Action, NodeName, Observation, OutcomeKind, TaskId, TaskOutcome, VmUuid

from .cluster import VmInfo

MAX_BODY = 64 * 1024
SHELL = ["; rm -rf /", "$(reboot)", "`id`", "| halt", "&& poweroff", "\n/usr/sbin/halt",
         "' OR '1'='1", "${IFS}reboot", "> /etc/passwd", "\x00", "*", "-F", "--force"]
TRAVERSAL = ["../../etc/passwd", "..", "/iso/../../../etc/shadow", "%2e%2e%2f%2e%2e",
             "....//....//", "..\\..\\windows", "/dev/zero", "debian-12.iso/../x",
             "../debian-12.iso", "./debian-12.iso", "debian-12.iso\x00.txt", "debian-12.iso "]
UNICODE = ["\uff57\uff45\uff42\uff10\uff11", "web01\u202e", "ẅëḃ01.example.com", "😀",
           "\u0000", "\ud7ff", "名前.example.com", "ɐʎ", "web\u200b01"]
METHODS = ["POST", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE", "CONNECT", "", " ", "G ET",
           "PUTT", "GETT", "\u0000", "ПУТ", "GET\n", "*"]
ACTION_KEYS = {
    "start": ("update", "cdimage", "cdimage_once", "cdimage2"),
    "stop": ("update", "force", "timeout", "freeze", "unfreeze"),
    "reboot": ("update", "force", "timeout"),
}


@dataclass
class Hostile:
    kind: str
    body: bytes
    exchange: str = "vmd.commands"  # a forged agent message goes elsewhere
    routing_key: str = "command"
    user: str = "alice"  # the connection's user
    user_id: str | None = "alice"  # the property (None: absent)
    reply: str = "direct"  # direct | none | own-queue | vmd:<queue>
    expect: str = "4xx"
    message_id: str | None = None
    correlation_id: str | None = None
    headers: dict[str, Any] = field(default_factory=dict)
    content_type: str | None = "application/json"


def _json(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")


# Strategies are built once (building them per draw costs more than drawing).
HUGE = st.builds(lambda c, n: c * n, st.sampled_from(["a", "é", "😀", "/", ".", "\\", "$", "0"]),
                 st.integers(100, 60_000))
WRONG_BOOL = st.one_of(
    st.sampled_from(["yes", "no", "on", "off", "tru", "", " true", "null", "2", "-1",
                     "\uff34\uff32\uff35\uff25", "1.0", "0x1", "t", "y"]),
    st.integers().filter(lambda n: n not in (0, 1)),
    st.floats(allow_nan=True).filter(lambda f: f not in (0.0, 1.0)),
    st.lists(st.booleans(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.booleans(), max_size=2),
    st.none(), st.just(10**40), HUGE,
)
WRONG_TIMEOUT = st.one_of(
    st.integers(max_value=-1), st.integers(min_value=3601), st.just(10**100),
    st.floats(allow_nan=True, allow_infinity=True).filter(
        lambda f: not (f == f and f not in (float("inf"), float("-inf")) and f.is_integer()
                       and 0 <= f <= 3600)),
    st.sampled_from(["", "abc", "60s", "-5", "1e3", "\uff13\uff16", " 60", "0x10", "60.0",
                     "NaN"]),
    st.booleans(), st.none(), st.lists(st.integers(0, 10), max_size=2), st.just({}), HUGE,
)
WRONG_ISO = st.one_of(
    st.sampled_from(SHELL + TRAVERSAL + UNICODE),
    st.text(min_size=1, max_size=40).filter(lambda t: t != "debian-12.iso"),
    HUGE, st.integers(), st.booleans(), st.lists(st.text(max_size=5), max_size=3),
    st.just({"path": "/iso/debian-12.iso"}),
)
WRONG_TYPE = st.one_of(st.integers(), st.none(), st.lists(st.text(max_size=3), max_size=2),
                       st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
                       st.just(""), st.booleans())
NOT_JSON = st.one_of(
    st.binary(min_size=1, max_size=300).filter(lambda b: _not_json(b)),
    st.sampled_from([b"{", b"{'method': 'GET'}", b"\xff\xfe{}", b"NaN", b"{\"a\":}",
                     b'{"method": "GET", "path": "/vm/status"', b"\x00" * 10]))
NOT_OBJECT = st.one_of(st.lists(st.integers(), max_size=5), st.integers(),
                       st.text(max_size=20), st.none(), st.booleans())
BAD_DATA = st.one_of(st.lists(st.integers(), max_size=3), st.text(max_size=10), st.integers(),
                     st.booleans(), st.floats(allow_nan=False))
ODD_SEGMENT = st.one_of(st.sampled_from(SHELL + TRAVERSAL + UNICODE),
                        st.text(min_size=1, max_size=30), HUGE)
ODD_METHOD = st.one_of(st.sampled_from(METHODS), st.text(max_size=10).filter(
    lambda m: m.upper() not in ("GET", "PUT")))
ODD_HEADERS = st.dictionaries(
    st.sampled_from(["stream", "x-vmd-error", "code", "x-death", "priority"]),
    st.one_of(st.text(max_size=20), st.integers(-2**63, 2**63 - 1), st.booleans(), st.none()),
    max_size=3)
NOISE = st.dictionaries(st.text(max_size=8), st.one_of(st.text(max_size=8), st.integers(),
                                                       st.none()), max_size=2)
# Lone UTF-16 surrogates: legal JSON text (`"\\ud800"`), not encodable as UTF-8. Each once
# crash-looped the daemon when an answer echoed it back (issue 12, finding 1).
SURROGATES = ["\ud800", "\udfff", "\udbff", "\udc00", "a\ud800b", "\ud83d", "\ude00x"]
# Code points that are valid but odd: non-characters, private use, the last plane, BOM.
ODD_CODEPOINTS = ["\uffff", "\ufffe", "\U0010ffff", "\U000fffff", "\ue000", "\ufeff",
                  "\u2028", "\u0085", "\U0001f600\u200d", "\x7f"]
# Literals of numbers JSON's grammar allows (or Python's decoder accepts) with no finite value.
NON_FINITE = [b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-1e400", b"1E+999", b"2e308"]
SORT_FIELDS = ["hostname", "alias", "status", "status_change", "uuid"]
KINDS = ["not-json", "not-object", "bad-method-path", "bad-data", "too-big", "bad-param",
         "bad-path", "unknown-method", "no-user-id", "unknown-user", "forged-user-id",
         "odd-properties", "no-reply-to", "misdirected", "huge-number",
         "surrogate", "odd-codepoint", "non-finite", "order-by", "forged-agent",
         "forged-agent",
         # weights: the parameter and path cases have the most shapes
         "bad-param", "bad-param", "bad-param", "bad-path", "bad-path", "surrogate"]


@st.composite
def hostile(draw: st.DrawFn, fleet: tuple[VmInfo, ...],
            params: st.SearchStrategy[dict[str, Any]]) -> Hostile:
    kind = draw(st.sampled_from(KINDS))
    vm = draw(st.sampled_from(fleet))
    name = vm.hostname if draw(st.booleans()) else vm.uuid
    # Ids are made unique when sent (hypothesis repeats small values on purpose).
    h = Hostile(kind, b"", user=vm.user, user_id=vm.user,
                message_id="" if draw(st.integers(0, 4)) else None)
    if kind == "not-json":
        h.body = draw(NOT_JSON)
    elif kind == "not-object":
        h.body = _json(draw(NOT_OBJECT))
    elif kind == "bad-method-path":
        body: dict[str, Any] = {"method": "GET", "path": f"/vm/{name}/status"}
        which = draw(st.sampled_from(["method", "path", "both", "missing-method",
                                      "missing-path"]))
        if which in ("method", "both"):
            body["method"] = draw(WRONG_TYPE)
        if which in ("path", "both"):
            body["path"] = draw(WRONG_TYPE)
        if which.startswith("missing"):
            del body[which.split("-")[1]]
        h.body = _json(body)
    elif kind == "bad-data":
        data = draw(BAD_DATA)
        h.body = _json({"method": "PUT", "path": f"/vm/{name}/status/start", "data": data})
    elif kind == "too-big":
        h.body = _json({"method": "PUT", "path": f"/vm/{name}/status/stop",
                        "data": {"x": "a" * draw(st.integers(MAX_BODY, MAX_BODY + 5000))}})
    elif kind == "huge-number":
        # Number literals JSON allows and Python cannot convert (over 4300 digits) or
        # turns into infinities; built as bytes: json.dumps cannot write them.
        literal = draw(st.one_of(
            st.builds(lambda d, n: d * n, st.sampled_from([b"9", b"1", b"-9"]),
                      st.integers(4301, 30_000)),
            st.sampled_from([b"1e99999", b"-1e99999", b"1" + b"0" * 400 + b".5"])))
        key = draw(st.sampled_from(["timeout", "force", "update", "cdimage"]))
        action = {"cdimage": "start", "update": "start"}.get(key, "stop")
        hvm = next(v for v in fleet if v.brand in ("kvm", "bhyve"))
        h.body = (b'{"method": "PUT", "path": "/vm/' + hvm.uuid.encode() + b"/status/" +
                  action.encode() + b'", "data": {"' + key.encode() + b'": ' + literal + b"}}")
    elif kind == "surrogate":
        h.body = _escaped(draw(_with_odd_text(st.sampled_from(SURROGATES), fleet, name)))
    elif kind == "odd-codepoint":
        h.body = _escaped(draw(_with_odd_text(st.sampled_from(ODD_CODEPOINTS), fleet, name)))
    elif kind == "non-finite":
        h.body, h.user = draw(_non_finite(fleet))
        h.user_id = h.user
    elif kind == "order-by":
        h.body = _json({"method": "GET", "path": "/vm/status",
                        "data": {"order_by": draw(_bad_order_by())}})
    elif kind == "forged-agent":
        draw(_forged_agent(h, fleet))
    elif kind == "bad-param":
        h.body = _json(draw(params))
    elif kind == "bad-path":
        segment = draw(ODD_SEGMENT)
        tail = draw(st.sampled_from(["/status", "/status/start", "/status/stop",
                                     "/status/current", "/define", "/status/start/x",
                                     "/status/../../status/start", ""]))
        path = draw(st.sampled_from([f"/vm/{segment}{tail}", f"/vm/{name}/{segment}",
                                     f"/{segment}/vm/{name}/status", f"/task/{segment}/status",
                                     f"/vm/{name}/status/{segment}", segment,
                                     f"/vm/{name}{tail}/{segment}"]))
        method = draw(st.sampled_from(["GET", "PUT"]))
        if method == "GET" and path in (f"/vm/{name}/status/{segment}",):
            method = "PUT"  # GET of any action name reads the VM's status (200)
        h.body = _json({"method": method, "path": path, "data": {"force": True}})
        if _is_valid_path(h.body, fleet):
            h.body = _json({"method": "PUT", "path": f"/vm/{segment}x/status/start"})
    elif kind == "unknown-method":
        method = draw(ODD_METHOD)
        path = draw(st.sampled_from(["/vm/status", f"/vm/{name}/status",
                                     f"/vm/{name}/status/start", f"/vm/{name}/define",
                                     "/task/0-a2327793-2600-423d-9f07/status"]))
        h.body = _json({"method": method, "path": path})
    elif kind in ("no-user-id", "unknown-user", "forged-user-id", "odd-properties"):
        h.body = _json(draw(params) if kind == "odd-properties" else
                       {"method": "PUT", "path": f"/vm/{name}/status/start"})
        if kind == "no-user-id":
            h.user_id = None
            h.expect = "4xx"
        elif kind == "unknown-user":
            h.user = h.user_id = "vmd-api"  # a broker user vmd's [auth] does not know
        elif kind == "forged-user-id":
            h.user_id = "admin" if vm.user != "admin" else "alice"
            h.expect = "refused"
        else:
            h.headers = draw(ODD_HEADERS)
            h.content_type = draw(st.sampled_from([None, "text/plain", "application/x-pickle",
                                                   "", "application/json; charset=latin1"]))
            h.correlation_id = draw(st.text(max_size=100))
            h.message_id = draw(st.one_of(st.none(), st.text(min_size=1, max_size=80)))
            h.reply = draw(st.sampled_from(["direct", "own-queue"]))
    elif kind == "no-reply-to":
        h.reply = "none"
        if draw(st.booleans()):
            h.body = draw(NOT_JSON)
            h.expect = "dead"
            h.message_id = ""
        else:
            h.body = _json(draw(params))
            h.expect = "silent"
    else:
        other = next(u for u in ("alice", "bob", "admin") if u != h.user)
        h.reply = "vmd:" + draw(st.sampled_from(
            ["vmd.agent.reports", "vmd.agent.tasks.node1", "vmd.commands", "vmd.dead",
             f"{other}.inbox", h.user, f"{h.user}x.replies", "amq.rabbitmq.reply-tox"]))
        h.body = _json(draw(params))
        h.expect = "misdirected"
    return h


@st.composite
def bad_param(draw: st.DrawFn, fleet: tuple[VmInfo, ...]) -> dict[str, Any]:
    """A start/stop/reboot with at least one invalid parameter the action reads."""
    action = draw(st.sampled_from(sorted(ACTION_KEYS)))
    keys = ACTION_KEYS[action]
    hvm = [vm for vm in fleet if vm.brand in ("kvm", "bhyve")]
    key = draw(st.sampled_from(keys))
    vm = draw(st.sampled_from(hvm if key == "timeout" else fleet))
    if key == "timeout":
        value = draw(WRONG_TIMEOUT)
    elif key in ("cdimage", "cdimage2"):
        value = draw(WRONG_ISO)
    else:
        value = draw(WRONG_BOOL)
    data: dict[str, Any] = {key: value}
    if key == "cdimage2" and draw(st.booleans()):
        data["cdimage"] = None  # cdimage2 needs cdimage: an error either way
    for extra in draw(st.lists(st.sampled_from(keys), max_size=2, unique=True)):
        if extra != key:
            data.setdefault(extra, draw(st.one_of(st.booleans(), st.integers(0, 1))))
    for k, v in draw(NOISE).items():
        data.setdefault(k, v)
    name = vm.hostname if draw(st.booleans()) else vm.uuid
    return {"method": "PUT", "path": f"/vm/{name}/status/{action}", "data": data}


def _escaped(value: Any) -> bytes:
    """JSON text with every non-ASCII character escaped (`\\ud800` stays a lone surrogate)."""
    return json.dumps(value, ensure_ascii=True).encode("ascii")


@st.composite
def _with_odd_text(draw: st.DrawFn, odd: st.SearchStrategy[str], fleet: tuple[VmInfo, ...],
                   name: str) -> dict[str, Any]:
    """A request with `odd` text in one place: the method, a path segment, a data key, a
    string parameter, or deep inside a value; each must be a 4xx whatever the place."""
    text = draw(odd)
    where = draw(st.sampled_from(["method", "path-vm", "path-tail", "path-task", "data-key",
                                  "cdimage", "cdimage2", "nested", "order_by", "define"]))
    hvm = next(v for v in fleet if v.brand in ("kvm", "bhyve"))
    if where == "method":
        return {"method": draw(st.sampled_from([text, "GET" + text, text + "PUT"])),
                "path": "/vm/status"}
    if where == "path-vm":
        return {"method": draw(st.sampled_from(["GET", "PUT"])),
                "path": f"/vm/{name}{text}/status/start"}
    if where == "path-tail":
        return {"method": "PUT", "path": f"/vm/{name}/status/{text}"}
    if where == "path-task":
        return {"method": "GET", "path": f"/task/0-{text}/status"}
    if where == "data-key":
        return {"method": "PUT", "path": f"/vm/{hvm.uuid}/status/start",
                "data": {text: True, "cdimage": text}}
    if where in ("cdimage", "cdimage2"):
        data: dict[str, Any] = {"cdimage": "debian-12.iso" if where == "cdimage2" else text}
        if where == "cdimage2":
            data["cdimage2"] = text
        return {"method": "PUT", "path": f"/vm/{hvm.uuid}/status/start", "data": data}
    if where == "order_by":
        return {"method": "GET", "path": "/vm/status", "data": {"order_by": f"-{text}"}}
    if where == "define":
        # An owner's define is a 403 (admins only); the owner's own VM makes it reach the
        # check after decoding.
        return {"method": "PUT", "path": f"/vm/{name}/define",
                "data": {"alias": text, "customer_metadata": {text: [text]}}}
    return {"method": "PUT", "path": f"/vm/{hvm.uuid}/status/stop",
            "data": {"timeout": [{"x": text}], "force": {"y": [text]}}}


@st.composite
def _non_finite(draw: st.DrawFn, fleet: tuple[VmInfo, ...]) -> tuple[bytes, str]:
    """A body with a number that has no finite value, at a parameter or in an admin's
    `define` (a stored definition once crashed the store writer on `inf`)."""
    literal = draw(st.sampled_from(NON_FINITE))
    hvm = next(v for v in fleet if v.brand in ("kvm", "bhyve"))
    where = draw(st.sampled_from(["timeout", "force", "define", "define-deep", "top"]))
    path = hvm.uuid.encode()
    if where in ("timeout", "force"):
        return (b'{"method": "PUT", "path": "/vm/' + path + b'/status/stop", "data": {"'
                + where.encode() + b'": ' + literal + b"}}", hvm.user)
    if where == "define":
        return (b'{"method": "PUT", "path": "/vm/' + path + b'/define", "data": {"ram": '
                + literal + b"}}", "admin")
    if where == "define-deep":
        return (b'{"method": "PUT", "path": "/vm/' + path + b'/define", "data": '
                b'{"update_disks": [{"path": "/d", "size": ' + literal + b"}]}}", "admin")
    return (b'{"method": "GET", "path": "/vm/status", "x": ' + literal + b"}", hvm.user)


@st.composite
def _bad_order_by(draw: st.DrawFn) -> Any:
    """An `order_by` over the limits: a field repeated, more than the five fields, or
    thousands of items (each once re-sorted the whole list: seconds per request)."""
    how = draw(st.sampled_from(["repeat", "many", "huge-string", "huge-list"]))
    field_ = draw(st.sampled_from(SORT_FIELDS))
    if how == "repeat":
        return f"{field_},-{field_}"
    if how == "many":
        return ",".join([*SORT_FIELDS, draw(st.sampled_from(SORT_FIELDS))])
    items = [draw(st.sampled_from(SORT_FIELDS))] * draw(st.integers(6, 7000))
    return ",".join(items) if how == "huge-string" else items


# Who may forge agent traffic (docs/security.md): every role but the daemon. The node's own
# agent is trusted for its node's state (what a compromised agent can still do), so it only
# sends what it may not: orders, results of tasks it never had, dead-letters.
FORGERS = ("alice", "bob", "admin", "vmd-api", "vmd-agent-node2", "vmd-agent-node1")
_ORDERS = ("vmd.agent.orders", "task.node1")
_REPORTS = ("vmd.agent", "report")
_TASK_QUEUE = ("", "vmd.agent.tasks.node1")  # the default exchange, straight to the queue
FORGED = ("order", "order-direct", "sync", "observations", "result", "undelivered", "heartbeat")


@st.composite
def _forged_agent(draw: st.DrawFn, h: Hostile, fleet: tuple[VmInfo, ...]) -> None:
    """An agent-protocol message from a role that may not send it: the broker refuses it
    (no write permission on that exchange) or the daemon drops it (a report for a node the
    sender does not serve, a result for a task it never had, a dead-letter not made by the
    broker from the daemon's order); either way nothing changes and nothing crashes."""
    user = draw(st.sampled_from(FORGERS))
    vm = draw(st.sampled_from([v for v in fleet if v.node == "node1"]))
    action = draw(st.sampled_from(list(Action)))
    state = draw(st.sampled_from(["stopped", "running"]))
    forge(h, user, vm, draw(st.sampled_from(FORGED)), action, state)


def forge(h: Hostile, user: str, vm: VmInfo, what: str, action: Action, state: str) -> None:
    """Make `h` the forged agent message `what` (one of FORGED) from `user` about `vm`."""
    h.user = h.user_id = user
    h.reply = "none"
    node, now = NodeName("node1"), 1.7e9
    task = AgentTask(TaskId("0-deadbeef-0000-4000-8000"), VmUuid(vm.uuid), vm.hostname, node,
                     action, {}, now, now + 600)
    # Another owner, another name, another state: believed, it would move the VM.
    fake = Observation(VmUuid(vm.uuid), node, state, now * 2,
                       {"uuid": vm.uuid, "hostname": "stolen.example.com", "brand": vm.brand,
                        "alias": "stolen", "owner_uuid": "8a1a4e6c-0000-4000-8000-0000000000ff"})
    if user == "vmd-agent-node1" and what in ("sync", "observations", "heartbeat"):
        what = "result"  # its own node's state it may report (see above)
    message: Any
    if what.startswith("order"):
        message, (h.exchange, h.routing_key) = task, (
            _ORDERS if what == "order" else _TASK_QUEUE)
    elif what == "undelivered":
        # A task on the reports exchange with the broker's dead-letter header, forged.
        message, (h.exchange, h.routing_key) = task, _REPORTS
        h.headers = {"x-death": [{"queue": "vmd.agent.tasks.node1", "reason": "expired",
                                  "count": 1, "exchange": "vmd.agent.orders"}]}
    else:
        h.exchange, h.routing_key = _REPORTS
        message = {
            "sync": FullSync(node, now * 2, (fake,), ()),
            "observations": ObservationReport(node, now * 2, (fake,)),
            "heartbeat": Heartbeat(node, now * 2, 0.1, now),
            "result": TaskResult(task.task_id, task.uuid, node, task.action,
                                 TaskOutcome(OutcomeKind.SUCCESS, 0, "ok", "stopped", now * 2),
                                 now * 2),
        }[what]
    h.body = _json(to_json(message))
    may_write = (h.exchange, h.user.startswith("vmd-agent-")) == ("vmd.agent", True)
    h.expect = "silent" if may_write else "refused"
    h.kind = f"forged-agent:{what}"


def _not_json(raw: bytes) -> bool:
    try:
        json.loads(raw)
    except ValueError:
        return True
    return False


def _is_valid_path(body: bytes, fleet: tuple[VmInfo, ...]) -> bool:
    """A generated "bad path" that happens to address a real VM's status or action."""
    path = json.loads(body)["path"]
    names = {vm.hostname for vm in fleet} | {vm.uuid for vm in fleet}
    parts = [p for p in path.split("/") if p]
    return len(parts) >= 3 and parts[0] == "vm" and parts[1] in names and \
        parts[2] == "status" and len(parts) <= 4


def generate(fleet: list[VmInfo], n: int, *, seed_value: int = 20261127,
             per_example: int = 10) -> list[Hostile]:
    """`n` hostile requests drawn by hypothesis (reproducible with `seed_value`); each
    example is a batch of `per_example` (the engine's cost per example is then shared)."""
    out: list[Hostile] = []
    frozen = tuple(fleet)

    @seed(seed_value)
    @settings(max_examples=max(1, n // per_example), database=None, deadline=None,
              phases=[Phase.generate], suppress_health_check=list(HealthCheck))
    @given(st.lists(hostile(frozen, bad_param(frozen)), min_size=per_example,
                    max_size=per_example))
    def collect(batch: list[Hostile]) -> None:
        out.extend(batch)

    collect()
    # hypothesis may stop early once it has seen enough distinct examples: top up.
    rng = random.Random(seed_value)
    while len(out) < n:
        out.append(dataclasses.replace(rng.choice(out)))
    # Every forged kind at least once, whatever the draws gave (how many forged examples
    # hypothesis makes depends on the fleet's random uuids: a draw missed one now and then).
    node1 = next(vm for vm in fleet if vm.node == "node1")
    out = out[:n - len(FORGED)]
    for what in FORGED:
        out.append(h := Hostile(kind="forged-agent", body=b""))
        forge(h, "alice", node1, what, Action.START, "stopped")
    return out
