"""resolve_base: named bases (the shipped tiny one, smollm2 from the cache), directories, hub ids, and a clear
error for anything else; load_unlearned with no adapters is the base, merged or stacked."""

from __future__ import annotations

import pytest

from orin_unlearn.train.models import NAMED_BASES, resolve_base


def test_tiny_is_the_shipped_base(base_dir):
    assert resolve_base("tiny") == base_dir


def test_a_directory_is_itself(tmp_path):
    assert resolve_base(str(tmp_path)) == tmp_path


@pytest.mark.parametrize("name", ["tinny", "runs/x/base", "./base", ""])
def test_unknown_name_lists_the_known_ones(name):
    with pytest.raises(ValueError, match="unknown base") as err:
        resolve_base(name)
    assert all(known in str(err.value) for known in NAMED_BASES) and {"tiny", "smollm2"} <= set(NAMED_BASES)


@pytest.mark.parametrize("mode", ["merge", "stack"])
def test_an_empty_adapter_chain_is_the_base(base_dir, mode):
    import torch

    from orin_unlearn.train.models import load_model, load_unlearned

    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        expected = load_model(base_dir)(input_ids=ids).logits
        got = load_unlearned(base_dir, [], mode)(input_ids=ids).logits
    assert torch.equal(got, expected)
