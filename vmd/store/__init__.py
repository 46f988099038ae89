"""Durable state in SQLite: VMs, nodes, tasks and idempotency keys."""
