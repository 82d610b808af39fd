"""Typed errors of orin-unlearn, and the one table that maps them to exit statuses.

Each message names the bad value. A command's `main(argv)` raises; the CLI's single entry wrapper
(`edge/cli.py`) prints one line and exits with `exit_status(error)`.
"""

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


class MemoryBudgetError(RuntimeError):
    """The module cannot hold what a build or a served model needs; the message names both numbers."""

    def __init__(self, message: str, need_bytes: int = 0, available_bytes: int = 0):
        super().__init__(message)
        self.need_bytes = need_bytes
        self.available_bytes = available_bytes


class TensorRTUnavailableError(RuntimeError):
    """TensorRT or a CUDA GPU is missing on this machine."""


class EngineBuildError(RuntimeError):
    """TensorRT rejected the graph, the build, the plan or a refit."""


# the exit statuses of every command. EXIT_FAILED: it ran, and a bar or check failed;
# EXIT_NOT_JETSON: `jetson preflight` off a Jetson (a report, not an error)
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_NO_TENSORRT, EXIT_GATE, EXIT_NOT_JETSON, EXIT_NO_MEMORY = 3, 4, 5, 6
# error type -> exit status; the first row the error is an instance of wins. ValueError and
# OSError are bad input (a value, a file); ImportError an optional package that is not installed.
EXIT_STATUS: tuple[tuple[type[BaseException], int], ...] = (
    (TensorRTUnavailableError, EXIT_NO_TENSORRT),
    (ExportGateError, EXIT_GATE),
    (MemoryBudgetError, EXIT_NO_MEMORY),
    (ValueError, EXIT_USAGE),
    (OSError, EXIT_USAGE),
    (ImportError, EXIT_USAGE),
)


def exit_status(error: BaseException) -> int | None:
    """The exit status of an error a command raised, or None for a bug (shown as a traceback)."""
    for kind, status in EXIT_STATUS:
        if isinstance(error, kind):
            return status
    return None
