"""Registry of unlearning methods: each module of this package is one method, a trainer registered
by name with `@method`; `method: <name>` in a config runs it. The recipe, the config's checks, the
CLI, the sweep and the comparison all read this registry, so adding a method is one new file here:

    @method("my_method", label="my method")
    def train(s: Session, mask, stats, score, progress) -> Trained:
        ...  # s.model (the base, frozen), mask {layer: neuron indices}, the probe's stats and scores
        return Trained(peft_model, history, mask)
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from orin_unlearn.train.unlearn.config import OPTIONAL, UnlearnConfig

if TYPE_CHECKING:
    import torch


@dataclass
class Trained:
    """What a method's trainer hands back: the trained model, its loss history, the mask the
    adapter was trained under, and method-specific results."""

    model: torch.nn.Module
    history: list[dict]
    mask: dict[int, torch.Tensor]
    results: dict = field(default_factory=dict)


def unmasked(cfg: UnlearnConfig) -> bool:
    return False


@dataclass(frozen=True)
class Method:
    """A registered method: its trainer and what the recipe and the config need to know of it."""

    name: str
    train: Callable[..., Trained]  # trainer(session, mask, probe stats, scores, progress)
    label: str  # how tables name it
    # True: a PEFT adapter on the frozen base (the recipe checks the base untouched and saves the
    # adapter); False: the base's own weights train (nothing is saved)
    adapter: bool = True
    masked: Callable[[UnlearnConfig], bool] = unmasked  # whether the update reads only the mask's neurons
    supports: frozenset[str] = frozenset()  # which of config.OPTIONAL it implements


METHODS: dict[str, Method] = {}


def method(
    name: str,
    label: str | None = None,
    adapter: bool = True,
    masked: Callable[[UnlearnConfig], bool] = unmasked,
    supports: tuple[str, ...] = (),
) -> Callable[[Callable[..., Trained]], Callable[..., Trained]]:
    """Register the decorated trainer as method `name` (see `Method` for the rest)."""
    unknown = sorted(set(supports) - set(OPTIONAL))
    if unknown:
        raise ValueError(f"method {name!r}: supports {unknown}, which are not among {OPTIONAL}")

    def register(fn: Callable[..., Trained]) -> Callable[..., Trained]:
        METHODS[name] = Method(name, fn, label or name, adapter, masked, frozenset(supports))
        return fn

    return register


def label(name: str) -> str:
    """The registered label of a method, or its name (a method a saved result names but this
    checkout lacks)."""
    return METHODS[name].label if name in METHODS else name


def _import_methods() -> None:
    """Import every module of this package: each registers its method."""
    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")


_import_methods()
