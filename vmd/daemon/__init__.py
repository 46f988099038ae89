"""The controller: intake, one decision step per input, ordered commits, deadlines, reconcile.

Every input (a request, an agent report, a deadline tick, a node-health check, a
housekeeping tick) goes through one synchronous step that calls `vmd.fsm` and returns one
`Effects` value; `Pipeline.submit` is the only way into the commit pipeline's turn
(docs/architecture.md, "Inside the daemon").

Module map (docs/daemon.md explains the design):

| module | concern |
|---|---|
| `runner.py` | lifecycle: start-up order, long-lived tasks, the shutdown drain, exit codes |
| `intake.py` | requests: decode, principal, idempotency, one step, submit; 503 while draining |
| `requests.py` | a request's wire rules: allowed `reply_to`, the 400 reasons, `stream`, kind |
| `memo.py` | answers of requests without `message_id`, for their redelivery |
| `streams.py` | stream mode's subscribers per pending task (bounded, stored with its row) |
| `reports.py` | agent reports: results, observations, full syncs, heartbeats, ISO lists |
| `core.py` | a `Decision`'s effects (`Core.effects`), pending tasks, ended tasks |
| `idempotency.py` | idempotency records in memory: hot, cold, bounded per principal |
| `ended.py` | ended tasks kept in memory for a while (bounded), then left to the store |
| `effects.py` | what one step returns: `Effects` (rows, events, orders, answers, settlements) |
| `commit.py` | the commit pipeline: `submit`, one store write per turn, then publish and acks |
| `turn.py` | what one turn holds: the effects submitted since the previous turn |
| `outbox.py` | a turn's outbox rows (stored with its state) and their replay at start-up |
| `nodes.py` | node-health inputs to `vmd.fsm.nodes`, their effects (`node.<node>.status`) |
| `deadlines.py` | task deadlines (a heap and its timer) |
| `reconcile.py` | periodic full syncs, purge of old tasks and idempotency keys |
| `auth.py` | AMQP users → principals (`[auth]`) |
| `options.py` | run-time knobs that are not settings: the clock, loop periods |
"""

from vmd.daemon.options import Options
from vmd.daemon.runner import Daemon, StartupError, serve

__all__ = ["Daemon", "Options", "StartupError", "serve"]
