"""`vmd api` as a process: start in order, serve, and stop in the reverse order on SIGTERM.

Start: connect to the broker; check that the broker lets the gateway's user publish on
behalf of the configured principals (the `impersonator` tag: without it every request of
another principal would be refused, and each refusal costs the connection, so the gateway
refuses to start instead); listen; serve metrics; tell systemd READY.

Stop (docs/architecture.md rule 4, docs/api.md): stop accepting connections; end open streams
at once with their task's current state; let plain requests in flight finish up to
`drain_timeout`, then cancel what is left; close the broker connection last, since the
requests in flight need it for their answers.

Running: the watchdog and the loop-lag sampler are the gateway's long-lived tasks, declared
in `ApiService.__init__` on its `vmd.obs.tasks.Supervisor`; a crash of either, or the broker
link failing for good (the forwarder reports it there), is logged once and stops the
gateway in the same order as SIGTERM, exit 1.
"""

from __future__ import annotations

import asyncio
import functools
import os
import socket

from aiohttp import web

from vmd.api.auth import KeyRing
from vmd.api.forward import Forwarder, is_impersonation_refusal
from vmd.api.gateway import STREAM_LIMIT, Gateway
from vmd.api.metrics import ApiMetrics
from vmd.api.stream import Offsets
from vmd.api.translate import keepalive_offsets
from vmd.bus import (
    COMMANDS_EXCHANGE,
    Bus,
    BusClient,
    BusError,
    BusFailed,
    BusSettings,
    Outgoing,
    PublishRefused,
    unless_stopped,
)
from vmd.config import ApiSettings
from vmd.obs import systemd
from vmd.obs.logging import get_logger
from vmd.obs.looplag import monitor_loop_lag
from vmd.obs.metrics_http import MetricsServeError, MetricsServer, serve_metrics, split_address
from vmd.obs.systemd import ExitCode
from vmd.obs.tasks import Supervisor

log = get_logger("vmd.api")

# A routing key nothing is bound to: the probe message is dropped by the broker after it
# checked `user_id` (it checks before routing).
PROBE_ROUTING_KEY = "vmd-api.impersonation-check"


class StartError(Exception):
    """The gateway cannot start: one line for the operator, and the exit status."""

    def __init__(self, message: str, exit_code: ExitCode = ExitCode.CONFIG) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def bus_settings_for(settings: ApiSettings, notify: systemd.Notifier) -> BusSettings:
    """The gateway's bus link; the first connect's retries are reported through `notify`,
    the process's one Notifier."""
    return BusSettings.for_service(
        settings.broker_url, settings.connect_attempts,
        connection_name=f"vmd-api@{socket.gethostname()}:{os.getpid()}",
        on_connect_retry=notify.waiting_for_broker)


async def check_impersonation(bus: BusSettings, principals: frozenset[str]) -> str | None:
    """Why the broker will refuse `user_id` = one of `principals`, or None if it will not
    (or cannot be asked: then the first request tells). Uses its own short connection."""
    others = sorted(p for p in principals if p != bus.user)
    if not others:
        return None
    probe = Bus(BusSettings(bus.url, connection_name=f"{bus.connection_name} (check)",
                            connect_attempts=bus.connect_attempts or 3,
                            connect_timeout=bus.connect_timeout,
                            publish_timeout=bus.publish_timeout))
    try:
        await probe.start()
        await probe.publish(Outgoing(COMMANDS_EXCHANGE, PROBE_ROUTING_KEY, b"{}",
                                     mandatory=False, persistent=False, user_id=others[0]))
    except PublishRefused as exc:
        if is_impersonation_refusal(exc):
            return (f"the broker refuses to let user {bus.user!r} publish on behalf of "
                    f"{others[0]!r}: give the gateway's own broker user (and no other) the "
                    f"impersonator tag: rabbitmqctl set_user_tags {bus.user} impersonator "
                    "(docs/api.md)")
        log.warning("impersonation check inconclusive", error=str(exc))
    except BusError as exc:
        log.warning("impersonation check inconclusive", error=str(exc))
    finally:
        await probe.close()
    return None


class ApiService:
    """The gateway's parts and their order; `start()` then `stop()` (tests drive it too).

    `bus` overrides the broker settings derived from `settings.broker_url`; metrics are
    served only when `serve_metrics_on` is given; `offsets` and `stream_limit` set a
    stream's keep-alive schedule and time limit (tests run them faster);
    `check_impersonation=False` skips the start-up check (to test the per-request refusal).
    `tasks` holds the process's long-lived tasks (`run` starts them) and its crashes: the
    forwarder reports the broker link failing for good there.
    """

    def __init__(
        self,
        settings: ApiSettings,
        *,
        bus: BusSettings | None = None,
        metrics: ApiMetrics | None = None,
        serve_metrics_on: str | None = None,
        offsets: Offsets = keepalive_offsets,
        stream_limit: float = STREAM_LIMIT,
        check_impersonation: bool = True,
    ) -> None:
        self.settings = settings
        self.check = check_impersonation
        self.tasks = Supervisor("vmd api", {BusFailed: ExitCode.FAILED})
        self.bus = bus if bus is not None else bus_settings_for(settings, self.tasks.notify)
        self.metrics = metrics if metrics is not None else ApiMetrics()
        self.metrics_address = serve_metrics_on
        self.client = BusClient(self.bus)
        self.tasks.declare("watchdog", systemd.watchdog_loop)
        self.tasks.declare("loop-lag", lambda: monitor_loop_lag(
            observe=self.metrics.loop_lag.observe))
        self.forwarder = Forwarder(self.client, timeout=settings.timeout,
                                   final_timeout=stream_limit + settings.timeout,
                                   on_fatal=functools.partial(self.tasks.fail, "forwarder"))
        self.gateway = Gateway(self.forwarder, KeyRing(settings.keys), prefix=settings.prefix,
                               metrics=self.metrics, offsets=offsets, stream_limit=stream_limit,
                               max_streams_per_key=settings.max_streams_per_key)
        self._runner: web.AppRunner | None = None
        self._metrics_server: MetricsServer | None = None
        self.port = 0

    @property
    def url(self) -> str:
        host, _ = split_address(self.settings.listen)
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}{self.settings.prefix}"

    async def start(self) -> None:
        """Broker, impersonation check, HTTP listener, metrics. Raises StartError."""
        try:
            await self.client.start()
        except BusError as exc:
            # A refused login, an unknown vhost or a refused setup stays refused: exit 2.
            # Anything else (the broker is down or still booting): 1, systemd retries.
            refused = str(exc).startswith("the broker refused")
            raise StartError(str(exc), ExitCode.CONFIG if refused else ExitCode.FAILED) from None
        self.metrics.set_reconnects_source(lambda: self.client.reconnects)
        try:
            if self.check:
                principals = KeyRing(self.settings.keys).principals
                problem = await check_impersonation(self.bus, principals)
                if problem is not None:
                    raise StartError(problem)
            await self._listen()
            if self.metrics_address is not None:
                try:
                    self._metrics_server = serve_metrics(self.metrics.registry,
                                                         self.metrics_address)
                except MetricsServeError as exc:
                    raise StartError(str(exc)) from None
        except BaseException:
            await self.stop()
            raise
        if not self.settings.keys:
            log.warning("no API keys configured: every request will be refused (403)")
        log.info("serving", url=self.url, keys=len(self.settings.keys),
                 broker=self.bus.redacted_url, user=self.client.user)

    async def _listen(self) -> None:
        host, port = split_address(self.settings.listen)
        # The gateway logs each request itself (vmd.api.gateway): no aiohttp access log.
        runner = web.AppRunner(self.gateway.application(), access_log=None,
                               shutdown_timeout=self.settings.drain_timeout)
        await runner.setup()
        self._runner = runner
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as exc:
            raise StartError(f"cannot listen on {self.settings.listen}: "
                             f"{exc.strerror or exc}") from None
        self.port = port or _bound_port(runner)

    async def stop(self) -> None:
        """Graceful: stop listening, cut streams, drain requests, then close the broker."""
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()
        if self._metrics_server is not None:
            server, self._metrics_server = self._metrics_server, None
            await asyncio.to_thread(server.close)
        await self.client.close()


def _bound_port(runner: web.AppRunner) -> int:
    for address in runner.addresses:
        return int(address[1])
    raise AssertionError("no listening socket")


async def run(settings: ApiSettings, stop: asyncio.Event) -> int:
    """`vmd api`: serve until `stop` (SIGTERM/SIGINT: vmd.cli.runtime) or a crash (the
    broker link failed for good, a task's bug: logged once by `service.tasks`); the exit
    status (StartError propagates)."""
    service = ApiService(settings, serve_metrics_on=settings.metrics)
    tasks = service.tasks
    # SIGTERM ends a wait for the broker (unbounded under systemd) at once.
    if not await unless_stopped(service.start(), stop):
        await service.stop()
        log.info("stopped while waiting for the broker")
        return ExitCode.OK
    tasks.notify.ready(f"serving {service.url}/")
    tasks.start("watchdog", "loop-lag")
    crash = None
    try:
        crash = await tasks.until_stopped(stop)
    finally:
        tasks.notify.stopping(f"draining (up to {settings.drain_timeout:g}s)")
        log.info("stopping", streams=service.gateway.streams)
        await service.stop()
        # The watchdog pings through the drain (docs/shutdown.md): stopped last.
        await tasks.stop()
        log.info("stopped")
    return ExitCode.OK if crash is None else crash.code
