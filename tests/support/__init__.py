"""Test helpers shared by the suites (importable as `support.*` thanks to tests/conftest.py)."""
