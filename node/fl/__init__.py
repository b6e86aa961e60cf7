"""Federated learning, the network-free core: datasets, model specs, local training, FedAvg.

A data owner loads its datasets (:func:`load_dataset`), receives a model as a
:class:`ModelSpec` plus state tensors, trains locally
(:func:`train_locally`) and returns a :class:`LocalResult`; the trainer
averages results with :func:`fedavg`.  What an owner allows is
its dataset's :class:`TrainingPolicy` (DP-SGD with a budget by default,
minimum batch and rows, secure aggregation only, model limits); under DP
it trains with :func:`train_privately` (DP-SGD) instead, after charging
the work to a :class:`PrivacyLedger`.
:func:`plain_fedavg` is the in-process reference the networked rounds must
match bit for bit, using the seeds of :func:`owner_seed`.

:class:`FedAvg` runs a job over datasets found on the network; it reaches
them only through the injected :class:`OwnerDataset` / :class:`Participant`
collaborators (``node.client`` provides them, and the progress bar),
round by round through :func:`run_rounds`, the same loop a trainer node
runs: a pure :class:`Strategy` (:class:`FedAvgStrategy`) configures and
aggregates each round, an :class:`Aggregation` protocol
(:class:`PlainAggregation`, or :class:`SecureRounds` for secure
aggregation) says how the updates reach the trainer.

Nothing here does I/O beyond reading the owner's dataset and policy files
and keeping the :class:`PrivacyLedger`'s one JSON file (blocking: call it off the event
loop).  This package must not import asyncio, websockets, tqdm, ``peer``,
``node.server`` or ``node.client`` (a test enforces it).
"""

from __future__ import annotations

from .aggregate import RoundResult, fedavg, round_result, weighted_metrics
from .aggregation import Aggregation, AggregationRound, PlainAggregation, RoundUpdates
from .datasets import Dataset, DatasetInfo, load_arrays, load_dataset, make_dataset, parse_dataset_spec
from .errors import (
    AggregationError,
    DatasetError,
    DpUnsupportedLayer,
    HyperparameterError,
    IncompatibleData,
    LedgerError,
    PrivacyBudgetExhausted,
    PrivacyConfigError,
    SpecError,
    SpecTooLarge,
    StateMismatch,
    UnsupportedLayer,
)
from .failures import describe_failure, is_dropout
from .fedavg import DEFAULT_ROUND_TIMEOUT, FedAvg
from .history import History
from .hyperparameters import Hyperparameters, LossName, OptimizerName, parse_loss, parse_optimizer
from .layers import LAYERS, LayerName
from .job_errors import AggregationFailed, JobError, RoundFailed
from .ledger import Mechanism, PrivacyLedger, epsilon_of
from .local import evaluate, evaluate_heldout, prepare_data, train_locally
from .policy import DEFAULT_POLICY, DpPolicy, PolicyError, PolicyRefused, PolicyRule, TrainingPolicy, load_policy_file
from .privacy import DpSgd, dp_schedule, train_privately
from .links import DatasetRef, OwnerDataset, Participant, PartyLink
from .plan import JobPlan
from .progress import RoundObserver
from .reference import ReferenceRun, plain_fedavg
from .results import LocalResult, Metrics, PrivacyCharge
from .rounds import Links, aggregation_for, run_rounds
from .secure import UpdateOutOfRange
from .secure_rounds import SecureRounds
from .seeds import owner_seed
from .spec import MAX_LAYERS, MAX_MODEL_ELEMENTS, LayerSpec, ModelSpec, State, build_model, model_to_spec, state_layout
from .strategy import FedAvgStrategy, RoundConfig, Strategy
from .wire import TrainTask

__all__ = [
    "TrainingPolicy",
    "DpPolicy",
    "PolicyRule",
    "PolicyError",
    "PolicyRefused",
    "DEFAULT_POLICY",
    "load_policy_file",
    "PrivacyCharge",
    "AggregationError",
    "DatasetError",
    "HyperparameterError",
    "IncompatibleData",
    "SpecError",
    "SpecTooLarge",
    "StateMismatch",
    "UnsupportedLayer",
    "DpUnsupportedLayer",
    "PrivacyConfigError",
    "PrivacyBudgetExhausted",
    "LedgerError",
    "DpSgd",
    "dp_schedule",
    "train_privately",
    "Mechanism",
    "epsilon_of",
    "PrivacyLedger",
    "Dataset",
    "DatasetInfo",
    "load_arrays",
    "load_dataset",
    "make_dataset",
    "parse_dataset_spec",
    "Hyperparameters",
    "LossName",
    "OptimizerName",
    "parse_loss",
    "parse_optimizer",
    "LAYERS",
    "LayerName",
    "LayerSpec",
    "ModelSpec",
    "State",
    "MAX_LAYERS",
    "MAX_MODEL_ELEMENTS",
    "build_model",
    "model_to_spec",
    "state_layout",
    "LocalResult",
    "Metrics",
    "evaluate",
    "evaluate_heldout",
    "prepare_data",
    "train_locally",
    "RoundResult",
    "round_result",
    "fedavg",
    "weighted_metrics",
    "ReferenceRun",
    "plain_fedavg",
    "owner_seed",
    "FedAvg",
    "History",
    "JobPlan",
    "run_rounds",
    "DEFAULT_ROUND_TIMEOUT",
    "JobError",
    "RoundFailed",
    "AggregationFailed",
    "UpdateOutOfRange",
    "Strategy",
    "RoundConfig",
    "FedAvgStrategy",
    "Aggregation",
    "AggregationRound",
    "RoundUpdates",
    "PlainAggregation",
    "SecureRounds",
    "aggregation_for",
    "Links",
    "is_dropout",
    "describe_failure",
    "RoundObserver",
    "DatasetRef",
    "OwnerDataset",
    "Participant",
    "PartyLink",
    "TrainTask",
]
