"""Fixtures of the fault suite: where scenarios run, and their figures shown with the result.

The short version of every scenario runs with the rest of the tests (`scripts/test`, CI);
`pytest tests/reliability` runs it alone. Run while others test on this machine with your own
vhost: `VMD_TEST_VHOST=vmd-rel-dev` (the broker-restart scenario still restarts the whole
broker). The long version of every scenario is `scripts/reliability`
(tests/reliability/run_long.py, docs/reliability.md).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from .scenarios import Env, Figures


@pytest.fixture
def rel_env(tmp_path: Path, amqp_vhost: str, amqp_url_for: Callable[[str], str]) -> Env:
    return Env(amqp_vhost, tmp_path, amqp_url_for)


def report(figures: Figures) -> None:
    """The scenario's figures on stdout (pytest shows them with a failure, or with -s)."""
    report_json(figures.summary())


def report_json(summary: dict[str, Any]) -> None:
    print(json.dumps(summary, sort_keys=False))
