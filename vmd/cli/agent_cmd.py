"""`vmd agent -c FILE`: load the settings and run the node agent until SIGTERM.

Errors a user can cause are one line on stderr and an exit code: 2 for the configuration
(bad file, unusable SSH settings, an unusable state directory, a metrics address that
cannot be bound), 1 when the broker cannot be reached at start (after `[broker]
connect_attempts`; under systemd it waits for the broker by default, its attempts in the
unit's status line: vmd.bus.boot_attempts). A rejected SSH host key is found at the first
connection: the agent logs one line and exits 2 (docs/agent.md).
"""

from __future__ import annotations

import sys
from pathlib import Path

from vmd.bus import BusSettings, ConnectFailed
from vmd.cli.runtime import ExitCode, run_until_signalled, tune_gc
from vmd.config import ConfigError, load
from vmd.node_agent.agent import Agent, Shutdown
from vmd.node_agent.driver.backend import open_backend
from vmd.node_agent.driver.errors import SshConfigError
from vmd.node_agent.journal import JournalError
from vmd.obs import systemd
from vmd.obs.logging import configure_logging, get_logger, stderr_text
from vmd.obs.metrics import AgentMetrics
from vmd.obs.metrics_http import MetricsServeError, serve_metrics

log = get_logger("vmd.cli.agent")
# After a broker outage every agent reconnects at once: each waits a random 0..3 s first.
RECONNECT_SPREAD = 3.0


def _fail(text: str, code: int) -> int:
    print(stderr_text(f"vmd agent: {text}"), file=sys.stderr)
    return code


def run(config: Path) -> int:
    try:
        settings = load(config, sections=("broker", "agent"))
    except ConfigError as exc:
        return _fail(str(exc), ExitCode.CONFIG)
    assert settings.agent is not None and settings.broker is not None
    agent_settings = settings.agent
    configure_logging(settings.log.level, settings.log.format)
    tune_gc()
    notify = systemd.Notifier()  # the process's one: the bus's first connect and the agent
    try:
        bus_settings = BusSettings.for_service(
            settings.broker.url, settings.broker.connect_attempts,
            connection_name=f"vmd-agent:{agent_settings.node}",
            on_connect_retry=notify.waiting_for_broker,
            retry_delay=0.25,
            retry_delay_max=5.0,
            reconnect_spread=RECONNECT_SPREAD,
        )
        opened = open_backend(agent_settings)
    except (ValueError, SshConfigError) as exc:
        return _fail(f"{config}: {exc}", ExitCode.CONFIG)
    metrics = AgentMetrics()
    try:
        server = serve_metrics(metrics.registry, agent_settings.metrics)
    except MetricsServeError as exc:
        return _fail(f"{config}: [agent] {exc}", ExitCode.CONFIG)
    log.info("metrics served", url=server.url)
    agent = Agent(agent_settings, bus_settings, opened=opened, metrics=metrics, notify=notify)
    try:
        return run_until_signalled(
            lambda stop, hurry: _main(agent, Shutdown(requested=stop, hurry=hurry)))
    finally:
        server.close()


async def _main(agent: Agent, shutdown: Shutdown) -> int:
    # The signal handlers (vmd.cli.runtime) only set the flags; the agent's runner performs
    # the shutdown steps.
    try:
        return await agent.run(shutdown)
    except JournalError as exc:
        return _fail(f"[agent] state_dir: {exc}", ExitCode.CONFIG)
    except ConnectFailed as exc:
        return _fail(str(exc), ExitCode.FAILED)
