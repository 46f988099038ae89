"""The controller: intake, one serial worker per VM, task deadlines, reconcile."""
