"""Typed errors of orin-unlearn; each message names the bad value."""

from __future__ import annotations


class ConfigError(ValueError):
    """A config key that does not exist or a value of the wrong type or range."""


class ManifestError(ValueError):
    """A stage folder whose manifest is missing, incomplete or does not match its inputs."""


class ExportGateError(RuntimeError):
    """An exported artifact that forgets less or retains less than its source allows."""


class DeviceMismatchError(RuntimeError):
    """An engine built for another GPU, TensorRT version or L4T release."""
