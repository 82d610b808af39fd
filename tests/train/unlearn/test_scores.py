"""Contrast scores on hand-made activation statistics."""

from __future__ import annotations

import torch

from orin_unlearn.train.unlearn.scores import answer_logprob, contrast_scores


def _stats():
    ones = torch.ones(1, 3)
    return {
        "forget.neuron_mean": torch.tensor([[4.0, 4.0, 0.0]]),
        "forget.neuron_var": ones,
        "retain.neuron_mean": torch.tensor([[0.0, 0.0, 0.0]]),
        "retain.neuron_var": ones,
        "neighbour.neuron_mean": torch.tensor([[0.0, 4.0, 0.0]]),
        "neighbour.neuron_var": ones,
    }


def test_contrast_against_retain():
    c = contrast_scores(_stats())
    assert torch.allclose(c, torch.tensor([[4.0, 4.0, 0.0]]), atol=1e-4)


def test_contrast_against_retain_and_neighbour_keeps_only_concept_specific_neurons():
    c = contrast_scores(_stats(), against=("retain", "neighbour"))
    # neuron 1 fires for neighbours too: it no longer counts as concept-specific
    assert torch.allclose(c, torch.tensor([[4.0, 0.0, 0.0]]), atol=1e-4)


def test_answer_logprob_counts_only_labelled_tokens():
    logits = torch.zeros(1, 3, 4)
    logits[0, 0, 2] = 10.0  # position 0 predicts token 2 (labels[1])
    labels = torch.tensor([[-100, 2, -100]])
    lp = answer_logprob(logits, labels)
    expected = torch.log_softmax(logits[0, 0], -1)[2]
    assert torch.allclose(lp, expected.unsqueeze(0))


def test_contrast_at_subject_tokens_reads_the_subject_statistics():
    stats = _stats() | {
        "forget.neuron_subject_mean": torch.tensor([[0.0, 0.0, 6.0]]),
        "forget.neuron_subject_var": torch.ones(1, 3),
        "retain.neuron_subject_mean": torch.zeros(1, 3),
        "retain.neuron_subject_var": torch.ones(1, 3),
    }
    c = contrast_scores(stats, positions="subject")
    assert torch.allclose(c, torch.tensor([[0.0, 0.0, 6.0]]), atol=1e-4)


def test_subject_positions_are_the_title_tokens(base_dir):
    from orin_unlearn.edge.tokenizer import ChatTokenizer
    from orin_unlearn.train.unlearn.probe import subject_positions

    tok = ChatTokenizer(base_dir)
    messages = [{"role": "user", "content": "Who directed Inception? I loved inception."}]
    ids = tok.encode_chat(messages)
    pos = subject_positions(tok, messages, ["Inception"])
    assert tok.decode([ids[i] for i in pos]).replace(" ", "").casefold() == "inceptioninception"
    assert subject_positions(tok, messages, ["Interstellar"]) == []
