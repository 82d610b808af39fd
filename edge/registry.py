"""Named registries: a dict of functions filled by a decorator, e.g. the benchmarks' attacks,
the analyses and the unlearning loss terms. Adding an entry is one decorated function.

    ATTACKS: dict[str, Attack] = {}
    attack = registrar(ATTACKS)

    @attack("prefill")
    def prefill(...): ...
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

F = TypeVar("F", bound=Callable)


def registrar(table: dict[str, F]) -> Callable[[str], Callable[[F], F]]:
    """A decorator factory: `@registrar(table)(name)` stores the function in `table` under `name`."""

    def named(name: str) -> Callable[[F], F]:
        def register(fn: F) -> F:
            table[name] = fn
            return fn

        return register

    return named
