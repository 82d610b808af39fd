"""Fixtures for the Jetson tests: a simulated Orin Nano Super on JetPack 6.2 (see simulated.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.jetson.simulated import make_root


@pytest.fixture
def jetson_root(tmp_path: Path) -> Path:
    """An Orin Nano Super developer kit on JetPack 6.2."""
    return make_root(tmp_path / "root")
