"""A data owner's training policy: what may be learned from one of its datasets.

Owns :class:`TrainingPolicy` (frozen, checked on construction) and
:class:`DpPolicy` (its DP-SGD part), the built-in defaults
(:data:`DEFAULT_POLICY`), :func:`policy_from_mapping` (the one parser behind
both a policy file and the node's policy flags), :func:`load_policy_file`
(JSON or TOML), :meth:`TrainingPolicy.check` (the rules checked on a
``train`` before any work) and the typed errors: :class:`PolicyError` (a bad
policy, at start: one line) and :class:`PolicyRefused` (a ``train`` the
policy does not allow: ``PERMISSION_DENIED``, naming the rule).

Rules, each a :class:`PolicyRule`:

- ``dp``: DP-SGD (per-sample clipping to ``max_grad_norm``, Gaussian noise
  of ``noise_multiplier * max_grad_norm``) with an ``(epsilon, delta)``
  budget the owner keeps per dataset (:mod:`node.fl.privacy`);
- ``min_batch``: the (expected) minibatch size a trainer asks for;
- ``min_samples``: the training rows one update is computed from;
- ``secure_aggregation_min_owners``: when ``K >= 2``, an update leaves only
  as a share of a secure-aggregation round (plain ``train`` is refused) and
  the owner's own aggregation party sums no round of fewer than K owners;
- ``max_model_elements`` and ``allowed_layers``: checked against the spec,
  before anything is built.

Why the defaults (:data:`DEFAULT_POLICY`): a dataset published without a
policy must not give its rows away to one hostile ``train`` (a wide first
layer isolating one row per neuron, one big batch, lr 1).  Only noise
stops that: clipping bounds what one row can move the model, and noise of
the same scale (sigma 1.0, clip 1.0, the usual DP-SGD setting, Abadi et al.
2016) hides it; the budget (epsilon 10, the upper end of what deployed
DP-SGD uses) bounds how often it can be asked; delta ``min(1e-5, n^-1.1)``
stays well below ``1/n``, the point where a mechanism could publish one
whole row.  A minimum batch of 16 keeps the noise per averaged gradient
(``sigma * C / batch``) small enough to learn; at least 32 training rows
per update keep tiny datasets from being a few rows' gradients; a model
of at most 1,000,000 elements (4 MB of float32) bounds the owner's work per
round and fits every example (secure aggregation stays off by default: it
needs a crypto provider, and DP already covers the attack).

Must not import asyncio, websockets, ``node.server`` or ``node.client``.
"""

from __future__ import annotations

import enum
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, FrozenSet, Iterable, Mapping, Optional

from protocol.errors import PermissionDenied, TesseraError
from protocol.federated import MAX_OWNERS
from protocol.records import DatasetPolicy

from .hyperparameters import MAX_BATCH_SIZE, Hyperparameters
from .layers import LayerName
from .spec import MAX_MODEL_ELEMENTS, ModelSpec

__all__ = [
    "PolicyRule",
    "DpPolicy",
    "TrainingPolicy",
    "PolicyError",
    "PolicyRefused",
    "DEFAULT_POLICY",
    "DEFAULT_NOISE_MULTIPLIER",
    "DEFAULT_MAX_GRAD_NORM",
    "DEFAULT_EPSILON",
    "DEFAULT_DELTA_CAP",
    "DEFAULT_MIN_BATCH",
    "DEFAULT_MIN_SAMPLES",
    "DEFAULT_MAX_MODEL_ELEMENTS",
    "MAX_EPSILON",
    "MAX_NOISE_MULTIPLIER",
    "MAX_GRAD_NORM",
    "POLICY_KEYS",
    "policy_from_mapping",
    "load_policy_file",
    "parse_layer_names",
]

DEFAULT_NOISE_MULTIPLIER = 1.0
DEFAULT_MAX_GRAD_NORM = 1.0
DEFAULT_EPSILON = 10.0
DEFAULT_DELTA_CAP = 1e-5
"""Default delta is ``min(DEFAULT_DELTA_CAP, n ** -1.1)`` for ``n`` training rows."""
DEFAULT_MIN_BATCH = 16
DEFAULT_MIN_SAMPLES = 32
DEFAULT_MAX_MODEL_ELEMENTS = 1_000_000

MAX_EPSILON = 1e6
MAX_NOISE_MULTIPLIER = 1e4
MAX_GRAD_NORM = 1e6


class PolicyRule(str, enum.Enum):
    """The rules of a training policy, as named in refusals, files and summaries."""

    DP = "dp"
    EPSILON = "epsilon"
    MIN_BATCH = "min_batch"
    MIN_SAMPLES = "min_samples"
    SECURE_AGGREGATION = "secure_aggregation_min_owners"
    MAX_MODEL_ELEMENTS = "max_model_elements"
    ALLOWED_LAYERS = "allowed_layers"


class PolicyError(TesseraError, ValueError):
    """A policy (file or flags) is invalid; owner side only, reported at start as one line."""

    @classmethod
    def for_key(cls, source: str, key: str, reason: str) -> PolicyError:
        return cls(f"{source}: {key}: {reason}", {"source": source, "key": key, "reason": reason})

    @property
    def key(self) -> str:
        return str(self.details.get("key", ""))

    @property
    def reason(self) -> str:
        return str(self.details.get("reason", self.message))


class PolicyRefused(PermissionDenied):
    """A ``train`` its dataset's policy does not allow; the message names the rule and its limit.

    Built from the policy (the operator's limits) and the request only,
    never from the dataset's values.
    """

    @classmethod
    def for_rule(cls, dataset: str, rule: PolicyRule, reason: str, limit: int | float | None = None) -> PolicyRefused:
        return cls(
            f"the training policy of dataset {dataset!r} refuses this: {rule.value}: {reason}",
            {"dataset": dataset, "rule": rule.value, "limit": limit},
        )

    @classmethod
    def for_secure_round(cls, required: int, owners: int) -> PolicyRefused:
        """An aggregation party holding an owner's own share refuses a sum over too few owners."""
        rule = PolicyRule.SECURE_AGGREGATION.value
        return cls(
            f"a data owner's training policy refuses this: {rule}: its update is summed only with at least "
            f"{required} owners, not {owners}",
            {"rule": rule, "limit": required},
        )


@dataclass(frozen=True, slots=True)
class DpPolicy:
    """DP-SGD at the owner: clip each sample's gradient, add Gaussian noise, charge the budget.

    ``epsilon`` is the dataset's whole budget (every job and round of every
    principal, persisted); ``delta`` ``None`` means ``min(1e-5, n^-1.1)``
    for the dataset's ``n`` training rows (:meth:`delta_for`).
    """

    noise_multiplier: float = DEFAULT_NOISE_MULTIPLIER
    max_grad_norm: float = DEFAULT_MAX_GRAD_NORM
    epsilon: float = DEFAULT_EPSILON
    delta: Optional[float] = None

    def __post_init__(self) -> None:
        _positive("noise_multiplier", self.noise_multiplier, MAX_NOISE_MULTIPLIER)
        _positive("max_grad_norm", self.max_grad_norm, MAX_GRAD_NORM)
        _positive("epsilon", self.epsilon, MAX_EPSILON)
        if self.delta is not None and not (_is_number(self.delta) and 0 < self.delta < 1):
            raise PolicyError.for_key("policy", "delta", f"must be a number in (0, 1), got {self.delta!r}")
        for name in ("noise_multiplier", "max_grad_norm", "epsilon", "delta"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, float(value))  # 10 in a TOML file is an int

    def delta_for(self, samples: int) -> float:
        """The delta this dataset is accounted at: the policy's, or ``min(1e-5, n^-1.1)``."""
        if self.delta is not None:
            return self.delta
        auto: float = math.pow(max(samples, 1), -1.1)
        return min(DEFAULT_DELTA_CAP, auto)


@dataclass(frozen=True, slots=True)
class TrainingPolicy:
    """What a ``train`` on one dataset must respect, whatever the trainer asks.

    ``dp`` ``None`` is an explicit opt-out of DP-SGD (the operator's
    ``--no-dp`` or ``dp = false``); ``secure_min_owners`` 0 allows plain
    ``train``; ``allowed_layers`` ``None`` allows the whole allowlist.
    """

    dp: Optional[DpPolicy] = field(default_factory=DpPolicy)
    min_batch: int = DEFAULT_MIN_BATCH
    min_samples: int = DEFAULT_MIN_SAMPLES
    secure_min_owners: int = 0
    max_model_elements: int = DEFAULT_MAX_MODEL_ELEMENTS
    allowed_layers: Optional[FrozenSet[LayerName]] = None

    def __post_init__(self) -> None:
        _count("min_batch", self.min_batch, 1, MAX_BATCH_SIZE)
        _count("min_samples", self.min_samples, 1, 2**62)
        _count("max_model_elements", self.max_model_elements, 1, MAX_MODEL_ELEMENTS)
        if type(self.secure_min_owners) is not int or not (
            self.secure_min_owners == 0 or 2 <= self.secure_min_owners <= MAX_OWNERS
        ):
            raise PolicyError.for_key(
                "policy", PolicyRule.SECURE_AGGREGATION.value,
                f"must be 0 (plain train allowed) or an integer in [2, {MAX_OWNERS}], got {self.secure_min_owners!r}",
            )
        if self.allowed_layers is not None and not self.allowed_layers:
            raise PolicyError.for_key("policy", PolicyRule.ALLOWED_LAYERS.value, "must name at least one layer")

    def check(self, dataset: str, spec: ModelSpec, hyper: Hyperparameters, *, secure: bool, samples: int) -> None:
        """Refuse a ``train`` of ``spec`` with ``hyper`` on ``samples`` training rows.

        Cheap and allocation-free (the spec's element count was computed
        when it was checked): run it on the loop, before any work.  Raises
        :class:`PolicyRefused` naming the first rule broken.
        """
        if self.allowed_layers is not None:
            for index, layer in enumerate(spec.layers):
                if layer.layer not in self.allowed_layers:
                    allowed = ", ".join(sorted(name.value for name in self.allowed_layers))
                    raise PolicyRefused.for_rule(
                        dataset, PolicyRule.ALLOWED_LAYERS,
                        f"layer {index} ({layer.layer.value}) is not allowed here; allowed: {allowed}",
                    )
        if spec.elements > self.max_model_elements:
            raise PolicyRefused.for_rule(
                dataset, PolicyRule.MAX_MODEL_ELEMENTS,
                f"the model has {spec.elements} elements, more than the limit of {self.max_model_elements}",
                self.max_model_elements,
            )
        if self.secure_min_owners and not secure:
            raise PolicyRefused.for_rule(
                dataset, PolicyRule.SECURE_AGGREGATION,
                f"updates leave only through secure aggregation with at least {self.secure_min_owners} owners; "
                "plain train is refused",
                self.secure_min_owners,
            )
        if hyper.batch_size < self.min_batch:
            raise PolicyRefused.for_rule(
                dataset, PolicyRule.MIN_BATCH,
                f"batch_size {hyper.batch_size} is below the minimum of {self.min_batch}", self.min_batch,
            )
        if samples < max(self.min_samples, self.min_batch):
            raise PolicyRefused.for_rule(
                dataset, PolicyRule.MIN_SAMPLES,
                f"an update must come from at least {max(self.min_samples, self.min_batch)} training rows",
                self.min_samples,
            )

    def summary(self, samples: int, remaining: Optional[float]) -> DatasetPolicy:
        """What the owner announces: the limits, the accounting delta and the budget left."""
        layers = None if self.allowed_layers is None else tuple(sorted(n.value for n in self.allowed_layers))
        dp = self.dp
        return DatasetPolicy(
            dp=dp is not None,
            epsilon=None if dp is None else dp.epsilon,
            epsilon_remaining=None if dp is None else remaining,
            delta=None if dp is None else dp.delta_for(samples),
            noise_multiplier=None if dp is None else dp.noise_multiplier,
            max_grad_norm=None if dp is None else dp.max_grad_norm,
            min_batch=self.min_batch,
            min_samples=self.min_samples,
            secure_min_owners=self.secure_min_owners,
            max_model_elements=self.max_model_elements,
            allowed_layers=layers,
        )

    def describe(self, samples: int) -> str:
        """One line for the node's log (limits only)."""
        dp = self.dp
        parts = [
            "DP off" if dp is None else
            f"DP-SGD sigma {dp.noise_multiplier:g} clip {dp.max_grad_norm:g} "
            f"epsilon {dp.epsilon:g} delta {dp.delta_for(samples):.3g}",
            f"min batch {self.min_batch}",
            f"min samples {self.min_samples}",
            f"secure aggregation {'off' if not self.secure_min_owners else f'>= {self.secure_min_owners} owners'}",
            f"max {self.max_model_elements} model elements",
        ]
        if self.allowed_layers is not None:
            parts.append("layers " + ",".join(sorted(n.value for n in self.allowed_layers)))
        return "; ".join(parts)


def _is_number(value: object) -> bool:
    return type(value) in (int, float) and math.isfinite(float(value))  # type: ignore[arg-type]


def _positive(key: str, value: object, limit: float) -> None:
    if not _is_number(value) or not 0 < float(value) <= limit:  # type: ignore[arg-type]
        raise PolicyError.for_key("policy", key, f"must be a number in (0, {limit:g}], got {value!r}")


def _count(key: str, value: object, low: int, high: int) -> None:
    if type(value) is not int or not low <= value <= high:
        raise PolicyError.for_key("policy", key, f"must be an integer in [{low}, {high}], got {value!r}")


_LAYERS_BY_LOWER = {name.value.lower(): name for name in LayerName}


def parse_layer_names(value: object) -> FrozenSet[LayerName]:
    """``["Linear", "relu"]`` or ``"Linear,ReLU"`` -> layer names (case-insensitive); else PolicyError."""
    items: Iterable[object]
    if isinstance(value, str):
        items = [part.strip() for part in value.split(",") if part.strip()]
    elif isinstance(value, (list, tuple)):
        items = value
    else:
        raise PolicyError.for_key("policy", "allowed_layers", "must be a list of layer names")
    names = set()
    for item in items:
        found = _LAYERS_BY_LOWER.get(item.lower()) if isinstance(item, str) else None
        if found is None:
            valid = ", ".join(name.value for name in LayerName)
            raise PolicyError.for_key("policy", "allowed_layers", f"unknown layer {str(item)[:40]!r}; valid: {valid}")
        names.add(found)
    if not names:
        raise PolicyError.for_key("policy", "allowed_layers", "must name at least one layer")
    return frozenset(names)


_DP_KEYS = ("epsilon", "delta", "noise_multiplier", "max_grad_norm")

POLICY_KEYS = (
    "dp", *_DP_KEYS, "min_batch", "min_samples", "secure_aggregation_min_owners",
    "max_model_elements", "allowed_layers",
)
"""Every key a policy file (or the flags) may set; anything else is refused."""


def policy_from_mapping(values: Mapping[str, object], source: str) -> TrainingPolicy:
    """A policy from ``values`` (keys of :data:`POLICY_KEYS`); missing keys take the defaults.

    ``source`` names where the values came from in errors (a file, "the
    command line").  ``dp = false`` with a DP key is refused: an operator
    who turns DP off must not believe a budget still applies.
    """
    for key in values:
        if key not in POLICY_KEYS:
            raise PolicyError.for_key(source, str(key)[:40], "unknown key; valid: " + ", ".join(POLICY_KEYS))
    try:
        dp_on = values.get("dp", True)
        if type(dp_on) is not bool:
            raise PolicyError.for_key("policy", "dp", f"must be true or false, got {dp_on!r}")
        dp_values = {key: values[key] for key in _DP_KEYS if key in values}
        if not dp_on and dp_values:
            raise PolicyError.for_key("policy", next(iter(dp_values)), "does not apply when dp is false")
        dp = DpPolicy(**dp_values) if dp_on else None  # type: ignore[arg-type]
        layers = values.get("allowed_layers")
        return TrainingPolicy(
            dp=dp,
            min_batch=values.get("min_batch", DEFAULT_MIN_BATCH),  # type: ignore[arg-type]
            min_samples=values.get("min_samples", DEFAULT_MIN_SAMPLES),  # type: ignore[arg-type]
            secure_min_owners=values.get("secure_aggregation_min_owners", 0),  # type: ignore[arg-type]
            max_model_elements=values.get("max_model_elements", DEFAULT_MAX_MODEL_ELEMENTS),  # type: ignore[arg-type]
            allowed_layers=None if layers is None else parse_layer_names(layers),
        )
    except PolicyError as exc:
        raise PolicyError.for_key(source, exc.key, exc.reason) from None


_READERS: dict[str, Callable[[str], object]] = {".json": json.loads}
if sys.version_info >= (3, 11):  # tomllib is in the standard library from 3.11 on
    import tomllib

    _READERS[".toml"] = tomllib.loads


def load_policy_file(path: Path) -> TrainingPolicy:
    """A policy from a ``.json`` (an object) or ``.toml`` file; PolicyError (one line) otherwise."""
    source = f"policy file {str(path)!r}"
    reader = _READERS.get(path.suffix.lower())
    if reader is None:
        kinds = " or ".join(sorted(_READERS))
        raise PolicyError.for_key(source, "file", f"expected a {kinds} file")
    try:
        values = reader(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PolicyError.for_key(source, "file", f"cannot read it: {exc.strerror or exc}") from None
    except ValueError as exc:  # json.JSONDecodeError and tomllib.TOMLDecodeError both are
        raise PolicyError.for_key(source, "file", " ".join(f"not valid {path.suffix[1:]}: {exc}".split())) from None
    if not isinstance(values, dict):
        raise PolicyError.for_key(source, "file", "expected a map of policy keys")
    return policy_from_mapping(values, source)


DEFAULT_POLICY = TrainingPolicy()
"""A dataset's policy when its operator set none: DP-SGD on (see the module docstring)."""
