"""Mask selection: MLP-neuron index space, ranking by score, layer choice by aggregated score."""

from __future__ import annotations

import pytest
import torch

from orin_unlearn.train.unlearn.mask import (
    build_mask,
    choose_layers,
    combine,
    load_mask,
    save_mask,
    top_neurons,
)

D_FF, LAYERS = 96, 4


def scores_with_hot_neurons(hot: dict[int, list[int]]) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    base = torch.rand(LAYERS, D_FF, generator=g) * 0.1
    for layer, idx in hot.items():
        for rank, j in enumerate(idx):
            base[layer, j] = 10.0 - rank  # distinct, decreasing
    return {"saliency": base.clone(), "fisher": base.clone() ** 2, "contrast": base.clone() * 3}


def test_top_k_is_by_score_not_index_order():
    s = scores_with_hot_neurons({2: [90, 5, 61, 33]})
    mask = build_mask(s, num_layers=1, top_k=4)
    assert list(mask) == [2]
    assert mask[2].tolist() == [90, 5, 61, 33]


def test_indices_live_in_d_ff_not_d_model():
    s = scores_with_hot_neurons({1: [95, 94]})
    mask = build_mask(s, num_layers=2, top_k=8)
    for idx in mask.values():
        assert idx.dtype == torch.int64 and int(idx.max()) < D_FF and len(set(idx.tolist())) == len(idx)
    assert 95 in mask[1].tolist()


def test_layers_chosen_by_aggregated_score():
    s = scores_with_hot_neurons({0: [1, 2, 3], 3: [4, 5, 6, 7]})
    assert choose_layers(combine(s), num_layers=2, top_k=4) == [0, 3]
    assert list(build_mask(s, num_layers=1, top_k=4)) == [3]


def test_explicit_layers_and_range_check():
    s = scores_with_hot_neurons({0: [1]})
    assert list(build_mask(s, num_layers=1, top_k=2, layers=[2, 1])) == [1, 2]
    with pytest.raises(ValueError, match="out of range"):
        build_mask(s, num_layers=1, top_k=2, layers=[LAYERS])


def test_mass_fraction_takes_fewest_neurons_holding_that_mass():
    row = torch.tensor([0.0, 5.0, 3.0, 2.0])
    assert top_neurons(row, top_k=99, mass_fraction=0.5).tolist() == [1]
    assert top_neurons(row, top_k=99, mass_fraction=0.8).tolist() == [1, 2]
    assert top_neurons(row, top_k=99, mass_fraction=1.0).tolist() == [1, 2, 3]


def test_mask_round_trip(tmp_path):
    mask = {1: torch.tensor([7, 3]), 3: torch.tensor([0])}
    save_mask(tmp_path / "m.safetensors", mask, D_FF)
    loaded = load_mask(tmp_path / "m.safetensors")
    assert list(loaded) == [1, 3] and all(torch.equal(loaded[k], mask[k]) for k in mask)


def test_share_ranking_ignores_a_layer_scale_that_falls_with_depth():
    # the same concentrated pattern in layer 2 as a diffuse one elsewhere, but every signal's scale
    # falls 100x with depth (as gradients do in a real model): "mass" picks the first layers by
    # scale alone, "share" finds the layer where a few neurons hold the score
    g = torch.Generator().manual_seed(0)
    base = torch.rand(LAYERS, D_FF, generator=g) + 1.0
    base[2, :4] = 40.0
    scale = torch.logspace(0, -2, LAYERS).unsqueeze(1)
    s = {name: base * scale for name in ("saliency", "fisher", "contrast")}
    assert list(build_mask(s, num_layers=1, top_k=4, ranking="mass")) == [0]
    assert list(build_mask(s, num_layers=1, top_k=4, ranking="share")) == [2]


def test_signals_choose_what_ranks_neurons():
    s = scores_with_hot_neurons({1: [7, 8]})
    s["contrast"] = torch.zeros(LAYERS, D_FF)
    s["contrast"][3, [50, 51]] = 5.0
    assert list(build_mask(s, num_layers=1, top_k=2, signals=("contrast",))) == [3]
    with pytest.raises(ValueError, match="signals"):
        build_mask(s, num_layers=1, top_k=2, signals=("salience",))
