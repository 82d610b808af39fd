"""Backends with scripted behaviour, for tests of the generator and the server."""

from __future__ import annotations

import time

import numpy as np


class Babbler:
    """A backend that never ends its turn: always the same ordinary token."""

    name = "babbler"

    def __init__(self, token: int, vocab: int, max_context: int):
        self.max_context, self.steps = max_context, 0
        self.logits = np.zeros(vocab, np.float32)
        self.logits[token] = 1.0

    def prefill(self, ids):
        self.steps = 1
        return self.logits

    def decode(self, token):
        self.steps += 1
        return self.logits


class SlowBabbler(Babbler):
    """A Babbler that takes `delay` seconds per step, so requests overlap."""

    def __init__(self, token: int, vocab: int, max_context: int, delay: float):
        super().__init__(token, vocab, max_context)
        self.delay = delay

    def prefill(self, ids):
        time.sleep(self.delay)
        return super().prefill(ids)

    def decode(self, token):
        time.sleep(self.delay)
        return super().decode(token)


class PromptRecorder(Babbler):
    """A Babbler that keeps the prompt ids of every prefill, to see what reached the model."""

    def __init__(self, token: int, vocab: int, max_context: int):
        super().__init__(token, vocab, max_context)
        self.prompts: list[list[int]] = []

    def prefill(self, ids):
        self.prompts.append(list(ids))
        return super().prefill(ids)
