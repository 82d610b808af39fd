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


class BundleError(ValueError):
    """A bundle or key that is corrupt, partial, unsafe, unsigned, signed by a key that is not
    trusted, or made of stages that failed their checks; the message names the file."""
