"""The fault scenarios of docs/reliability.md, short versions (the long run repeats them more).

Each test runs a whole cloud (real daemon, real agents, simulated nodes) under a load of
requests and node changes, injects its fault (faults.SPECS), and asserts the invariants:
every request answered, nothing executed twice, no status change lost, no VM stuck past its
deadline, vmd equal to every node within the reconcile bound.
"""

from __future__ import annotations

import pytest

from .conftest import report
from .faults import run_spec
from .scenarios import Env, Scale

pytestmark = pytest.mark.slow

SHORT = Scale(repeats=2, gap=2.5)


async def test_broker_connections_cut_under_load(rel_env: Env) -> None:
    figures = await run_spec(rel_env, "broker-cut", SHORT)
    report(figures)
    figures.assert_ok()
    assert figures.extra["cuts"] == 2
    assert figures.answers.retried > 0  # requests lost with their connection were sent again


async def test_broker_closed_and_restarted_under_load(rel_env: Env) -> None:
    # close_all_connections (this vhost only), then stop_app/start_app (the whole broker:
    # kept to one restart here; the long run repeats it).
    figures = await run_spec(rel_env, "broker-restart", SHORT)
    report(figures)
    figures.assert_ok()
    assert figures.extra["closed_all"] == 1 and figures.extra["broker_restarts"] == 1


async def test_daemon_sigkill_under_load(rel_env: Env) -> None:
    figures = await run_spec(rel_env, "daemon-kill", SHORT)
    report(figures)
    figures.assert_ok()
    assert figures.extra["daemon_kills"] == 2


async def test_agent_sigkill_while_tasks_run(rel_env: Env) -> None:
    figures = await run_spec(rel_env, "agent-kill", SHORT)
    report(figures)
    figures.assert_ok()
    assert figures.extra["agent_kills"] == 2


async def test_stalled_and_slow_vmadm(rel_env: Env) -> None:
    figures = await run_spec(rel_env, "vmadm-hang", Scale(repeats=1, gap=2.0))
    report(figures)
    figures.assert_ok()
    # The hung stop ends at its deadline (failed or revoked), the slow one succeeds.
    assert figures.extra["hung_stop_final"] in ([400], [410])
    assert figures.extra["slow_stop_final"] == [200]


async def test_lost_node_events(rel_env: Env) -> None:
    figures = await run_spec(rel_env, "lost-events", SHORT)
    report(figures)
    figures.assert_ok()
    assert figures.extra["streams_killed"] == 4
