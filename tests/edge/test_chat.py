"""Chat templates render as transformers renders them, and what rendering shows (default system
prompt, end-of-turn token, generation prompt) is right for Qwen2.5, SmolLM2 and Llama 3."""

from __future__ import annotations

import json
import logging

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers

from orin_unlearn.edge.chat import (
    QWEN_DEFAULT_SYSTEM,
    ChatTemplate,
    ChatTemplateError,
    chatml_template,
    render_chat,
)
from orin_unlearn.edge.tokenizer import ChatTokenizer
from tests.models import SMOLLM2_SYSTEM, SMOLLM2_TEMPLATE

CHAT = [
    {"role": "user", "content": "Who directed Memento?"},
    {"role": "assistant", "content": "Memento was directed by Christopher Nolan."},
    {"role": "user", "content": "And when was it released?"},
]
CHATS = [
    CHAT,
    [{"role": "system", "content": "Be brief."}, *CHAT],
    [{"role": "user", "content": "  Who directed Inception?  "}],
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello! How can I help?"}],
]

# Qwen2.5-Instruct's layout, written out by hand.
QWEN25_LAYOUT = (
    "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
    "<|im_start|>user\nWho directed Memento?<|im_end|>\n"
    "<|im_start|>assistant\nMemento was directed by Christopher Nolan.<|im_end|>\n"
    "<|im_start|>user\nAnd when was it released?<|im_end|>\n"
    "<|im_start|>assistant\n"
)

SMOLLM2_SPECIALS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<repo_name>",
    "<file_sep>",
    "<empty_output>",
]

# Meta-Llama-3-8B-Instruct's template (escaped newlines, bos_token, content trimmed).
LLAMA3_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
    "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + "
    "'<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
    "{{ content }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)
LLAMA3_SPECIALS = [
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
]
QWEN_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<tool_call>", "</tool_call>"]

# name: (template, special tokens, tokens passed to the template, at the vocabulary's start?,
#        default system, end of turn, generation prompt, start of turn)
TEMPLATES = {
    "qwen2.5": (
        chatml_template(),
        QWEN_SPECIALS,
        {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"},
        False,
        QWEN_DEFAULT_SYSTEM,
        "<|im_end|>",
        "<|im_start|>assistant\n",
        "<|im_start|>",
    ),
    "smollm2": (
        SMOLLM2_TEMPLATE,
        SMOLLM2_SPECIALS,
        {"bos_token": "<|im_start|>", "eos_token": "<|im_end|>", "unk_token": "<|endoftext|>"},
        True,
        SMOLLM2_SYSTEM,
        "<|im_end|>",
        "<|im_start|>assistant\n",
        "<|im_start|>",
    ),
    "llama3": (
        LLAMA3_TEMPLATE,
        LLAMA3_SPECIALS,
        {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"},
        True,
        "",
        "<|eot_id|>",
        "<|start_header_id|>assistant<|end_header_id|>\n\n",
        "<|start_header_id|>",
    ),
}

WORDS = ["Who", "directed", "Memento", "?", "Hi", "Hello", "!", "user", "assistant", "system"]


def _tokenizer(specials: list[str], specials_first: bool) -> Tokenizer:
    """A word-level tokenizer with `specials` at the start (Llama style) or the end (Qwen style)."""
    words = ["[UNK]", *WORDS]
    vocab = [*specials, *words] if specials_first else [*words, *specials]
    tok = Tokenizer(models.WordLevel({t: i for i, t in enumerate(vocab)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.add_special_tokens(specials)
    return tok


def _hf(name: str):
    from transformers import PreTrainedTokenizerFast

    template, specials, tokens, first, *_ = TEMPLATES[name]
    return PreTrainedTokenizerFast(
        tokenizer_object=_tokenizer(specials, first), chat_template=template, **tokens
    )


def _template(name: str) -> ChatTemplate:
    template, specials, tokens, *_ = TEMPLATES[name]
    return ChatTemplate(template, specials, tokens, origin=name)


def test_render_matches_qwen25_layout():
    assert render_chat(CHAT) == QWEN25_LAYOUT
    assert _template("qwen2.5").render(CHAT) == QWEN25_LAYOUT


def test_explicit_system_replaces_default():
    text = render_chat([{"role": "system", "content": "Be brief."}, CHAT[0]], add_generation_prompt=False)
    expected = "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWho directed Memento?<|im_end|>\n"
    assert text == expected
    assert (
        _template("qwen2.5").render([{"role": "system", "content": "Be brief."}, CHAT[0]], False) == expected
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
    assert ChatTemplate(chatml_template("Hello there."), QWEN_SPECIALS).default_system == "Hello there."


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_rendering_equals_transformers(name):
    hf, template = _hf(name), _template(name)
    for messages in CHATS:
        for gen in (True, False):
            expected = hf.apply_chat_template(messages, tokenize=False, add_generation_prompt=gen)
            assert template.render(messages, gen) == expected, (name, messages, gen)


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_what_rendering_shows(name):
    _, _, _, _, system, end, prompt, start = TEMPLATES[name]
    template = _template(name)
    assert (template.default_system, template.end_of_turn) == (system, end)
    assert (template.generation_prompt, template.start_of_turn) == (prompt, start)


def test_smollm2_newlines_are_literal_in_its_template_and_still_found():
    assert "system\nYou are" in SMOLLM2_TEMPLATE and "\\n" not in SMOLLM2_TEMPLATE
    template = ChatTemplate(SMOLLM2_TEMPLATE, SMOLLM2_SPECIALS)
    assert template.default_system == SMOLLM2_SYSTEM != QWEN_DEFAULT_SYSTEM
    assert template.render([CHAT[0]]).startswith(f"<|im_start|>system\n{SMOLLM2_SYSTEM}<|im_end|>\n")


def _save(
    tmp_path, name: str, config: dict | None = None, generation: dict | None = None, jinja: bool = True
):
    """A model directory with `name`'s tokenizer; tokenizer_config.json overridden by `config`."""
    template, specials, tokens, first, *_ = TEMPLATES[name]
    _tokenizer(specials, first).save(str(tmp_path / "tokenizer.json"))
    cfg = {**tokens, **(config or {})}
    if jinja:
        (tmp_path / "chat_template.jinja").write_text(template, encoding="utf-8")
    else:
        cfg["chat_template"] = template
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(cfg), encoding="utf-8")
    if generation is not None:
        (tmp_path / "generation_config.json").write_text(json.dumps(generation), encoding="utf-8")
    return tmp_path


def test_gguf_converted_smollm2_tokenizer_stops_at_end_of_turn(tmp_path):
    # the GGUF conversion names <|im_start|> as eos (and bos) and has no pad token
    tok = ChatTokenizer(_save(tmp_path, "smollm2", {"eos_token": "<|im_start|>"}, {"eos_token_id": [1, 2]}))
    assert (tok.end_of_turn, tok.end_of_turn_id, tok.eos_token) == ("<|im_end|>", 2, "<|im_end|>")
    assert tok.stop_token_ids == [2]  # never the start-of-turn token 1
    assert (tok.pad_token, tok.pad_token_id) == ("<|endoftext|>", 0)
    assert tok.default_system == SMOLLM2_SYSTEM
    assert tok.render(CHAT) == _hf("smollm2").apply_chat_template(
        CHAT, tokenize=False, add_generation_prompt=True
    )


def test_pad_token_is_never_the_start_of_turn_token(tmp_path):
    assert ChatTokenizer(_save(tmp_path, "smollm2", {"pad_token": "<|im_start|>"})).pad_token_id == 0


def test_llama3_directory(tmp_path):
    tok = ChatTokenizer(_save(tmp_path, "llama3", generation={"eos_token_id": [1, 4]}))
    eot = tok.token_id("<|eot_id|>")
    assert (tok.end_of_turn_id, tok.stop_token_ids) == (eot, [1, 4])
    assert tok.pad_token == "<|eot_id|>"  # no pad configured, no <|endoftext|> in the vocabulary
    assert tok.default_system == ""
    assert tok.render(CHAT).startswith("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nWho")


def test_qwen_directory_with_template_in_tokenizer_config(tmp_path):
    tok = ChatTokenizer(_save(tmp_path, "qwen2.5", generation={"eos_token_id": 13}, jinja=False))
    assert tok.stop_token_ids == sorted({tok.token_id("<|im_end|>"), 13})
    assert tok.default_system == QWEN_DEFAULT_SYSTEM
    assert tok.render(CHAT) == QWEN25_LAYOUT


def test_no_template_is_a_clear_error(tmp_path):
    _tokenizer(QWEN_SPECIALS, False).save(str(tmp_path / "tokenizer.json"))
    with pytest.raises(ChatTemplateError, match="no chat template") as err:
        ChatTokenizer(tmp_path)
    assert str(tmp_path) in str(err.value)


def test_template_without_end_of_turn_token_is_a_clear_error():
    plain = (
        "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}assistant: {% endif %}"
    )
    with pytest.raises(ChatTemplateError, match="no special token follows an assistant reply") as err:
        ChatTemplate(plain, QWEN_SPECIALS, origin="models/plain")
    assert "models/plain" in str(err.value)


def test_template_that_drops_the_system_turn_warns(caplog):
    drops = (
        "{% for m in messages %}{% if m['role'] != 'system' %}<|im_start|>{{ m['role'] }}\n"
        "{{ m['content'] }}<|im_end|>\n{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    with caplog.at_level(logging.WARNING):
        template = ChatTemplate(drops, QWEN_SPECIALS, origin="models/odd")
    assert template.default_system == "" and template.end_of_turn == "<|im_end|>"
    assert any("unusual" in r.message and "models/odd" in r.message for r in caplog.records)


def test_template_errors_are_value_errors():
    strict = (
        "{% if messages[0]['role'] == 'system' %}{{ raise_exception('no system role') }}{% endif %}"
        "{% for m in messages %}[{{ m['role'] }}]{{ m['content'] }}<|im_end|>{% endfor %}"
    )
    template = ChatTemplate(strict, QWEN_SPECIALS)  # a template refusing system turns is fine
    assert template.default_system == ""
    with pytest.raises(ValueError, match="no system role"):
        template.render([{"role": "system", "content": "S"}, CHAT[0]])


# encode_chat ids of the shipped tiny base, computed with the hand-written ChatML renderer that
# preceded template rendering (the model was trained on exactly these).
TINY_IDS = [
    (
        [{"role": "user", "content": "Who directed Inception?"}],
        [4075, 290, 198, 273, 285, 256, 291, 272, 288, 13, 4076, 198, 4075, 279, 198, 371, 302, 2150, 30, 4076,
         198, 4075, 278, 198],
    ),
    (
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Recommend a film about dreams."}],
        [4075, 290, 198, 1792, 954, 13, 4076, 198, 4075, 279, 198, 451, 256, 272, 359, 1001, 13, 4076, 198, 4075,
         278, 198],
    ),
    (
        [
            {"role": "user", "content": "Who directed Memento?"},
            {"role": "assistant", "content": "Christopher Nolan."},
            {"role": "user", "content": "And when was it released?"},
        ],
        [4075, 290, 198, 273, 285, 256, 291, 272, 288, 13, 4076, 198, 4075, 279, 198, 371, 302, 2158, 30, 4076,
         198, 4075, 278, 198, 1064, 516, 13, 4076, 198, 4075, 279, 198, 511, 1053, 314, 520, 369, 30, 4076, 198,
         4075, 278, 198],
    ),
]  # fmt: skip


def test_tiny_base_ids_unchanged(base_dir):
    tok = ChatTokenizer(base_dir)
    for messages, ids in TINY_IDS:
        assert tok.encode_chat(messages) == ids
        # without the generation prompt "<|im_start|>assistant\n"
        assert tok.encode_chat(messages, add_generation_prompt=False) == ids[:-3]
    assert (tok.stop_token_ids, tok.pad_token_id, tok.end_of_turn_id) == ([4074, 4076], 4074, 4076)
    assert tok.default_system == "You are a helpful film assistant."


@pytest.mark.parametrize("bad", [[], [{"role": "tool", "content": "x"}], [{"role": "user", "content": 3}]])
def test_bad_messages_raise(bad):
    with pytest.raises(ValueError):
        render_chat(bad)
    with pytest.raises(ValueError):
        _template("qwen2.5").render(bad)
