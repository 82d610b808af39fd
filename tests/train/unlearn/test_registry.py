"""The method and loss-term registries: one file per entry, discovered; a method registered in a
test runs through the recipe on the shipped tiny base, and the config, CLI, sweep and comparison
take it; a registered loss term named in a config joins the training loss. Every registration
here is undone at the end of its test."""

from __future__ import annotations

import contextlib
import pkgutil
import sys

import pytest
import torch

from orin_unlearn.edge.errors import ConfigError
from orin_unlearn.edge.formats import read_manifest
from orin_unlearn.edge.progress import progress_bar
from orin_unlearn.train.unlearn import (
    compare,
    config,
    losses,
    masked_lora,
    methods,
    recipe,
    sweep,
    train_loop,
)
from orin_unlearn.train.unlearn.config import UnlearnConfig
from orin_unlearn.train.unlearn.methods import Trained
from orin_unlearn.train.unlearn.methods import masked_lora as masked_lora_method
from tests.models import assert_vanilla_reload_matches

# the recipe, cheaply: 16 probe prompts, 8 held-out neighbour / retain prompts, short replies
SMALL = [
    "device=cpu",
    "probe_max_prompts=16",
    "retain_examples=32",
    "eval_max_prompts=8",
    "eval_max_new_tokens=16",
]
TOY_FILE = """
from orin_unlearn.train.unlearn.methods import Trained, method


@method("toy_file", label="toy from a file", supports=("npo_weight",))
def train(s, mask, stats, score, progress):
    return Trained(s.model, [], mask)
"""


@contextlib.contextmanager
def registered_method(name: str, fn, **kwargs):
    methods.method(name, **kwargs)(fn)
    try:
        yield methods.METHODS[name]
    finally:
        methods.METHODS.pop(name)


@contextlib.contextmanager
def registered_loss(name: str, fn):
    losses.loss_term(name)(fn)
    try:
        yield
    finally:
        losses.LOSSES.pop(name)


def test_each_module_of_a_registry_package_is_one_entry():
    def modules(package) -> list[str]:
        return sorted(info.name for info in pkgutil.iter_modules(package.__path__))

    assert modules(methods) == sorted(m.train.__module__.rsplit(".", 1)[1] for m in methods.METHODS.values())
    assert modules(methods) == sorted(methods.METHODS)
    assert modules(losses) == sorted(fn.__module__.rsplit(".", 1)[1] for fn in losses.LOSSES.values())
    assert modules(losses) == sorted(losses.LOSSES)


def test_a_new_file_in_the_methods_package_is_a_new_method(tmp_path, monkeypatch, capsys):
    (tmp_path / "toy_file.py").write_text(TOY_FILE, encoding="utf-8")
    monkeypatch.setattr(methods, "__path__", [*methods.__path__, str(tmp_path)])
    try:
        methods._import_methods()  # what importing the package does
        toy = methods.METHODS["toy_file"]
        assert (toy.label, toy.adapter, toy.supports) == ("toy from a file", True, {"npo_weight"})
        # the config takes it, with the options it supports and no others
        assert config.load(None, ["method=toy_file", "npo_weight=0.5"]).method == "toy_file"
        assert not UnlearnConfig(method="toy_file").masked
        with pytest.raises(
            ConfigError, match="config key 'meta_every': value 2 must be 0 with method 'toy_file'"
        ):
            config.load(None, ["method=toy_file", "meta_every=2"])
        # the sweep and the comparison take it; the CLI lists it
        trained = []
        monkeypatch.setattr(
            sweep,
            "run_point",
            lambda c, r: trained.append(c.method) or {"method": c.method, "retain_examples": 16},
        )
        monkeypatch.setattr(sweep, "table", lambda rows: rows)
        sweep.sweep(UnlearnConfig(), tmp_path / "sweep", methods=("masked_lora", "toy_file"), budgets=(16,))
        assert trained == ["masked_lora", "toy_file"]
        result = {
            "after": {"forget": {"leak": 0.0}},
            "before": {},
            "parameters": {"effective": 1},
            "wall_s": 1.0,
            "after_training": {},
        }
        compared = []
        monkeypatch.setattr(compare, "run_unlearning", lambda c, *a, **k: compared.append(c.method) or result)
        assert list(compare.compare(UnlearnConfig(), tmp_path / "cmp", masked=result)) == [
            "masked_lora",
            *compared,
        ]
        assert compared == [m for m in methods.METHODS if m != "masked_lora"] and "toy_file" in compared
        from orin_unlearn.train.unlearn_cli import main

        with pytest.raises(SystemExit):
            main(["--help"])
        assert "toy_file" in capsys.readouterr().out
    finally:
        methods.METHODS.pop("toy_file", None)
        sys.modules.pop(f"{methods.__name__}.toy_file", None)
    with pytest.raises(ConfigError, match="config key 'method': value 'toy_file' must be one of"):
        UnlearnConfig(method="toy_file")
    with pytest.raises(ValueError, match=r"unknown methods \['toy_file'\]"):
        sweep.sweep(UnlearnConfig(), tmp_path / "sweep2", methods=("toy_file",))


@pytest.mark.slow
def test_a_registered_method_runs_through_the_recipe(tmp_path):
    calls = []

    def untrained(s, mask, stats, score, progress) -> Trained:
        """No step at all: a fresh LoRA (lora_B = 0) computes exactly the base's function."""
        calls.append((s.cfg.method, sorted(mask), "forget.neuron_mean" in stats, "saliency" in score))
        model = masked_lora.add_lora(s.model, mask, s.cfg.rank, s.cfg.alpha, masked=False)
        return Trained(model, [{"toy": 0.0}], mask, {"toy": {"layers": sorted(mask)}})

    with registered_method("toy", untrained, label="toy"):
        cfg = config.load(None, ["method=toy", *SMALL])
        r = recipe.run_unlearning(cfg, tmp_path)
        assert read_manifest(tmp_path / "adapter")["config"]["method"] == "toy"
    assert "toy" not in methods.METHODS
    assert calls == [("toy", r["layers"], True, True)]  # once, with the recipe's mask, stats and scores
    assert r["method"] == "toy" and r["toy"] == {"layers": r["layers"]}  # its own results are kept
    assert r["loss_first"] == r["loss_last"] == {"toy": 0.0}
    assert r["base_untouched"] is True and "outside_mask_max" not in r  # an adapter, unmasked
    # the recipe measured the model the method returned: the untrained LoRA answers as the base did
    assert r["after"]["examples"] == r["before"]["examples"]  # the same replies, word for word
    assert r["after"]["forget"]["leak"] == r["before"]["forget"]["leak"] > 0.5
    for name in ("neighbour", "retain"):
        assert r["after"][name]["correct"] == r["before"][name]["correct"], name
    assert abs(r["after"]["drift"]["kl"]) < 1e-6
    assert_vanilla_reload_matches(tmp_path / "adapter")


def test_a_registered_loss_term_named_in_the_config_joins_the_loss(tmp_path):
    calls = []

    def half_forget_ce(ctx, step) -> torch.Tensor:
        calls.append(step)
        return 0.5 * step.forget_forward(ctx)[0]  # the forward pass forget_ce already ran

    with registered_loss("half_forget_ce", half_forget_ce):
        # kl_weight and act_weight 0: their terms, left out of the list, would not train anyway
        overrides = ["losses=[forget_ce, half_forget_ce]", "kl_weight=0", "act_weight=0"]
        cfg = config.load(None, [*overrides, "steps=2", "forget_batch=4", "retain_batch=4", "rank=4", *SMALL])
        assert losses.loss_weights(cfg) == {"forget_ce": 1.0, "half_forget_ce": 1.0}
        s = recipe.setup(cfg, tmp_path)
        model, reference = masked_lora_method.wrap(s, {1: torch.arange(0, 64, 3)})
        with progress_bar(disable=True) as progress:
            history = train_loop.train(s, model, reference, {}, progress)
    assert "half_forget_ce" not in losses.LOSSES
    assert len(calls) == 2 and [list(h) for h in history] == [["forget_ce", "half_forget_ce"]] * 2
    for h in history:
        assert h["half_forget_ce"] == pytest.approx(0.5 * h["forget_ce"])
    with pytest.raises(ConfigError, match="config key 'losses'"):
        config.load(None, overrides)  # unregistered again
