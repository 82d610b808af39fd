"""The OpenAI-compatible request and response shapes the server speaks (pydantic models).

Only what a chat completion needs: unknown fields that OpenAI clients send (user, metadata, ...)
are ignored; fields this server cannot honour (tools, response_format other than text, n > 1,
penalties, audio) are a 400 naming them, so a client never gets a 200 that silently dropped what
it asked for. `logit_bias` and `logprobs` / `top_logprobs` are honoured. Extensions: `top_k` and
`repetition_penalty`. Default temperature is 0 (greedy): a kiosk should give the same answer to
the same question.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from orin_unlearn.edge.sampling import (
    MAX_BIAS,
    MAX_TOP_LOGPROBS,
    MIN_TEMPERATURE,
    PENALTY_RANGE,
    SamplingParams,
    TokenLogprob,
)

# OpenAI fields this server cannot honour -> the values that ask for nothing (and so are accepted).
UNSUPPORTED: dict[str, tuple[Any, ...]] = {
    "tools": (None, []),
    "tool_choice": (None, "none", "auto"),
    "functions": (None, []),
    "function_call": (None, "none", "auto"),
    "response_format": (None, {"type": "text"}),
    "modalities": (None, ["text"]),
    "audio": (None,),
    "prediction": (None,),
}
MAX_BIASED_TOKENS = 300


def _only(allowed: tuple[Any, ...], name: str, value: Any) -> Any:
    if not any(value == a and type(value) is type(a) for a in allowed):
        shown = " or ".join(json.dumps(a) for a in allowed)
        raise ValueError(f"{name} is not supported by this server (it accepts only {shown})")
    return value


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "user", "assistant"]
    content: str = Field(max_length=8000)
    tool_calls: Any = None

    @field_validator("tool_calls")
    @classmethod
    def _no_tool_calls(cls, value: Any) -> Any:
        return _only((None, []), "tool_calls", value)


class StreamOptions(BaseModel):
    include_usage: bool = False


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str
    messages: list[Message] = Field(min_length=1, max_length=64)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    top_k: int = Field(default=0, ge=0)
    repetition_penalty: float = Field(default=1.0, ge=PENALTY_RANGE[0], le=PENALTY_RANGE[1])
    logit_bias: dict[int, float] | None = Field(default=None, max_length=MAX_BIASED_TOKENS)
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=MAX_TOP_LOGPROBS)
    frequency_penalty: float = Field(default=0.0, ge=0.0, le=0.0)
    presence_penalty: float = Field(default=0.0, ge=0.0, le=0.0)
    seed: int | None = Field(default=None, ge=0, lt=2**63)
    stop: str | list[str] | None = None
    n: int = Field(default=1, ge=1, le=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    tools: Any = None
    tool_choice: Any = None
    functions: Any = None
    function_call: Any = None
    response_format: Any = None
    modalities: Any = None
    audio: Any = None
    prediction: Any = None

    @field_validator(*UNSUPPORTED)
    @classmethod
    def _unsupported(cls, value: Any, info: ValidationInfo) -> Any:
        return _only(UNSUPPORTED[info.field_name], info.field_name, value)

    @field_validator("temperature")
    @classmethod
    def _temperature(cls, value: float) -> float:
        if 0.0 < value < MIN_TEMPERATURE:
            raise ValueError(f"temperature is 0 (greedy) or at least {MIN_TEMPERATURE:g}, got {value!r}")
        return value

    @field_validator("logit_bias")
    @classmethod
    def _bias(cls, value: dict[int, float] | None) -> dict[int, float] | None:
        for token, bias in (value or {}).items():
            if token < 0 or not -MAX_BIAS <= bias <= MAX_BIAS:
                raise ValueError(
                    f"token ids are >= 0 and biases in [-{MAX_BIAS:g}, {MAX_BIAS:g}], got {token}: {bias!r}"
                )
        return value

    @field_validator("top_logprobs")
    @classmethod
    def _top_logprobs(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value and not info.data.get("logprobs"):
            raise ValueError("top_logprobs needs logprobs: true")
        return value

    @field_validator("stop")
    @classmethod
    def _stops(cls, value: str | list[str] | None) -> list[str]:
        stops = [value] if isinstance(value, str) else list(value or [])
        if len(stops) > 4 or any(not s for s in stops):
            raise ValueError("stop takes at most 4 non-empty strings")
        return stops

    def sampling(self, default_max_tokens: int) -> SamplingParams:
        return SamplingParams(
            max_new_tokens=self.max_completion_tokens or self.max_tokens or default_max_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            top_k=self.top_k,
            repetition_penalty=self.repetition_penalty,
            seed=self.seed,
            stop=tuple(self.stop or ()),
            logit_bias=tuple(sorted((self.logit_bias or {}).items())),
            logprobs=bool(self.logprobs),
            top_logprobs=self.top_logprobs or 0,
        )

    def chat(self) -> list[dict]:
        return [m.model_dump() for m in self.messages]


def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex[:24]}"


def usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def choice_logprobs(entries: list[TokenLogprob], token_bytes: Callable[[int], bytes]) -> dict:
    """OpenAI's `choices[i].logprobs` for generated tokens: token text, logprob, bytes, top_logprobs."""

    def one(token: int, logprob: float) -> dict:
        raw = token_bytes(token)
        return {"token": raw.decode("utf-8", "replace"), "logprob": logprob, "bytes": list(raw)}

    return {
        "content": [
            one(e.token, e.logprob) | {"top_logprobs": [one(t, lp) for t, lp in e.top]} for e in entries
        ]
    }


def response(
    cid: str,
    model: str,
    text: str,
    finish: str,
    prompt_tokens: int,
    completion_tokens: int,
    logprobs_: dict | None = None,
) -> dict:
    choice = {
        "index": 0,
        "message": {"role": "assistant", "content": text},
        "logprobs": logprobs_,
        "finish_reason": finish,
    }
    return {
        "id": cid,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [choice],
        "usage": usage(prompt_tokens, completion_tokens),
    }


def chunk(
    cid: str,
    model: str,
    delta: dict,
    finish: str | None = None,
    usage_: dict | None = None,
    logprobs_: dict | None = None,
) -> dict:
    choice = {"index": 0, "delta": delta, "logprobs": logprobs_, "finish_reason": finish}
    out = {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [] if usage_ is not None else [choice],
    }
    if usage_ is not None:
        out["usage"] = usage_
    return out


def error(
    message: str, type_: str = "invalid_request_error", param: str | None = None, code: str | None = None
) -> dict:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}
