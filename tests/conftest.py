"""Shared fixtures: the demo world and the shipped tiny base model (no downloads)."""

from __future__ import annotations

import pytest

from orin_unlearn.benchmarks.world import build_prompts, load_catalogue, tiny_base_dir


@pytest.fixture(scope="session")
def catalogue():
    return load_catalogue()


@pytest.fixture(scope="session")
def prompts(catalogue):
    return build_prompts(catalogue)


@pytest.fixture(scope="session")
def base_dir():
    return tiny_base_dir()
