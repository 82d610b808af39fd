"""Dataclass configs: the dataclass is the schema, YAML holds values, `key=value` overrides.

Unknown keys and values of the wrong type raise `ConfigError` naming the key and the value.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from orin_unlearn.edge.errors import ConfigError

T = TypeVar("T")


def coerce(key: str, value: Any, kind: Any) -> Any:
    """`value` checked (and widened: int to float, list to tuple) as type `kind`; a nested
    dataclass is built from a mapping, its keys named `key.entry` in errors."""
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(kind)
        if value is None and type(None) in options:
            return None
        for option in (o for o in options if o is not type(None)):
            try:
                return coerce(key, value, option)
            except ConfigError:
                continue
        raise ConfigError(f"config key {key!r}: value {value!r} does not fit {kind}")
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config key {key!r}: expected a mapping, got {value!r}")
        key_kind, value_kind = typing.get_args(kind) or (Any, Any)
        return {
            coerce(f"{key}.{k}", k, key_kind): coerce(f"{key}.{k}", v, value_kind) for k, v in value.items()
        }
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"config key {key!r}: expected a list, got {value!r}")
        (inner, *_) = typing.get_args(kind) or (Any,)
        items = [coerce(key, v, inner) for v in value]
        return items if origin is list else tuple(items)
    if kind is Any:
        return value
    if dataclasses.is_dataclass(kind) and isinstance(kind, type):
        if isinstance(value, kind):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"config key {key!r}: expected a mapping, got {value!r}")
        return build_config(kind, value, prefix=key)
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"config key {key!r}: expected bool, got {value!r}")
    if kind is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if kind is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind is str and isinstance(value, str):
        return value
    if isinstance(kind, type) and not isinstance(value, bool) and isinstance(value, kind):
        return value
    raise ConfigError(f"config key {key!r}: expected {getattr(kind, '__name__', kind)}, got {value!r}")


def build_config(cls: type[T], values: dict[str, Any], prefix: str = "") -> T:
    """Instantiate dataclass `cls` from `values`, checking every key and type; `prefix` names a
    nested config's keys (`lunar.steps`)."""
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(values) - set(fields))
    if unknown and prefix:
        raise ConfigError(f"config key '{prefix}.{unknown[0]}': unknown; {prefix} takes {sorted(fields)}")
    if unknown:
        raise ConfigError(f"unknown config key(s) {unknown} for {cls.__name__}; known: {sorted(fields)}")
    checked = {k: coerce(f"{prefix}.{k}" if prefix else k, v, hints[k]) for k, v in values.items()}
    try:
        return cls(**checked)
    except (TypeError, ValueError) as e:
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(f"{cls.__name__}: {e}") from e


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """`["lr=1e-3", "layers=[1,2]"]` -> `{"lr": 0.001, "layers": [1, 2]}` (values parsed as YAML)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        out[key.strip()] = yaml.safe_load(raw)
    return out


def read_values(path: str | Path | None = None, overrides: list[str] | None = None) -> dict[str, Any]:
    """Values from a YAML file (optional), then `key=value` overrides; `section.key=value` sets one
    entry of a nested mapping and keeps the others."""
    values: dict[str, Any] = {}
    if path is not None:
        loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {path} must hold a mapping, got {type(loaded).__name__}")
        values.update(loaded)
    for key, value in parse_overrides(overrides or []).items():
        section, dot, name = key.partition(".")
        if not dot:
            values[key] = value
            continue
        mapping = values.get(section, {})
        if not isinstance(mapping, dict):
            raise ConfigError(f"config key {section!r}: expected a mapping, got {mapping!r}")
        values[section] = {**mapping, name: value}
    return values


def load_config(cls: type[T], path: str | Path | None = None, overrides: list[str] | None = None) -> T:
    """Values from a YAML file (optional), then `key=value` overrides, checked against `cls`."""
    return build_config(cls, read_values(path, overrides))
