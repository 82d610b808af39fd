"""Fixtures shared by the edge tests: a served tiny model, and a small verified run for bundles."""

from __future__ import annotations

import pytest

from orin_unlearn.edge.device import keys
from orin_unlearn.edge.generator import Generator
from orin_unlearn.edge.server import create_app
from tests.edge.bundles import make_run
from tests.edge.test_server import MODEL, serving


@pytest.fixture
def no_installed_key(tmp_path, monkeypatch):
    """Tests decide the trusted key: none from the environment or this machine's /etc."""
    monkeypatch.delenv(keys.TRUST_ENV, raising=False)
    monkeypatch.setattr(keys, "INSTALLED_TRUST_KEY", tmp_path / "etc" / "trusted.pub")


@pytest.fixture
def run(tmp_path):
    """A run with two stages whose manifests verify (see tests/edge/bundles.py)."""
    return make_run(tmp_path)


@pytest.fixture(scope="module")
def generator(onnx_dir):
    return Generator.from_dir(onnx_dir)


@pytest.fixture(scope="module")
def url(generator):
    """The server over the tiny model, with a 64 KiB body limit, for one test module."""
    with serving(create_app(generator, MODEL, max_body=64 * 1024)) as base:
        yield base
