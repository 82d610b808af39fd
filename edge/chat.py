"""Chat templates: render a model's own Jinja chat template exactly as transformers does, and
learn from rendering what the runtime must know about it.

Real checkpoints differ (Qwen escapes newlines in its template, SmolLM2 writes them literally;
Llama 3 ends a turn with `<|eot_id|>`, ChatML with `<|im_end|>`; a GGUF-converted tokenizer can
name the wrong `eos_token`), so nothing here reads the template's source: the default system
prompt, the end-of-turn token and the generation prompt come from rendering probe chats.
Also Qwen2.5's ChatML template, which the shipped tiny model uses, and a pure-Python ChatML
renderer as a reference for it. jinja2 only (no transformers), so the runtime can use it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from datetime import datetime
from functools import lru_cache
from typing import Any

import jinja2
import jinja2.ext

from orin_unlearn.edge.chat_limits import BoundedSandbox, RenderLimitError, render_bounded

QWEN_DEFAULT_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."

# Qwen2.5-Instruct's chat template (tool calls included), with the default system prompt as a slot.
_QWEN25_TEMPLATE = (
    "{%- if tools %}\n"
    "    {{- '<|im_start|>system\\n' }}\n"
    "    {%- if messages[0]['role'] == 'system' %}\n"
    "        {{- messages[0]['content'] }}\n"
    "    {%- else %}\n"
    "        {{- '@@SYSTEM@@' }}\n"
    "    {%- endif %}\n"
    '    {{- "\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\n'
    'You are provided with function signatures within <tools></tools> XML tags:\\n<tools>" }}\n'
    "    {%- for tool in tools %}\n"
    '        {{- "\\n" }}\n'
    "        {{- tool | tojson }}\n"
    "    {%- endfor %}\n"
    '    {{- "\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments '
    'within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\"name\\": <function-name>, \\"arguments\\": '
    '<args-json-object>}\\n</tool_call><|im_end|>\\n" }}\n'
    "{%- else %}\n"
    "    {%- if messages[0]['role'] == 'system' %}\n"
    "        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}\n"
    "    {%- else %}\n"
    "        {{- '<|im_start|>system\\n@@SYSTEM@@<|im_end|>\\n' }}\n"
    "    {%- endif %}\n"
    "{%- endif %}\n"
    "{%- for message in messages %}\n"
    '    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or '
    '(message.role == "assistant" and not message.tool_calls) %}\n'
    "        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}\n"
    '    {%- elif message.role == "assistant" %}\n'
    "        {{- '<|im_start|>' + message.role }}\n"
    "        {%- if message.content %}\n"
    "            {{- '\\n' + message.content }}\n"
    "        {%- endif %}\n"
    "        {%- for tool_call in message.tool_calls %}\n"
    "            {%- if tool_call.function is defined %}\n"
    "                {%- set tool_call = tool_call.function %}\n"
    "            {%- endif %}\n"
    '            {{- \'\\n<tool_call>\\n{"name": "\' }}\n'
    "            {{- tool_call.name }}\n"
    '            {{- \'", "arguments": \' }}\n'
    "            {{- tool_call.arguments | tojson }}\n"
    "            {{- '}\\n</tool_call>' }}\n"
    "        {%- endfor %}\n"
    "        {{- '<|im_end|>\\n' }}\n"
    '    {%- elif message.role == "tool" %}\n'
    '        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}\n'
    "            {{- '<|im_start|>user' }}\n"
    "        {%- endif %}\n"
    "        {{- '\\n<tool_response>\\n' }}\n"
    "        {{- message.content }}\n"
    "        {{- '\\n</tool_response>' }}\n"
    '        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}\n'
    "            {{- '<|im_end|>\\n' }}\n"
    "        {%- endif %}\n"
    "    {%- endif %}\n"
    "{%- endfor %}\n"
    "{%- if add_generation_prompt %}\n"
    "    {{- '<|im_start|>assistant\\n' }}\n"
    "{%- endif %}\n"
)

ROLES = ("system", "user", "assistant")
log = logging.getLogger(__name__)


def chatml_template(default_system: str = QWEN_DEFAULT_SYSTEM) -> str:
    """Qwen2.5's Jinja chat template with `default_system` used when no system turn is given."""
    if "'" in default_system:
        raise ValueError(f"default system prompt may not contain a single quote: {default_system!r}")
    return _QWEN25_TEMPLATE.replace("@@SYSTEM@@", default_system)


def render_chat(
    messages: list[dict], add_generation_prompt: bool = True, default_system: str = QWEN_DEFAULT_SYSTEM
) -> str:
    """Render system/user/assistant turns exactly as the Qwen2.5 template does (a pure-Python
    reference for `chatml_template`; `ChatTemplate` renders any model's own template)."""
    check_messages(messages)
    parts = []
    if messages[0].get("role") != "system":
        parts.append(f"<|im_start|>system\n{default_system}<|im_end|>\n")
    for message in messages:
        role, content = message["role"], message["content"]
        parts.append(f"<|im_start|>{role}\n{content}<|im_end|>\n")
    if add_generation_prompt:
        parts.append("<|im_start|>assistant\n")
    return "".join(parts)


class ChatTemplateError(ValueError):
    """A chat template that cannot be rendered, or whose end-of-turn token cannot be found."""


class ChatTemplateLimitError(ChatTemplateError):
    """A chat template that ran past its time or size limit (edge/chat_limits.py)."""


def check_messages(messages: list[dict]) -> None:
    """Raise ValueError unless `messages` is a non-empty list of system/user/assistant turns."""
    if not messages:
        raise ValueError("a chat needs at least one message")
    for i, message in enumerate(messages):
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            raise ValueError(f"message {i}: role must be one of {ROLES}, got {role!r}")
        if not isinstance(content, str):
            raise ValueError(f"message {i}: content must be a string, got {type(content).__name__}")


class _Generation(jinja2.ext.Extension):
    """`{% generation %}...{% endgeneration %}` (assistant-mask markers in some templates): renders its body."""

    tags = {"generation"}

    def parse(self, parser: Any) -> jinja2.nodes.Node:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)

    def _body(self, caller: Any) -> str:
        return caller()


def _raise_exception(message: str) -> None:
    raise jinja2.exceptions.TemplateError(message)


def _tojson(
    x: Any,
    ensure_ascii: bool = False,
    indent: int | None = None,
    separators: Any = None,
    sort_keys: bool = False,
) -> str:
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


@lru_cache(maxsize=16)
def compile_template(source: str) -> jinja2.Template:
    """Compile a chat template in the environment transformers' `apply_chat_template` uses, with
    `*` and `**` bounded (`BoundedSandbox`)."""
    env = BoundedSandbox(
        trim_blocks=True, lstrip_blocks=True, extensions=[_Generation, jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    return env.from_string(source)


# Probe contents: plain words, so templates that `| trim` or capitalise nothing still keep them whole.
_USER = "Qzuserprobe"
_SYSTEM = "Qzsystemprobe"
_REPLY = "Qzreplyprobe"


def _common_prefix(a: str, b: str) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def _common_suffix(a: str, b: str, limit: int) -> int:
    n = 0
    while n < limit and a[len(a) - 1 - n] == b[len(b) - 1 - n]:
        n += 1
    return n


class ChatTemplate:
    """A model's Jinja chat template, and what rendering it shows.

    Attributes:
        default_system: the system prompt the template inserts when a chat has no system turn
            ("" when it inserts none).
        end_of_turn: the special token the template writes right after an assistant reply
            (`<|im_end|>`, `<|eot_id|>`, ...): the token a reply must stop at.
        generation_prompt: what `add_generation_prompt` appends (`<|im_start|>assistant\\n`).
        start_of_turn: the first special token of the generation prompt (`<|im_start|>`), or None;
            never a stop token.
    """

    def __init__(
        self,
        source: str,
        special_tokens: Iterable[str],
        token_kwargs: Mapping[str, Any] | None = None,
        origin: str = "chat template",
    ):
        """Args:
        source: the Jinja template.
        special_tokens: the vocabulary's added tokens (candidates for the end-of-turn token).
        token_kwargs: `bos_token`, `eos_token`, ... as the template sees them (transformers passes
            the tokenizer's special tokens map).
        origin: names the model in errors and warnings (its directory).
        """
        if not source or not source.strip():
            raise ChatTemplateError(f"{origin}: the chat template is empty")
        self.source = source
        self.origin = origin
        self.special_tokens = tuple(sorted({t for t in special_tokens if t}, key=len, reverse=True))
        self.token_kwargs = dict(token_kwargs or {})
        try:
            self._template = compile_template(source)
        except jinja2.TemplateSyntaxError as exc:
            raise ChatTemplateError(f"{origin}: the chat template does not parse: {exc}") from exc
        self.end_of_turn = self._find_end_of_turn()
        self.generation_prompt = self._find_generation_prompt()
        self.start_of_turn = self._first_special(self.generation_prompt)
        self.default_system = self._find_default_system()

    def render(self, messages: list[dict], add_generation_prompt: bool = True) -> str:
        """The chat as the model's template writes it (the same text as transformers'
        `apply_chat_template(messages, tokenize=False)`), within the time and size limits of
        edge/chat_limits.py (ChatTemplateLimitError past them)."""
        check_messages(messages)
        context = dict(
            messages=list(messages),
            tools=None,
            documents=None,
            add_generation_prompt=add_generation_prompt,
            **self.token_kwargs,
        )
        try:
            return render_bounded(self._template, context)
        except RenderLimitError as exc:
            raise ChatTemplateLimitError(f"{self.origin}: {exc}; refusing the template") from None
        except jinja2.TemplateError as exc:
            raise ChatTemplateError(f"{self.origin}: the chat template refused the chat: {exc}") from exc

    def _first_special(self, text: str) -> str | None:
        found = [(text.find(t), -len(t), t) for t in self.special_tokens if t in text]
        return min(found)[2] if found else None

    def _find_end_of_turn(self) -> str:
        text = self.render(
            [{"role": "user", "content": _USER}, {"role": "assistant", "content": _REPLY}],
            add_generation_prompt=False,
        )
        if _REPLY not in text:
            raise ChatTemplateError(
                f"{self.origin}: the chat template does not write an assistant reply into the chat, so "
                "its end-of-turn token cannot be found"
            )
        after = text.rsplit(_REPLY, 1)[1]
        for token in self.special_tokens:  # longest first
            if after.lstrip().startswith(token):
                return token
        raise ChatTemplateError(
            f"{self.origin}: no special token follows an assistant reply in the chat template "
            f"(it writes {after[:40]!r} after the reply), so replies have no end-of-turn token to stop at"
        )

    def _find_generation_prompt(self) -> str:
        chat = [{"role": "user", "content": _USER}]
        without, with_prompt = self.render(chat, False), self.render(chat, True)
        if not with_prompt.startswith(without):
            log.warning(
                "%s: unusual chat template: add_generation_prompt rewrites the chat instead of appending to it",
                self.origin,
            )
        prompt = with_prompt[_common_prefix(without, with_prompt) :]
        if not prompt:
            log.warning("%s: the chat template appends no generation prompt", self.origin)
        return prompt

    def _find_default_system(self) -> str:
        user = {"role": "user", "content": _USER}
        plain = self.render([user], False)
        try:
            with_system = self.render([{"role": "system", "content": _SYSTEM}, user], False)
        except ChatTemplateLimitError:
            raise
        except ChatTemplateError as exc:
            log.info(
                "%s: the chat template takes no system turn (%s): no default system prompt", self.origin, exc
            )
            return ""
        if _SYSTEM not in with_system:
            log.warning(
                "%s: unusual chat template: it drops a system turn; assuming no default system prompt",
                self.origin,
            )
            return ""
        head, tail = with_system.split(_SYSTEM, 1)
        if plain.startswith(head) and plain.endswith(tail) and len(plain) >= len(head) + len(tail):
            return plain[len(head) : len(plain) - len(tail)]
        # No system slot in the plain chat: it must then be the system chat minus the system turn.
        prefix = _common_prefix(plain, with_system)
        limit = min(len(plain), len(with_system)) - prefix
        if prefix + _common_suffix(plain, with_system, limit) == len(plain):
            return ""
        log.warning(
            "%s: unusual chat template: a chat without a system turn is not the same chat with a default "
            "system prompt; assuming none",
            self.origin,
        )
        return ""
