from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from orin_unlearn.edge.config import load_config
from orin_unlearn.edge.errors import ConfigError


@dataclass
class Demo:
    lr: float = 1e-3
    steps: int = 10
    name: str = "x"
    layers: list[int] = field(default_factory=list)
    target: str | None = None
    fast: bool = False


def test_yaml_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("lr: 0.01\nsteps: 5\nlayers: [1, 2]\n")
    cfg = load_config(Demo, path, ["steps=7", "target=refuse", "fast=true"])
    assert cfg == Demo(lr=0.01, steps=7, layers=[1, 2], target="refuse", fast=True)


def test_int_is_accepted_for_float():
    assert load_config(Demo, None, ["lr=1"]).lr == 1.0


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("lerning_rate=1", "lerning_rate"),
        ("steps=abc", "steps"),
        ("layers=3", "layers"),
        ("fast=1", "fast"),
        ("steps", "steps"),
    ],
)
def test_errors_name_the_key(override, named):
    with pytest.raises(ConfigError, match=named):
        load_config(Demo, None, [override])


def test_non_mapping_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(Demo, path)
