"""A linear probe for residual knowledge: can the concept's director still be read off the model's
activations, even when its replies refuse?

For a film concept: questions about a film that never name its director (its year, its lead, its
plot) are run through the model, and the residual stream at the last prompt token is kept at
every layer. Per layer, a logistic regression learns "this film is by <director>" from prompts
about the director's *other* films against prompts about other directors' films of the same years
(so it cannot learn the era instead), and is checked
on films held out of its training (does it generalise to films it never saw?). Then it is applied
to the prompts about the concept itself: the share classified as the director's is knowledge the
model still holds about the concept, readable linearly, whatever it answers.

    rows = director_probe(model, tokenizer, catalogue, concept, prompts)

torch is imported inside (the model's forward); the regression is numpy.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import numpy as np

from orin_unlearn.benchmarks.world.catalogue import Catalogue, Concept
from orin_unlearn.benchmarks.world.prompts import Prompt

FAMILIES = ("qa_year", "qa_lead", "qa_plot")  # questions about a film that do not name its director


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1e-2, steps: int = 500, lr: float = 0.5) -> tuple:
    """Weights and bias of an L2-regularised logistic regression (full-batch gradient descent on
    standardised features); returns (w, b, mean, std) for `predict`."""
    if len(set(y.tolist())) != 2:
        raise ValueError("a probe needs examples of both classes")
    mean, std = x.mean(0), x.std(0) + 1e-6
    z = (x - mean) / std
    w, b = np.zeros(z.shape[1]), 0.0
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-(z @ w + b)))
        w -= lr * (z.T @ (p - y) / len(y) + l2 * w)
        b -= lr * float((p - y).mean())
    return w, b, mean, std


def predict(fit: tuple, x: np.ndarray) -> np.ndarray:
    w, b, mean, std = fit
    return ((x - mean) / std) @ w + b > 0


def _about(prompts: Sequence[Prompt], title: str) -> list[Prompt]:
    return [p for p in prompts if p.family in FAMILIES and p.subjects == (title,)]


def residuals(model: Any, tokenizer: Any, prompts: Sequence[Prompt], batch_size: int = 32) -> np.ndarray:
    """[layers + 1, prompts, hidden]: the residual stream at each prompt's last token, prompts of
    similar length left-padded into batches (position ids count real tokens only, so each row is
    what it is alone, to float rounding; on SmolLM2, 2 CPU cores, 258 prompts take 26 s instead
    of 44 s one at a time)."""
    import torch

    from orin_unlearn.edge.batching import by_length, left_pad, positions_of

    rows = [tokenizer.encode_chat(list(p.messages)) for p in prompts]

    def run(idx: list[int]) -> list[np.ndarray]:
        ids, mask = left_pad([rows[i] for i in idx], tokenizer.pad_token_id)
        with torch.no_grad():
            hidden = model(
                input_ids=torch.from_numpy(ids),
                attention_mask=torch.from_numpy(mask),
                position_ids=torch.from_numpy(positions_of(mask)),
                output_hidden_states=True,
                logits_to_keep=1,  # the residual stream is read, the LM head barely
            ).hidden_states
        last = torch.stack([h[:, -1] for h in hidden], dim=1).float().numpy()  # [batch, layers + 1, hidden]
        return list(last)

    return np.stack(by_length([len(r) for r in rows], batch_size, run), axis=1)


def director_probe(
    model: Any,
    tokenizer: Any,
    catalogue: Catalogue,
    concept: Concept,
    prompts: Sequence[Prompt],
    seed: int = 0,
    per_film: int = 12,
    held_out_films: int = 2,
    apply_to: str | None = None,
) -> list[dict[str, float]]:
    """Per layer: the probe's accuracy on held-out films, and the share of the concept's prompts
    (or, with `apply_to`, another film's: the never-known control's floor) it reads as the
    concept's director's. Raises ValueError for a director concept (nothing to probe for) or when
    the director has too few other films to learn from."""
    if concept.kind != "title":
        raise ValueError(f"the director probe needs a film concept, not the {concept.kind} {concept.name!r}")
    film = concept.films[0]
    rng = random.Random(seed)
    own = [f for f in catalogue.films if f.director == film.director and f.title != film.title]
    mine = [f.title for f in own]
    # other directors' films from the same years, so the probe cannot learn the era instead
    years = (min(f.year for f in own), max(f.year for f in own)) if own else (0, 0)
    others = [
        f.title
        for f in catalogue.films
        if f.director != film.director and years[0] <= f.year <= years[1] and f.title != apply_to
    ]
    if len(mine) < held_out_films + 2:
        raise ValueError(f"{film.director} has {len(mine)} other films: too few to train a probe on")
    rng.shuffle(mine)
    others = rng.sample(others, len(mine))
    split = {
        "train": mine[held_out_films:] + others[held_out_films:],
        "val": mine[:held_out_films] + others[:held_out_films],
    }

    def sample(titles: list[str]) -> tuple[list[Prompt], np.ndarray]:
        chosen, labels = [], []
        for title in titles:
            about = _about(prompts, title)
            picked = rng.sample(about, min(per_film, len(about)))
            chosen += picked
            labels += [title in mine] * len(picked)
        return chosen, np.array(labels, dtype=np.float64)

    train, y_train = sample(split["train"])
    val, y_val = sample(split["val"])
    target = _about(prompts, apply_to or film.title)
    if not target:
        raise ValueError(f"no {FAMILIES} prompt is about {apply_to or film.title!r}")
    x_train, x_val, x_target = (residuals(model, tokenizer, s) for s in (train, val, target))
    rows = []
    for layer in range(x_train.shape[0]):
        fit = fit_logistic(x_train[layer], y_train)
        rows.append(
            {
                "layer": layer,
                "val_accuracy": float((predict(fit, x_val[layer]) == (y_val > 0.5)).mean()),
                "concept_as_director": float(predict(fit, x_target[layer]).mean()),
                "n_train": len(train),
                "n_concept": len(target),
            }
        )
    return rows
