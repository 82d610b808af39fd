"""Chat examples as token ids with labels on the assistant reply only, and padded batches."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from orin_unlearn.edge.tokenizer import ChatTokenizer

IGNORE = -100


def encode_example(
    tokenizer: ChatTokenizer, messages: Sequence[dict], reply: str, prefix: str = ""
) -> tuple[list[int], list[int]]:
    """Token ids of `messages` + assistant `reply`, and labels that score only the reply and its
    end-of-turn token (the one the model's chat template ends a reply with). A `prefix` pre-fills
    the assistant turn, encoded as the runtime encodes a prefilled generation
    (`ChatTokenizer.encode_prompts`), and is not scored; `reply` then continues it as is."""
    prompt = tokenizer.encode_prompts([list(messages)], [prefix])[0]
    answer = tokenizer.encode(reply) + [tokenizer.end_of_turn_id]
    return prompt + answer, [IGNORE] * len(prompt) + answer


def collate(examples: Sequence[tuple[list[int], list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a list of (ids, labels) into input_ids / attention_mask / labels tensors."""
    width = max(len(ids) for ids, _ in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, (x, y) in enumerate(examples):
        ids[row, : len(x)] = torch.tensor(x)
        labels[row, : len(y)] = torch.tensor(y)
        mask[row, : len(x)] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def length_batches(lengths: Sequence[int], batch_size: int, generator: torch.Generator) -> list[list[int]]:
    """Shuffled batches of indices with similar lengths (little padding), in random batch order."""
    perm = torch.randperm(len(lengths), generator=generator).tolist()
    chunk = batch_size * 32
    batches: list[list[int]] = []
    for start in range(0, len(perm), chunk):
        block = sorted(perm[start : start + chunk], key=lambda i: lengths[i])
        batches += [block[i : i + batch_size] for i in range(0, len(block), batch_size)]
    order = torch.randperm(len(batches), generator=generator).tolist()
    return [batches[i] for i in order]
