"""On a CUDA GPU: the torch backend answers the held-out prompts as it does on the CPU (the
reference the exported graphs are measured against must not depend on where it ran). Skips, with
the reason, where torch sees no GPU."""

from __future__ import annotations

import pytest

from orin_unlearn.benchmarks.world import build_splits
from orin_unlearn.edge.answers import BackendChat
from orin_unlearn.edge.backends.torch_backend import TorchBackend
from orin_unlearn.edge.tokenizer import ChatTokenizer

pytestmark = pytest.mark.gpu


def test_cuda_and_cpu_give_the_same_greedy_replies(base_dir):
    from transformers import AutoModelForCausalLM

    splits = build_splits("Inception")
    conversations = [
        list(p.messages) for name in ("forget", "retain") for p in splits.get(name, "heldout")[:16]
    ]
    tokenizer = ChatTokenizer(base_dir)
    replies = {}
    for device in ("cpu", "cuda"):
        model = AutoModelForCausalLM.from_pretrained(base_dir).to(device).eval()
        replies[device] = BackendChat(TorchBackend(model), tokenizer).answer_batch(
            conversations, max_new_tokens=24
        )
    assert replies["cuda"] == replies["cpu"]
