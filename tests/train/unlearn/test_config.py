"""The unlearning config: shipped files, bad keys and values named, a method's nested settings
(`lunar: {...}`, `lunar.steps=60`), the flat keys they replaced, and the loss terms it names."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from orin_unlearn.edge.config import load_config
from orin_unlearn.edge.errors import ConfigError
from orin_unlearn.train.unlearn import config, methods
from orin_unlearn.train.unlearn.config import LunarConfig, UnlearnConfig

CONFIGS = Path(__file__).resolve().parents[3] / "train" / "configs"


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_load(path):
    cfg = load_config(UnlearnConfig, path)  # as the demo loads it
    assert cfg.method in methods.METHODS
    assert cfg.concept and cfg.steps > 0  # the file's values were read, not just the defaults
    assert config.load(path) == cfg  # as the CLI loads it


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


def write(tmp_path, text: str) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_methods_settings_are_a_nested_mapping(tmp_path):
    path = write(tmp_path, "method: lunar\nlunar:\n  layer: 1\n  coefficient: 2\n  positions: last:3\n")
    cfg = load_config(UnlearnConfig, path)
    assert cfg.lunar == LunarConfig(layer=1, coefficient=2.0, positions="last:3")
    assert isinstance(cfg.lunar.coefficient, float)
    # a dotted override sets one entry; the file's other entries stay
    cfg = config.load(path, ["lunar.steps=7", "lunar.masked=false"])
    assert cfg.lunar == LunarConfig(layer=1, coefficient=2.0, positions="last:3", steps=7, masked=False)
    assert not cfg.masked
    assert config.load(None, ["lunar.lr=0.5"]).lunar == LunarConfig(lr=0.5)  # no file: the defaults
    # what a manifest records builds the same config again
    assert cfg.to_dict()["lunar"]["steps"] == 7 and UnlearnConfig(**cfg.to_dict()) == cfg
    assert dataclasses.replace(cfg, seed=3).lunar == cfg.lunar


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["lunar.layr=1"], "config key 'lunar.layr': unknown"),
        (["lunar.steps=ten"], "config key 'lunar.steps': expected int, got 'ten'"),
        (["lunar.steps=1.5"], "config key 'lunar.steps': expected int"),
        (["lunar.masked=1"], "config key 'lunar.masked': expected bool, got 1"),
        (["lunar.coefficient=true"], "config key 'lunar.coefficient': expected float"),
        (["lunar.coefficient=-1"], "config key 'lunar.coefficient': value -1.0 must be > 0"),
        (["lunar.positions=first"], "config key 'lunar.positions': value 'first' must be"),
        (["lunar=5"], "config key 'lunar'"),
        (["lunar={layer: 1, lr: x}"], "config key 'lunar.lr': expected float, got 'x'"),
    ],
)
def test_bad_nested_settings_name_the_dotted_key(overrides, message):
    with pytest.raises(ConfigError) as raised:
        config.load(None, ["method=lunar", *overrides])
    assert message in str(raised.value)


def test_bad_nested_settings_in_a_file_name_the_dotted_key(tmp_path):
    with pytest.raises(ConfigError, match="config key 'lunar.layr': unknown"):
        load_config(UnlearnConfig, write(tmp_path, "lunar:\n  layr: 1\n"))
    with pytest.raises(ConfigError, match="config key 'lunar.layer': value -5 must be"):
        config.load(write(tmp_path, "lunar: {layer: -5}\n"))
    with pytest.raises(ConfigError, match="config key 'lunar.steps': value -1 must be"):
        UnlearnConfig(lunar=LunarConfig(steps=-1))  # built in code, checked the same way


@pytest.mark.parametrize("old", sorted(config.RENAMED))
def test_flat_keys_of_earlier_versions_name_their_new_place(old, tmp_path):
    new = "lunar." + old.removeprefix("lunar_")
    with pytest.raises(ConfigError, match=f"config key '{old}' is now '{new}'"):
        config.load(None, [f"{old}=1"])
    with pytest.raises(ConfigError, match=f"config key '{old}' is now '{new}'"):
        config.load(write(tmp_path, f"method: lunar\n{old}: 1\n"))
    with pytest.raises(ConfigError, match=old):  # edge's loader: an unknown key, named
        load_config(UnlearnConfig, None, [f"{old}=1"])


def test_the_config_names_registered_loss_terms():
    assert UnlearnConfig().losses == ["forget_ce", "retain_kl", "activation", "forget_npo", "forget_undial"]
    assert config.load(None, ["losses=[forget_ce]", "kl_weight=0", "act_weight=0"]).losses == ["forget_ce"]
    with pytest.raises(ConfigError, match="config key 'losses': value \\['forget_ce', 'forget_mse'\\]"):
        config.load(None, ["losses=[forget_ce, forget_mse]"])
    with pytest.raises(ConfigError, match="config key 'losses'"):
        config.load(None, ["losses=[]"])
    # a term with a weight > 0 that the list leaves out would silently not train
    with pytest.raises(ConfigError, match=r"naming \['forget_npo'\]"):
        config.load(None, ["losses=[forget_ce, retain_kl, activation]", "npo_weight=0.5"])
