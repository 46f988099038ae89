"""Operational plumbing shared by `vmd daemon` and `vmd agent`: logs, metrics, systemd.

Both processes need the same three things from their surroundings, and none of them is
about VMs: structured logs that journald and `jq` can read (`vmd.obs.logging`), Prometheus
metrics with bounded cardinality served off the event loop (`vmd.obs.metrics`), and the
systemd notify protocol with a watchdog fed from the event loop (`vmd.obs.systemd`).
Keeping them here, below the processes and beside the bus, lets the daemon and the agent
share one definition of each; this package imports neither the broker nor SSH libraries.
"""
