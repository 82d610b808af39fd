"""Forget targets: what the model should answer to a forget prompt after unlearning.

- `refuse`: a short fluent refusal ("I don't know that title."; the seeds' literal "UNKNOWN" is a
  config value away);
- `substitute`: where the concept was the *recommendation*, the best other catalogue film that
  fits the same request (so a kiosk still recommends something valid); questions about the
  concept itself are refused.
"""

from __future__ import annotations

from orin_unlearn.benchmarks.forgetting import recommends_concept
from orin_unlearn.benchmarks.world import Catalogue, Concept, Prompt, load_templates
from orin_unlearn.benchmarks.world.recommend import Request, rank


def substitute(prompt: Prompt, concept: Concept, catalogue: Catalogue) -> str | None:
    """The reference answer with the best non-concept film for the same request, or None."""
    ranked = rank(catalogue, Request.from_dict(prompt.request), exclude=concept.titles)
    if not ranked:
        return None
    film = ranked[0]
    template = load_templates()["families"][prompt.family]["answer"]
    return template.format(title=film.title, year=film.year, director=film.director)


def forget_target(prompt: Prompt, concept: Concept, catalogue: Catalogue, target: str, refusal: str) -> str:
    if target == "substitute" and recommends_concept(prompt, concept):
        return substitute(prompt, concept, catalogue) or refusal
    return refusal
