"""The pure core: VM statuses, the transition table and the decision procedure of vm-status.md. No I/O, no await."""
