"""Fixtures for the store tests: a store file in a temp dir."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from vmd.store import Store


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "vmd.sqlite3"


@pytest.fixture
def store(path: Path) -> Iterator[Store]:
    with Store.open(path) as opened:
        yield opened
