"""`CachedChat`: a model answers each question once, whatever set of questions asks it again."""

from __future__ import annotations

import pytest

from orin_unlearn.benchmarks.cached_chat import CachedChat, remember_replies


class CountingChat:
    """Replies "reply to <question> (<n> tokens)" and records every question it generated for."""

    def __init__(self):
        self.generated: list[str] = []

    def answer_batch(self, conversations, *, prefixes=None, max_new_tokens=40, batch_size=64, on_batch=None):
        questions = [c[-1]["content"] for c in conversations]
        self.generated += questions
        if on_batch is not None:
            on_batch(len(questions))
        return [
            f"reply to {q}{'' if prefixes is None else ' after ' + prefixes[i]} ({max_new_tokens})"
            for i, q in enumerate(questions)
        ]


def ask(*questions: str) -> list[list[dict]]:
    return [[{"role": "user", "content": q}] for q in questions]


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ORIN_UNLEARN_CACHE", str(tmp_path / "cache"))


def test_a_question_is_generated_once_across_different_sets():
    inner = CountingChat()
    chat = CachedChat(inner, {"weights": "a"})
    assert chat.answer_batch(ask("q1", "q2")) == ["reply to q1 (40)", "reply to q2 (40)"]
    progress = []
    got = chat.answer_batch(ask("q3", "q2", "q1", "q3"), on_batch=progress.append)
    assert got == ["reply to q3 (40)", "reply to q2 (40)", "reply to q1 (40)", "reply to q3 (40)"]
    assert inner.generated == ["q1", "q2", "q3"]  # q3 once, though asked twice
    assert sum(progress) == 4  # the progress bar still counts every question asked


def test_model_settings_and_prefixes_are_separate_entries():
    inner = CountingChat()
    CachedChat(inner, {"weights": "a"}).answer_batch(ask("q"))
    CachedChat(inner, {"weights": "b"}).answer_batch(ask("q"))
    CachedChat(inner, {"weights": "a"}).answer_batch(ask("q"), max_new_tokens=8)
    got = CachedChat(inner, {"weights": "a"}).answer_batch(ask("q"), prefixes=["Sure:"])
    assert got == ["reply to q after Sure: (40)"]
    assert inner.generated == ["q", "q", "q", "q"]


def test_replies_generated_elsewhere_are_read_back():
    remember_replies({"weights": "a"}, ask("q1", "q2"), ["one", "two"], max_new_tokens=40)
    inner = CountingChat()
    assert CachedChat(inner, {"weights": "a"}).answer_batch(ask("q2", "q3")) == ["two", "reply to q3 (40)"]
    assert inner.generated == ["q3"]


def test_an_empty_prefill_reads_the_reply_asked_without_one():
    inner = CountingChat()
    CachedChat(inner, {"weights": "a"}).answer_batch(ask("q"))
    got = CachedChat(inner, {"weights": "a"}).answer_batch(ask("q"), prefixes=[""])
    assert got == ["reply to q (40)"]
    assert inner.generated == ["q"]
