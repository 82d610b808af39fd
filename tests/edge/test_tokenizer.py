from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from orin_unlearn.edge.chat import render_chat
from orin_unlearn.edge.tokenizer import ChatTokenizer
from orin_unlearn.train.tokenizer_recipe import QWEN_SPECIAL_TOKENS

CHAT = [{"role": "user", "content": "Recommend a film about dreams and heist."}]


def test_special_tokens_are_single_ids(base_dir):
    tok = ChatTokenizer(base_dir)
    for token in QWEN_SPECIAL_TOKENS:
        assert tok.encode(token) == [tok.token_id(token)]
    assert tok.stop_token_ids == sorted({tok.token_id("<|im_end|>"), tok.token_id("<|endoftext|>")})


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=200))
def test_round_trip_arbitrary_unicode(text):
    import unicodedata

    tok = _tok()
    ids = tok.encode(text)
    assert tok.decode(ids, skip_special_tokens=False) == unicodedata.normalize("NFC", text)


def test_round_trip_samples():
    tok = _tok()
    for text in ["Amélie ❤️ 千と千尋の神隠し", "Ωmega\t\n\r\x00 end", "\U0001f3ac🎬 " * 5, ""]:
        assert tok.decode(tok.encode(text), skip_special_tokens=False) == text


def test_hf_tokenizer_agrees_with_runtime_tokenizer(base_dir):
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(base_dir)
    tok = ChatTokenizer(base_dir)
    text = hf.apply_chat_template(CHAT, tokenize=False, add_generation_prompt=True)
    assert text == tok.render(CHAT) == render_chat(CHAT, True, tok.default_system)
    assert text.startswith("<|im_start|>system\nYou are a helpful film assistant.<|im_end|>\n")
    assert hf(text, add_special_tokens=False)["input_ids"] == tok.encode_chat(CHAT)
    assert hf.eos_token == "<|im_end|>" and hf.pad_token == "<|endoftext|>"


_CACHE: dict = {}


def _tok() -> ChatTokenizer:
    from orin_unlearn.benchmarks.world import tiny_base_dir

    if "tok" not in _CACHE:
        _CACHE["tok"] = ChatTokenizer(tiny_base_dir())
    return _CACHE["tok"]
