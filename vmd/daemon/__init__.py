"""The controller: intake, one decision step per input, ordered commits, deadlines, reconcile.

Module map (docs/daemon.md explains the design):

| module | concern |
|---|---|
| `runner.py` | lifecycle: start-up order, long-lived tasks, the shutdown drain, exit codes |
| `intake.py` | requests: parse, principal, idempotency, stream subscribers, 503 while draining |
| `requests.py` | a request's wire rules: allowed `reply_to`, the 400 reasons, `stream`, kind |
| `reports.py` | agent reports: results, observations, full syncs, heartbeats, ISO lists |
| `core.py` | the decision step's bookkeeping: a `Decision`'s effects into the current turn |
| `commit.py` | the commit pipeline: one store write per turn, then events, tasks, replies, acks |
| `turn.py` | what one turn holds: rows, events, orders, answers, settlements |
| `outbox.py` | a turn's outbox rows (stored with its state) and their replay at start-up |
| `nodes.py` | node health (heartbeats, unreachable, maintenance) and `node.<node>.status` events |
| `deadlines.py` | task deadlines (a heap and its timer) |
| `reconcile.py` | periodic full syncs, purge of old tasks and idempotency keys |
| `auth.py` | AMQP users → principals (`[auth]`) |
| `options.py` | run-time knobs that are not settings: the clock, loop periods |
"""

from vmd.daemon.options import Options
from vmd.daemon.runner import Daemon, StartupError, serve

__all__ = ["Daemon", "Options", "StartupError", "serve"]
