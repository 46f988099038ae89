"""Operational plumbing shared by `vmd daemon`, `vmd agent` and `vmd api`: logs, metrics,
systemd, and the guarded long-lived tasks.

The three processes need the same things from their surroundings, and none of them is
about VMs: structured logs that journald and `jq` can read (`vmd.obs.logging`), Prometheus
metrics with bounded cardinality served off the event loop (`vmd.obs.metrics`), the
systemd notify protocol with a watchdog fed from the event loop (`vmd.obs.systemd`), and
one runner of their named long-lived tasks that turns the first crash into one logged
reason and an exit code (`vmd.obs.tasks`). Keeping them here, below the processes and
beside the bus, lets the three share one definition of each; this package imports neither
the broker nor SSH libraries.
"""
