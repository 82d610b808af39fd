from __future__ import annotations

import pytest

from orin_unlearn.edge.chat import QWEN_DEFAULT_SYSTEM, chatml_template, default_system_of, render_chat

CHAT = [
    {"role": "user", "content": "Who directed Memento?"},
    {"role": "assistant", "content": "Memento was directed by Christopher Nolan."},
    {"role": "user", "content": "And when was it released?"},
]

# Qwen2.5-Instruct's layout, written out by hand.
QWEN25_LAYOUT = (
    "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
    "<|im_start|>user\nWho directed Memento?<|im_end|>\n"
    "<|im_start|>assistant\nMemento was directed by Christopher Nolan.<|im_end|>\n"
    "<|im_start|>user\nAnd when was it released?<|im_end|>\n"
    "<|im_start|>assistant\n"
)


def test_render_matches_qwen25_layout():
    assert render_chat(CHAT) == QWEN25_LAYOUT


def test_explicit_system_replaces_default():
    text = render_chat([{"role": "system", "content": "Be brief."}, CHAT[0]], add_generation_prompt=False)
    assert (
        text == "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWho directed Memento?<|im_end|>\n"
    )


def test_jinja_template_equals_python_renderer():
    jinja2 = pytest.importorskip("jinja2")
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)
    for system in (QWEN_DEFAULT_SYSTEM, "You are a helpful film assistant."):
        template = env.from_string(chatml_template(system))
        for messages in (CHAT, [{"role": "system", "content": "S"}, *CHAT]):
            for gen in (True, False):
                expected = template.render(messages=messages, add_generation_prompt=gen, tools=None)
                assert render_chat(messages, gen, system) == expected
    assert default_system_of(chatml_template("Hello there.")) == "Hello there."


@pytest.mark.parametrize("bad", [[], [{"role": "tool", "content": "x"}], [{"role": "user", "content": 3}]])
def test_bad_messages_raise(bad):
    with pytest.raises(ValueError):
        render_chat(bad)
