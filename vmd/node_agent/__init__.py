"""The node agent: takes its node's tasks from the bus, runs them, reports what happens.

Two layers, imports pointing down only (import-linter contract `agent-driver`):

- the agent (this package's modules) speaks to the daemon through `vmd.bus`: `agent.py`
  (the runner, start and shutdown order), `tasks.py` (intake, dedupe, journal, ack, run,
  report), `scheduler.py` (one task per VM, parallel VMs), `execute.py` (one task's vmadm
  calls and its deadline), `outcomes.py` (outcomes when vmadm gave none), `journal.py` (the
  durable journal of started tasks: the agent's half of "never run twice", about tasks and
  acks, not about the node), `sync.py` (full syncs, heartbeats, ISO lists) and `reporter.py`
  (everything sent to the daemon, in order, confirmed);
- the driver (`driver/`) drives the node and knows nothing of the bus or of tasks: vmadm,
  the local and SSH runners, argv, validation, classification, events and the watch, behind
  the `Backend` protocol (`driver/__init__.py` says what it promises).
"""
