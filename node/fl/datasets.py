"""A data owner's datasets: parsing ``name=path``, loading, the held-out split.

Owns :class:`Dataset` (training rows, the held-out rows the owner keeps for
evaluation, and a :class:`DatasetInfo` summary that is all the network ever
sees), :func:`parse_dataset_spec`, :func:`load_dataset` and
:func:`make_dataset`.

Formats, chosen by file extension:

- ``.csv``: a header row, then numbers only; the label column is named by
  ``label_column`` (default ``"label"``), every other column is a feature.
  Labels that are all integers become int64 (class indices), else float32.
- ``.npz``: exactly two arrays, ``x`` (features, first dimension = samples)
  and ``y`` (labels), read with ``allow_pickle=False``: object arrays are
  refused.  Integer or bool labels become int64, float labels float32.
- ``.safetensors``: the same two tensors ``x`` and ``y``.

Features are always float32.  The held-out split is deterministic: a
permutation from ``torch.Generator().manual_seed(split_seed)``; the first
``round(samples * fraction)`` indices are held out (at least one and never
all when the fraction is positive); both parts keep the file's row order.

Every failure is a :class:`DatasetError` naming the file and the reason.
Must not import asyncio, websockets, ``node.server`` or ``node.client``.
"""

from __future__ import annotations

import csv
import math
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, List, Sequence, Tuple

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from protocol.records import MAX_DESCRIPTION_CHARS, MAX_TAGS, DatasetSummary, normalize_tag

from .errors import DatasetError

__all__ = [
    "DATASET_NAME_PATTERN",
    "DEFAULT_HELDOUT_FRACTION",
    "ARRAY_KEYS",
    "DatasetInfo",
    "Dataset",
    "parse_dataset_spec",
    "load_dataset",
    "load_arrays",
    "make_dataset",
]

DATASET_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
"""A dataset name: 1-64 letters, digits, ``_ . -``, not starting with punctuation."""

DEFAULT_HELDOUT_FRACTION = 0.2
ARRAY_KEYS = ("x", "y")
"""Array names in ``.npz`` and ``.safetensors`` files: features, labels."""


@dataclass(frozen=True, slots=True)
class DatasetInfo:
    """What a dataset is, never its rows: what the owner announces."""

    name: str
    tags: Tuple[str, ...]
    description: str
    feature_shape: Tuple[int, ...]
    """Shape of one sample's features."""
    samples: int
    """All samples, training and held-out."""

    def to_record(self) -> DatasetSummary:
        """The gateway's record, whose ``shape`` is the full ``(samples, *features)``."""
        return DatasetSummary(self.name, self.tags, self.description, (self.samples, *self.feature_shape), self.samples)


@dataclass(frozen=True, slots=True, eq=False)
class Dataset:
    """A loaded dataset: rows to train on and held-out rows for evaluation."""

    info: DatasetInfo
    features: torch.Tensor
    labels: torch.Tensor
    heldout_features: torch.Tensor
    heldout_labels: torch.Tensor

    @property
    def train_samples(self) -> int:
        return int(self.features.shape[0])

    @property
    def heldout_samples(self) -> int:
        return int(self.heldout_features.shape[0])


def parse_dataset_spec(text: str, what: str = "dataset spec") -> Tuple[str, Path]:
    """``"breast_cancer=./a.csv"`` -> ``("breast_cancer", Path("./a.csv"))``.

    ``what`` names the spec in errors (``--dataset-policy`` takes the same form).
    """
    name, sep, path = text.partition("=")
    if not sep or not path:
        raise DatasetError.for_spec(text, "expected NAME=PATH", what)
    if not DATASET_NAME_PATTERN.fullmatch(name):
        raise DatasetError.for_spec(text, "a name is 1-64 letters, digits, '_', '.', '-'", what)
    return name, Path(path).expanduser()


def load_dataset(
    name: str,
    path: Path | str,
    *,
    label_column: str = "label",
    tags: Iterable[str] = (),
    description: str = "",
    heldout_fraction: float = DEFAULT_HELDOUT_FRACTION,
    split_seed: int = 0,
) -> Dataset:
    """Load ``path`` (by extension) and split off the held-out rows."""
    features, labels = load_arrays(path, label_column=label_column)
    return make_dataset(
        name,
        features,
        labels,
        tags=tags,
        description=description,
        heldout_fraction=heldout_fraction,
        split_seed=split_seed,
        source=str(path),
    )


def load_arrays(path: Path | str, *, label_column: str = "label") -> Tuple[torch.Tensor, torch.Tensor]:
    """Features (float32) and labels (int64 or float32) from a file, checked."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".npz", ".safetensors"):
        raise DatasetError.for_file(path, "unknown format; use .csv, .npz or .safetensors")
    if not path.is_file():
        raise DatasetError.for_file(path, "no such file")
    if suffix == ".csv":
        features, labels = _read_csv(path, label_column)
    elif suffix == ".npz":
        features, labels = _read_npz(path)
    else:
        features, labels = _read_safetensors(path)
    _check_arrays(path, features, labels)
    return features, labels


def _read_csv(path: Path, label_column: str) -> Tuple[torch.Tensor, torch.Tensor]:
    try:
        with path.open(newline="", encoding="utf-8") as stream:
            reader = csv.reader(stream)
            header = next(reader, None)
            rows = [row for row in reader if row]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError.for_file(path, f"cannot read: {exc}") from None
    if header is None:
        raise DatasetError.for_file(path, "empty file")
    if label_column not in header:
        raise DatasetError.for_file(path, f"no label column {label_column!r}; columns: {', '.join(header[:20])}")
    if len(header) < 2:
        raise DatasetError.for_file(path, "needs at least one feature column besides the label")
    table = _numbers(path, header, rows)
    where = header.index(label_column)
    raw_labels = table[:, where]
    features = np.delete(table, where, axis=1).astype(np.float32)
    integral = bool(np.all(np.isfinite(raw_labels)) and np.all(raw_labels == np.round(raw_labels)))
    labels = raw_labels.astype(np.int64) if integral else raw_labels.astype(np.float32)
    return torch.from_numpy(features), torch.from_numpy(labels)


def _numbers(path: Path, header: List[str], rows: List[List[str]]) -> np.ndarray:
    for line, row in enumerate(rows, start=2):
        if len(row) != len(header):
            raise DatasetError.for_file(path, f"line {line} has {len(row)} fields, the header {len(header)}")
    try:
        return np.array(rows, dtype=np.float64).reshape(len(rows), len(header))
    except ValueError:
        pass
    for line, row in enumerate(rows, start=2):
        for column, cell in zip(header, row):
            try:
                float(cell)
            except ValueError:
                raise DatasetError.for_file(
                    path, f"line {line}, column {column!r}: not a number: {cell[:40]!r}"
                ) from None
    raise DatasetError.for_file(path, "cells are not all numbers")


def _read_npz(path: Path) -> Tuple[torch.Tensor, torch.Tensor]:
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise DatasetError.for_file(path, f"not a readable .npz archive ({exc})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DatasetError.for_file(path, "a single array, not an .npz archive of 'x' and 'y'")
    with archive:
        _check_keys(path, archive.files)
        try:
            arrays = [archive[key] for key in ARRAY_KEYS]
        except ValueError:
            raise DatasetError.for_file(path, "holds pickled object arrays, which are refused") from None
        except (OSError, zipfile.BadZipFile, EOFError) as exc:
            raise DatasetError.for_file(path, f"corrupt array ({exc})") from None
    return _features_from_numpy(path, arrays[0]), _labels_from_numpy(path, arrays[1])


def _check_keys(path: Path, keys: Sequence[str]) -> None:
    if sorted(keys) != sorted(ARRAY_KEYS):
        shown = ", ".join(sorted(keys)[:10]) or "none"
        raise DatasetError.for_file(path, f"expected exactly the arrays 'x' and 'y', found: {shown}")


def _features_from_numpy(path: Path, array: np.ndarray) -> torch.Tensor:
    if array.dtype.kind not in "biuf":
        raise DatasetError.for_file(path, f"features have dtype {array.dtype}; expected numbers")
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


def _labels_from_numpy(path: Path, array: np.ndarray) -> torch.Tensor:
    if array.dtype.kind in "biu":
        return torch.from_numpy(np.ascontiguousarray(array, dtype=np.int64))
    if array.dtype.kind == "f":
        return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    raise DatasetError.for_file(path, f"labels have dtype {array.dtype}; expected numbers")


def _read_safetensors(path: Path) -> Tuple[torch.Tensor, torch.Tensor]:
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise DatasetError.for_file(path, f"not a readable .safetensors file ({exc})") from None
    _check_keys(path, list(tensors))
    x, y = tensors["x"], tensors["y"]
    if x.is_complex() or y.is_complex():
        raise DatasetError.for_file(path, "complex tensors are not supported")
    labels = y.to(torch.float32) if y.is_floating_point() else y.to(torch.int64)
    return x.to(torch.float32).contiguous(), labels.contiguous()


def _check_arrays(path: Path, features: torch.Tensor, labels: torch.Tensor) -> None:
    if features.dim() < 2 or 0 in features.shape[1:]:
        raise DatasetError.for_file(path, f"features of shape {tuple(features.shape)}: need (samples, features...)")
    if labels.dim() not in (1, 2) or labels.shape[0] != features.shape[0]:
        raise DatasetError.for_file(
            path, f"labels of shape {tuple(labels.shape)} do not match {features.shape[0]} samples"
        )
    if features.shape[0] < 2:
        raise DatasetError.for_file(path, "needs at least 2 samples")
    if not bool(torch.isfinite(features).all()) or (labels.is_floating_point() and not bool(torch.isfinite(labels).all())):
        raise DatasetError.for_file(path, "holds NaN or infinite values")


def make_dataset(
    name: str,
    features: torch.Tensor,
    labels: torch.Tensor,
    *,
    tags: Iterable[str] = (),
    description: str = "",
    heldout_fraction: float = DEFAULT_HELDOUT_FRACTION,
    split_seed: int = 0,
    source: str = "<memory>",
) -> Dataset:
    """A :class:`Dataset` from checked tensors (float32 features), split deterministically."""
    if not DATASET_NAME_PATTERN.fullmatch(name):
        raise DatasetError.for_spec(name, "a name is 1-64 letters, digits, '_', '.', '-'")
    info_tags = _tags(tags)
    if len(description) > MAX_DESCRIPTION_CHARS:
        raise DatasetError(f"description longer than {MAX_DESCRIPTION_CHARS} characters", {"limit": MAX_DESCRIPTION_CHARS})
    if type(heldout_fraction) not in (int, float) or not (math.isfinite(heldout_fraction) and 0 <= heldout_fraction < 1):
        raise DatasetError(f"held-out fraction must be in [0, 1), got {heldout_fraction!r}", {"reason": "fraction"})
    if features.dtype != torch.float32 or labels.dtype not in (torch.int64, torch.float32):
        raise DatasetError.for_file(source, "features must be float32 and labels int64 or float32")
    _check_arrays(Path(source), features, labels)
    samples = int(features.shape[0])
    held = round(samples * heldout_fraction)
    if heldout_fraction > 0:
        held = min(max(held, 1), samples - 1)
    order = torch.randperm(samples, generator=torch.Generator().manual_seed(split_seed))
    heldout, train = order[:held].sort().values, order[held:].sort().values
    info = DatasetInfo(name, info_tags, description, tuple(features.shape[1:]), samples)
    return Dataset(info, features[train], labels[train], features[heldout], labels[heldout])


def _tags(tags: Iterable[str]) -> Tuple[str, ...]:
    normalized: List[str] = []
    for tag in tags:
        try:
            value = normalize_tag(tag)
        except ValueError as exc:
            raise DatasetError(str(exc), {"tag": tag[:80]}) from None
        if value not in normalized:
            normalized.append(value)
    if len(normalized) > MAX_TAGS:
        raise DatasetError(f"more than {MAX_TAGS} tags", {"limit": MAX_TAGS})
    return tuple(normalized)
