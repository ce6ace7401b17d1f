"""Errors and warnings of dynlab.

Every error a user can cause is a :class:`DynlabError`; the CLI prints its message as one line
and exits non-zero. Anything else escaping to the user is a bug in dynlab.
"""

from __future__ import annotations


class DynlabError(Exception):
    """Base class of all errors caused by input, configuration or the environment."""


class StoreError(DynlabError):
    """The store is missing, malformed, or the requested run/tensor does not exist."""


class RunLockedError(StoreError):
    """Another writer holds the run's lock."""


class CheckpointError(DynlabError):
    """A checkpoint file cannot be read, or its content conflicts with the run."""


class ProbeError(CheckpointError):
    """Probe data (predictions, labels, activations, layer descriptions) that is malformed or
    conflicts with what the run stores; a probe model or probe file that cannot be used."""


class MissingDependencyError(DynlabError):
    """An optional dependency is needed; the message names the extra to install."""


class DynlabWarning(UserWarning):
    """Base class of dynlab's warnings."""


class NonFiniteWarning(DynlabWarning):
    """A stored tensor contains NaN or Inf values."""


class DuplicateContentWarning(DynlabWarning):
    """Two different steps of a run hold identical weights."""


def require(module: str, extra: str):
    """Import an optional dependency, or fail with the extra that provides it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"{module} is needed for this; install it with: pip install 'dynlab[{extra}]'"
        ) from exc
