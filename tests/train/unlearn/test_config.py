from __future__ import annotations

from pathlib import Path

import pytest

from orin_unlearn.edge.config import load_config
from orin_unlearn.edge.errors import ConfigError
from orin_unlearn.train.unlearn.config import METHODS, UnlearnConfig

CONFIGS = Path(__file__).resolve().parents[3] / "train" / "configs"


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_load(path):
    cfg = load_config(UnlearnConfig, path)
    assert cfg.method in METHODS
    assert cfg.concept and cfg.steps > 0  # the file's values were read, not just the defaults


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("tpo_k=3", "tpo_k"),
        ("top_k=0", "top_k"),
        ("method=magic", "method"),
        ("lr=-1", "lr"),
        ("target=forget", "target"),
        ("mass_fraction=2", "mass_fraction"),
        ("steps=ten", "steps"),
    ],
)
def test_bad_keys_and_values_name_the_key(override, named):
    with pytest.raises(ConfigError, match=named):
        load_config(UnlearnConfig, None, [override])
