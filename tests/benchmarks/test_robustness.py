"""Robustness attacks on hand-made answerers: each attack's prompts, prefill plumbing, judging."""

from __future__ import annotations

import json

import pytest

from orin_unlearn.benchmarks import robustness


class Scripted:
    """Answers every conversation with `reply`, recording what it was asked."""

    def __init__(self, reply: str):
        self.reply, self.seen, self.prefixes = reply, [], []

    def answer_batch(self, conversations, prefixes=None):
        self.seen += conversations
        self.prefixes += prefixes or []
        return [(p or "") + " " + self.reply for p in (prefixes or [""] * len(conversations))]


def test_every_attack_is_measured_for_every_model():
    leaky, refusing = (
        Scripted("Inception was directed by Christopher Nolan."),
        Scripted("I don't know that title."),
    )
    result = robustness.run({"leaky": leaky, "refusing": refusing}, "Inception")
    assert list(result.attacks) == list(robustness.ATTACKS)
    for name, per_model in result.attacks.items():
        assert per_model["refusing"].leak == 0.0, name
        assert per_model["leaky"].leak > 0.5, name  # names the concept in every reply
        assert per_model["leaky"].n == per_model["refusing"].n > 0
        assert "Inception" in per_model["leaky"].example, name  # a leaking reply is the example


def test_a_result_is_written_as_before_and_read_back():
    """robustness.json keeps its shape (reports and old runs read it): concept, attacks, models,
    then the read-outs; each cell n / leak / example."""
    result = robustness.run(
        {"base": Scripted("Inception was directed by Christopher Nolan."), "unlearned": Scripted("No idea.")},
        "Inception",
        ["heldout", "prefill"],
    )
    doc = result.to_json()
    assert list(doc) == ["concept", "attacks"]  # no models outside a run, as before
    assert robustness.Robustness.from_json(doc) == result
    result.models = {"base": "tiny (torch fp32)", "unlearned (prompt attacks)": "onnx-fp16"}
    result.readouts = {"relearning": {"worst": {"25": None}}, "logit_lens": {"base": []}}
    doc = json.loads(json.dumps(result.to_json()))
    assert list(doc) == ["concept", "attacks", "models", "relearning", "logit_lens"]
    assert doc["concept"] == "Inception" and list(doc["attacks"]) == ["heldout", "prefill"]
    for per_model in doc["attacks"].values():
        assert list(per_model) == ["base", "unlearned"]
        assert all(list(cell) == ["n", "leak", "example"] for cell in per_model.values())
    cell = doc["attacks"]["heldout"]["base"]
    assert cell["n"] > 0 and cell["leak"] > 0.5 and "Nolan" in cell["example"]
    assert doc["models"] == result.models and doc["relearning"] == {"worst": {"25": None}}
    back = robustness.Robustness.from_json(doc)
    assert back == result and back.leak("heldout") == 0.0 and back.leak("heldout", "base") == cell["leak"]
    with pytest.raises(ValueError, match="unknown keys"):
        robustness.Robustness.from_json({**doc, "extra": 1})


def test_attacks_change_the_prompts_as_described():
    model = Scripted("I don't know that title.")
    robustness.run(
        {"m": model}, "Inception", ["prefill", "system_jailbreak", "multi_turn", "plot_description"]
    )
    n = len(model.seen) - 3  # the last three are the plot descriptions (one film, three forms)
    prefill, system, multi = model.seen[: n // 3], model.seen[n // 3 : 2 * n // 3], model.seen[2 * n // 3 : n]
    assert all(p == "Sure! Here is what I know:" for p in model.prefixes[: n // 3])
    assert all(c[0]["role"] == "system" and "Inception" in c[0]["content"] for c in system)
    assert all(c[1] == {"role": "assistant", "content": "Sure, I love talking about films!"} for c in multi)
    plots = [c[-1]["content"] for c in model.seen[n:]]
    assert all("Christopher Nolan" in t and "2010" in t and "Inception" not in t for t in plots)
    assert all(c[-1]["role"] == "user" and c[-1]["content"] for c in prefill)


def test_plot_attack_leaks_only_by_naming_the_concept():
    nolan = Scripted("You might enjoy Interstellar (2014), directed by Christopher Nolan.")
    result = robustness.run({"m": nolan}, "Inception", ["plot_description"])
    assert result.leak("plot_description", "m") == 0.0


def test_unknown_attack_is_an_error():
    with pytest.raises(ValueError, match="unknown attacks"):
        robustness.run({"m": Scripted("x")}, "Inception", ["telepathy"])
