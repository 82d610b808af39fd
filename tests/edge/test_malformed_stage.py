"""Malformed files inside a stage whose manifest is valid (issue 30, finding 5): imported
checkpoints bring such files. Each is a typed one-line error, never a traceback, a 7 TiB
allocation or a template that keeps `serve` from ever listening."""

from __future__ import annotations

import json
import shutil
import time

import pytest

from orin_unlearn.edge import chat_limits, cli
from orin_unlearn.edge.chat import ChatTemplate, ChatTemplateError, ChatTemplateLimitError
from orin_unlearn.edge.errors import EXIT_USAGE
from orin_unlearn.edge.formats import make_manifest, write_manifest
from orin_unlearn.edge.server import kiosk_choices
from orin_unlearn.edge.tokenizer import ChatTokenizer
from tests.edge.bundles import error_line

NESTED_LOOPS = "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}"
SILENT_LOOPS = (
    "{% set r = range(100000) %}{% for a in r %}{% for b in r %}{% endfor %}{% endfor %}{{ messages }}"
)


@pytest.fixture
def stage(onnx_dir, tmp_path):
    copy = tmp_path / "stage"
    shutil.copytree(onnx_dir, copy)
    return copy


def restamp(stage) -> None:
    """Recompute the stage's manifest, as an importer that wrote the file would."""
    write_manifest(stage, make_manifest("onnx-fp32", {}, None, {}, True))


def config_edit(change):
    def edit(stage):
        config = json.loads((stage / "config.json").read_text())
        (stage / "config.json").write_text(json.dumps(change(config)))

    return edit


CASES = {
    "tokenizer_config.json is []": (
        lambda s: (s / "tokenizer_config.json").write_text("[]"),
        "tokenizer_config.json is not a JSON object",
    ),
    "config.json without max_position_embeddings": (
        config_edit(lambda c: {k: v for k, v in c.items() if k != "max_position_embeddings"}),
        "max_position_embeddings is null, not a context length",
    ),
    "config.json is []": (lambda s: (s / "config.json").write_text("[]"), "config.json is not a JSON object"),
    "max_position_embeddings is 10^12": (
        config_edit(lambda c: c | {"max_position_embeddings": 10**12}),
        "max_position_embeddings is 1000000000000, not a context length",
    ),
    "generation_config.json is []": (
        lambda s: (s / "generation_config.json").write_text("[]"),
        "generation_config.json is not a JSON object",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_malformed_file_with_a_valid_manifest_is_one_line(case, stage, capsys):
    damage, message = CASES[case]
    damage(stage)
    restamp(stage)
    assert cli.main(["ask", "--model", str(stage), "--max-new-tokens", "1", "Which film?"]) == EXIT_USAGE
    assert message in error_line(capsys)


def test_a_context_the_memory_cannot_hold_is_refused_by_the_budget(stage, capsys, monkeypatch):
    """A context below the sanity bound whose full KV cache is larger than the machine's memory."""
    from orin_unlearn.edge.device import memory_budget

    monkeypatch.setattr(memory_budget, "mem_total", lambda root="/": 64 << 20)  # a 64 MiB machine
    config_edit(lambda c: c | {"max_position_embeddings": 1 << 20})(stage)
    restamp(stage)
    assert cli.main(["ask", "--model", str(stage), "--max-new-tokens", "1", "Which film?"]) == 6
    err = error_line(capsys)
    assert "a full context of 1048576 tokens (max_position_embeddings) needs a KV cache of" in err


def test_kiosk_json_that_is_not_an_object_is_one_line(stage):
    (stage / "kiosk.json").write_text("[]")
    with pytest.raises(ValueError, match='kiosk.json: expected {"moods"'):
        kiosk_choices(stage)
    (stage / "kiosk.json").write_text("{")
    with pytest.raises(ValueError, match="kiosk.json is not valid JSON"):
        kiosk_choices(stage)


@pytest.mark.parametrize("template", [NESTED_LOOPS, SILENT_LOOPS])
def test_a_template_that_loops_for_hours_is_stopped_at_load(template, stage, monkeypatch):
    monkeypatch.setattr(chat_limits, "RENDER_SECONDS", 0.5)
    (stage / "chat_template.jinja").write_text(template)
    started = time.monotonic()
    with pytest.raises(ChatTemplateLimitError, match=r"ran for more than 0.5 s"):
        ChatTokenizer(stage)
    assert time.monotonic() - started < 5


def test_serve_refuses_a_looping_template_in_one_line(stage, capsys, monkeypatch):
    monkeypatch.setattr(chat_limits, "RENDER_SECONDS", 0.5)
    (stage / "chat_template.jinja").write_text(NESTED_LOOPS)
    restamp(stage)
    assert cli.main(["serve", "--model", str(stage)]) == EXIT_USAGE
    assert "ran for more than 0.5 s" in error_line(capsys)


@pytest.mark.parametrize(
    "template, message",
    [
        ("{% for a in range(100000) %}{{ 'x' * 1000 }}{% endfor %}", "wrote more than"),
        ("{{ 2 ** 100000 }}", "may not raise to the power"),
        ("{{ 'x' * 1000000000 }}", "may not repeat a value"),
    ],
)
def test_a_template_that_writes_gigabytes_is_refused(template, message):
    started = time.monotonic()
    with pytest.raises(ChatTemplateError, match=message):
        ChatTemplate(template, ["<|im_end|>"])
    assert time.monotonic() - started < 5


def test_a_finished_render_is_never_interrupted_later(monkeypatch):
    """The timer of a render that ended in time is disarmed: nothing lands in the thread after it."""
    monkeypatch.setattr(chat_limits, "RENDER_SECONDS", 0.05)
    template = ChatTemplate("{% for m in messages %}{{ m.content }}<|im_end|>{% endfor %}", ["<|im_end|>"])
    for _ in range(50):
        assert template.render([{"role": "user", "content": "hi"}]) == "hi<|im_end|>"
    deadline = time.monotonic() + 0.3
    while time.monotonic() < deadline:  # a stray timer would raise in this loop
        sum(range(1000))
