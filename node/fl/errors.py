"""Typed errors of federated learning.

Errors a data owner raises about what a trainer sent (a model spec, state
tensors, hyperparameters, a model that does not fit the data) subclass
:class:`protocol.errors.BadRequest`, so they cross the wire as
``BAD_REQUEST`` with their structured ``details``.  Errors that only happen
in one process (loading the owner's own files, averaging updates on the
trainer) subclass :class:`protocol.errors.TesseraError` without a code.

:class:`PrivacyBudgetExhausted` is a :class:`protocol.errors.PermissionDenied`
(the owner's policy refuses the work); :class:`DpUnsupportedLayer` an
:class:`UnsupportedLayer`.  A bad DP-SGD setting or a corrupt privacy
ledger is the owner's own configuration and has no code.

Every message is built from the fields.  Must not import asyncio,
websockets, ``node.server`` or ``node.client``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from protocol.errors import BadRequest, PermissionDenied, TesseraError

__all__ = [
    "DatasetError",
    "SpecError",
    "UnsupportedLayer",
    "SpecTooLarge",
    "StateMismatch",
    "HyperparameterError",
    "IncompatibleData",
    "AggregationError",
    "DpUnsupportedLayer",
    "PrivacyConfigError",
    "PrivacyBudgetExhausted",
    "LedgerError",
]

_SHOWN = 80
"""Longest piece of untrusted text quoted in a message."""


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."


class DatasetError(TesseraError, ValueError):
    """A dataset file is missing, unreadable or malformed (owner side only)."""

    @classmethod
    def for_file(cls, path: Path | str, reason: str) -> DatasetError:
        """One line whatever the library said: the CLI prints it as is."""
        reason = " ".join(reason.split())
        return cls(f"dataset {str(path)!r}: {reason}", {"path": str(path), "reason": reason})

    @classmethod
    def for_spec(cls, spec: str, reason: str, what: str = "dataset spec") -> DatasetError:
        shown = spec[:_SHOWN]
        return cls(f"{what} {shown!r}: {reason}", {"spec": shown, "reason": reason})


class SpecError(BadRequest, ValueError):
    """A model spec is invalid: unknown layer, bad argument, too many layers."""

    @classmethod
    def for_layer(cls, index: int, layer: str, reason: str) -> SpecError:
        return cls(
            f"layer {index} ({layer[:_SHOWN]}): {reason}",
            {"index": index, "layer": layer[:_SHOWN], "reason": reason},
        )

    @classmethod
    def for_arg(cls, index: int, layer: str, arg: str, value: object, reason: str) -> SpecError:
        return cls(
            f"layer {index} ({layer}) argument {arg[:_SHOWN]!r} = {_show(value)}: {reason}",
            {"index": index, "layer": layer, "arg": arg[:_SHOWN], "reason": reason},
        )

    @classmethod
    def for_spec(cls, reason: str) -> SpecError:
        return cls(f"model spec: {reason}", {"reason": reason})


class UnsupportedLayer(SpecError):
    """A layer (a module class, or a name in a spec) is not in the allowlist."""

    @classmethod
    def for_layer_name(cls, index: int, name: str, allowed: Iterable[str]) -> UnsupportedLayer:
        valid = ", ".join(sorted(allowed))
        return cls(
            f"layer {index} ({name[:_SHOWN]}) is not an allowlisted layer; valid layers: {valid}",
            {"index": index, "layer": name[:_SHOWN], "valid": valid},
        )


class SpecTooLarge(SpecError):
    """A spec would allocate more elements than the limit (checked before allocating)."""

    @classmethod
    def for_elements(cls, elements: int, limit: int) -> SpecTooLarge:
        return cls(
            f"model spec needs {elements} parameter and buffer elements, "
            f"more than the limit of {limit}",
            {"size": elements, "limit": limit},
        )


class StateMismatch(BadRequest, ValueError):
    """State tensors do not match the model: missing or extra keys, shapes, dtypes."""

    @classmethod
    def for_key(cls, key: str, reason: str) -> StateMismatch:
        return cls(f"state tensor {key[:_SHOWN]!r}: {reason}", {"key": key[:_SHOWN], "reason": reason})


class HyperparameterError(BadRequest, ValueError):
    """A hyperparameter is unknown, of the wrong type or out of range."""

    @classmethod
    def for_field(cls, field: str, value: object, reason: str) -> HyperparameterError:
        return cls(
            f"hyperparameter {field[:_SHOWN]!r} = {_show(value)}: {reason}",
            {"field": field[:_SHOWN], "value": _show(value), "reason": reason},
        )

    @classmethod
    def for_name(cls, field: str, name: object, valid: Iterable[str]) -> HyperparameterError:
        listed = ", ".join(valid)
        return cls(
            f"unknown {field} {_show(name)}; valid: {listed}",
            {"field": field, "value": _show(name), "valid": listed},
        )


class IncompatibleData(BadRequest, ValueError):
    """The model does not fit the dataset (input size, output size, label type)."""

    @classmethod
    def for_dataset(cls, dataset: str, reason: str) -> IncompatibleData:
        return cls(
            f"model does not fit dataset {dataset!r}: {reason}",
            {"dataset": dataset, "reason": reason},
        )


class AggregationError(TesseraError, ValueError):
    """Updates cannot be averaged: no updates, bad weights, mismatched keys or shapes."""

    @classmethod
    def for_update(cls, index: int, reason: str) -> AggregationError:
        return cls(f"update {index}: {reason}", {"index": index, "reason": reason})

    @classmethod
    def for_round(cls, reason: str) -> AggregationError:
        return cls(f"cannot aggregate: {reason}", {"reason": reason})


class DpUnsupportedLayer(UnsupportedLayer):
    """A layer DP-SGD cannot train: it couples the rows of a batch, or changes state outside the step."""

    @classmethod
    def for_dp(cls, index: int, layer: str, reason: str) -> DpUnsupportedLayer:
        return cls(
            f"layer {index} ({layer[:_SHOWN]}) cannot be trained with differential privacy: {reason}",
            {"index": index, "layer": layer[:_SHOWN], "reason": reason},
        )


class PrivacyConfigError(TesseraError, ValueError):
    """A DP-SGD setting or privacy budget is out of range (owner side only)."""

    @classmethod
    def for_field(cls, field: str, value: object, reason: str) -> PrivacyConfigError:
        return cls(f"{field} = {_show(value)}: {reason}", {"field": field, "value": _show(value), "reason": reason})


class PrivacyBudgetExhausted(PermissionDenied):
    """The work would take a dataset's spent epsilon past its budget; nothing was charged.

    Every number in it follows from the owner's policy and the request's
    hyperparameters, never from the rows.
    """

    @classmethod
    def for_dataset(cls, dataset: str, budget: float, spent: float, needed: float) -> PrivacyBudgetExhausted:
        return cls(
            f"privacy budget of dataset {dataset!r} exhausted: epsilon {spent:.4g} of {budget:.4g} "
            f"spent, this training would add {needed:.4g}",
            {"dataset": dataset, "budget": budget, "spent": spent, "needed": needed},
        )


class LedgerError(TesseraError, ValueError):
    """The privacy ledger file cannot be read, parsed or written (owner side only)."""

    @classmethod
    def for_file(cls, path: Path | str, reason: str) -> LedgerError:
        """One line whatever the cause: the node prints it as its startup failure."""
        reason = " ".join(reason.split())[:200]
        return cls(f"privacy ledger {str(path)!r}: {reason}", {"path": str(path), "reason": reason})
