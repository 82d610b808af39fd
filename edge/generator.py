"""One `Generator` over every backend: chat messages in, text streamed out.

    gen = Generator.from_dir("runs/demo/export/onnx-fp16")          # backend chosen from the folder
    stream = gen.stream([{"role": "user", "content": "A film like Interstellar?"}], SamplingParams())
    for text in stream:
        print(text, end="", flush=True)
    stream.completion.finish_reason, stream.completion.completion_tokens

Greedy or sampled (temperature, top-p, top-k, repetition penalty, seed), stopping at the model's
end-of-turn tokens, at stop strings (never streamed, even in part) or at `max_new_tokens`. A
prompt that does not fit the context is a `ContextOverflowError`, never silently truncated.
A server tokenises once (`prompt_ids`, in a worker thread) and streams those ids (`stream_ids`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from orin_unlearn.edge.backends import Backend, open_backend
from orin_unlearn.edge.latency import LatencyRecorder
from orin_unlearn.edge.sampling import SamplingParams, TokenLogprob, choose, token_logprobs
from orin_unlearn.edge.tokenizer import ChatTokenizer

REPLACEMENT = "\ufffd"  # what a partial UTF-8 sequence decodes to: wait for the next token


class ContextOverflowError(ValueError):
    """A prompt longer than the model's context (or the engine's prefill profile) allows."""


@dataclass
class Completion:
    text: str
    tokens: list[int]
    finish_reason: str  # "stop" (end of turn or a stop string), "length", "cancelled"
    prompt_tokens: int
    latency: dict[str, Any] = field(default_factory=dict)
    logprobs: list[TokenLogprob] | None = None  # one per token, when the params asked for them

    @property
    def completion_tokens(self) -> int:
        return len(self.tokens)


class Stream:
    """Iterates text deltas; `completion` is set once the iteration has ended.

    `logprobs` (None unless the params asked for them) grows by one entry per generated token
    while the iteration runs, so a consumer can send each delta with the entries behind it.
    """

    def __init__(self, steps: Iterator[str | Completion], logprobs: list[TokenLogprob] | None = None):
        self._steps = steps
        self.completion: Completion | None = None
        self.logprobs = logprobs

    def __iter__(self) -> Iterator[str]:
        for step in self._steps:
            if isinstance(step, Completion):
                self.completion = step
            elif step:
                yield step


def _held_back(text: str, stops: tuple[str, ...]) -> int:
    """How many trailing characters of `text` could still grow into a stop string."""
    longest = 0
    for stop in stops:
        for n in range(min(len(stop) - 1, len(text)), 0, -1):
            if text.endswith(stop[:n]):
                longest = max(longest, n)
                break
    return longest


class Detokenizer:
    """Incremental decoding: each token costs two decodes of a few tokens, not of the whole reply.

    Text is released only once it no longer ends in a partial UTF-8 sequence (byte-level BPE
    splits multi-byte characters across tokens).
    """

    def __init__(self, tokenizer: ChatTokenizer):
        self.tokenizer = tokenizer
        self.tokens: list[int] = []
        self.text = ""
        self._prefix = 0  # tokens before this are settled text
        self._read = 0  # tokens before this are in self.text

    def add(self, token: int) -> str:
        """Append one token; return the text it completes ("" while a character is unfinished)."""
        self.tokens.append(token)
        settled = self.tokenizer.decode(self.tokens[self._prefix : self._read])
        current = self.tokenizer.decode(self.tokens[self._prefix :])
        if len(current) <= len(settled) or current.endswith(REPLACEMENT):
            return ""
        delta = current[len(settled) :]
        self._prefix, self._read = self._read, len(self.tokens)
        self.text += delta
        return delta


class Generator:
    """Chat generation over a `Backend` (one request at a time; the server serialises them)."""

    def __init__(self, backend: Backend, tokenizer: ChatTokenizer, recorder: LatencyRecorder | None = None):
        self.backend = backend
        self.tokenizer = tokenizer
        self.recorder = recorder or LatencyRecorder()
        self.max_prompt = min(backend.max_context - 1, getattr(backend, "max_prompt", backend.max_context))

    @classmethod
    def from_dir(
        cls,
        model_dir: str | Path,
        backend: str = "auto",
        latency_path: str | Path | None = None,
        **options: Any,
    ) -> Generator:
        return cls(
            open_backend(model_dir, backend, **options),
            ChatTokenizer(model_dir),
            LatencyRecorder(latency_path),
        )

    @property
    def backend_name(self) -> str:
        return getattr(self.backend, "name", type(self.backend).__name__)

    def check_prompt_size(self, messages: list[dict]) -> None:
        """ContextOverflowError when the messages' characters alone prove the prompt cannot fit
        (see `ChatTokenizer.chars_per_token`); cheap, so a server can refuse before tokenising."""
        per_token = self.tokenizer.chars_per_token
        chars = sum(len(m["content"]) for m in messages)
        if per_token is not None and chars > per_token * self.max_prompt:
            raise ContextOverflowError(
                f"the prompt has {chars} characters, more than {self.max_prompt} tokens can hold "
                f"(this model accepts at most {self.max_prompt} prompt tokens, of at most "
                f"{per_token} characters each)"
            )

    def prompt_ids(self, messages: list[dict]) -> list[int]:
        """Token ids of the chat-templated prompt; ContextOverflowError when it does not fit."""
        self.check_prompt_size(messages)
        ids = self.tokenizer.encode_chat(messages)
        self.check_prompt_length(ids)
        return ids

    def check_prompt_length(self, ids: list[int]) -> None:
        """ContextOverflowError when a tokenised prompt leaves no room for the reply."""
        if len(ids) > self.max_prompt:
            raise ContextOverflowError(
                f"the prompt has {len(ids)} tokens; this model accepts at most {self.max_prompt} "
                f"(context {self.backend.max_context}, with room for the reply)"
            )

    def stream(
        self, messages: list[dict], params: SamplingParams, cancelled: Callable[[], bool] | None = None
    ) -> Stream:
        """Generate a reply; validation (and ContextOverflowError) happens here, before streaming."""
        return self.stream_ids(self.prompt_ids(messages), params, cancelled)

    def stream_ids(
        self, ids: list[int], params: SamplingParams, cancelled: Callable[[], bool] | None = None
    ) -> Stream:
        """Generate a reply to a prompt already tokenised by `prompt_ids`."""
        logprobs: list[TokenLogprob] | None = [] if params.logprobs else None
        return Stream(self._steps(ids, params, cancelled or (lambda: False), logprobs), logprobs)

    def generate(self, messages: list[dict], params: SamplingParams) -> Completion:
        return self.generate_ids(self.prompt_ids(messages), params)

    def generate_ids(self, ids: list[int], params: SamplingParams) -> Completion:
        """The whole reply to a tokenised prompt (ContextOverflowError when it does not fit)."""
        self.check_prompt_length(ids)
        stream = self.stream_ids(ids, params)
        for _ in stream:
            pass
        assert stream.completion is not None  # set by the last step of every stream
        return stream.completion

    def _steps(
        self,
        ids: list[int],
        params: SamplingParams,
        cancelled: Callable[[], bool],
        logprobs: list[TokenLogprob] | None = None,
    ) -> Iterator[str | Completion]:
        timer = self.recorder.start(len(ids))
        rng = np.random.default_rng(params.seed)
        stop_ids = set() if params.ignore_eos else set(self.tokenizer.stop_token_ids)
        limit = min(params.max_new_tokens, self.backend.max_context - len(ids))
        detok = Detokenizer(self.tokenizer)
        tokens = detok.tokens
        emitted, text, finish = "", "", "length"
        longest_stop = max((len(x) for x in params.stop), default=0)
        logits = self.backend.prefill(ids)
        while len(tokens) < limit:
            if cancelled():
                finish = "cancelled"
                break
            previous = ids + tokens if params.repetition_penalty != 1.0 else ()
            token = choose(logits, params, rng, previous)
            timer.token()
            if token in stop_ids:
                finish = "stop"
                break
            if logprobs is not None:
                logprobs.append(token_logprobs(logits, token, params.top_logprobs))
            delta = detok.add(token)
            text = detok.text
            if delta and params.stop:
                start = max(0, len(text) - len(delta) - longest_stop)
                hits = [i for i in (text.find(x, start) for x in params.stop) if i >= 0]
                if hits:
                    text, finish = text[: min(hits)], "stop"
                    break
            safe = text[: len(text) - _held_back(text, params.stop)] if params.stop else text
            if len(safe) > len(emitted):
                yield safe[len(emitted) :]
                emitted = safe
            if len(tokens) < limit:
                logits = self.backend.decode(token)
        if len(text) > len(emitted):
            yield text[len(emitted) :]
        latency = timer.finish(finish, backend=self.backend_name)
        yield Completion(text, tokens, finish, len(ids), latency, logprobs)
