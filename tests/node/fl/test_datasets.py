"""Datasets: CSV, NPZ and safetensors files, their failures, the held-out split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from node.fl.datasets import load_arrays, load_dataset, make_dataset, parse_dataset_spec
from node.fl.errors import DatasetError


def _write_csv(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_with_named_label_column(tmp_path: Path) -> None:
    """A CSV's label column (anywhere) becomes int64 labels, the rest float32 features."""
    path = _write_csv(tmp_path / "a.csv", "f1,target,f2\n1.5,0,2\n3,1,4.25\n5,1,6\n7,0,8\n")
    data = load_dataset(
        "cancer", path, label_column="target", tags=["#Breast_Cancer", "tabular"],
        description="four rows", heldout_fraction=0.25,
    )
    assert data.info.name == "cancer"
    assert data.info.tags == ("#breast_cancer", "#tabular")
    assert data.info.feature_shape == (2,) and data.info.samples == 4
    assert data.features.dtype == torch.float32 and data.labels.dtype == torch.int64
    assert (data.train_samples, data.heldout_samples) == (3, 1)
    rows = torch.cat([data.features, data.heldout_features])
    assert sorted(rows[:, 0].tolist()) == [1.5, 3.0, 5.0, 7.0]
    assert data.info.to_record().shape == (4, 2)


def test_csv_with_fractional_labels_gives_float_labels(tmp_path: Path) -> None:
    """Labels that are not all integers stay float32 (regression targets)."""
    path = _write_csv(tmp_path / "r.csv", "x,label\n1,0.5\n2,1.5\n3,2\n")
    _, labels = load_arrays(path)
    assert labels.dtype == torch.float32 and labels.tolist() == [0.5, 1.5, 2.0]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty file"),
        ("a,b\n1,2\n", "no label column 'label'; columns: a, b"),
        ("label\n1\n2\n", "at least one feature column"),
        ("x,label\n1,0\nabc,1\n", "line 3, column 'x': not a number: 'abc'"),
        ("x,label\n1,0\n2\n", "line 3 has 1 fields"),
        ("x,label\n1,0\n,1\n", "not a number: ''"),
        ("x,label\n1,0\nnan,1\n", "NaN or infinite"),
        ("x,label\n1,0\n", "at least 2 samples"),
    ],
)
def test_malformed_csv_is_refused_with_the_reason(tmp_path: Path, text: str, reason: str) -> None:
    """Malformed CSVs raise DatasetError naming the file and what is wrong."""
    path = _write_csv(tmp_path / "bad.csv", text)
    with pytest.raises(DatasetError) as caught:
        load_arrays(path)
    assert reason in str(caught.value)
    assert caught.value.details["path"] == str(path)


def test_missing_file_and_unknown_extension(tmp_path: Path) -> None:
    """A missing file and an unsupported extension are clear DatasetErrors."""
    with pytest.raises(DatasetError, match="no such file"):
        load_dataset("d", tmp_path / "absent.csv")
    (tmp_path / "data.pt").write_bytes(b"\x80\x04")
    with pytest.raises(DatasetError, match="unknown format"):
        load_dataset("d", tmp_path / "data.pt")


def test_npz_dataset(tmp_path: Path) -> None:
    """An NPZ's x and y load as float32 features of any sample shape and int64 labels."""
    path = tmp_path / "images.npz"
    np.savez(path, x=np.arange(60, dtype=np.float64).reshape(5, 3, 4), y=np.array([0, 1, 2, 1, 0], dtype=np.int32))
    data = load_dataset("images", path, heldout_fraction=0.0)
    assert data.info.feature_shape == (3, 4)
    assert data.features.dtype == torch.float32 and data.labels.dtype == torch.int64
    assert data.heldout_samples == 0 and torch.equal(data.features[1, 0], torch.tensor([12.0, 13, 14, 15]))


def test_npz_object_arrays_are_refused(tmp_path: Path) -> None:
    """Pickled object arrays in an NPZ are refused, never unpickled."""
    path = tmp_path / "evil.npz"
    np.savez(path, x=np.array([[1.0], [2.0]]), y=np.array([{"a": 1}, None], dtype=object))
    with pytest.raises(DatasetError, match="pickled object arrays"):
        load_arrays(path)


@pytest.mark.parametrize(
    ("arrays", "reason"),
    [
        ({"x": np.zeros((3, 2))}, "exactly the arrays 'x' and 'y'"),
        ({"x": np.zeros((3, 2)), "y": np.zeros(3), "z": np.zeros(1)}, "exactly the arrays"),
        ({"x": np.zeros((3, 2)), "y": np.zeros(4)}, "do not match 3 samples"),
        ({"x": np.zeros(3), "y": np.zeros(3)}, "need (samples, features...)"),
        ({"x": np.array([["a"], ["b"]]), "y": np.zeros(2)}, "expected numbers"),
    ],
)
def test_malformed_npz_is_refused(tmp_path: Path, arrays: dict[str, np.ndarray], reason: str) -> None:
    """Wrong keys, mismatched lengths, missing feature dimension and text arrays are refused."""
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)  # type: ignore[arg-type]
    with pytest.raises(DatasetError) as caught:
        load_arrays(path)
    assert reason in str(caught.value)


def test_corrupt_npz_and_plain_npy_are_refused(tmp_path: Path) -> None:
    """Garbage bytes and a single .npy array under an .npz name are refused."""
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(DatasetError, match="npz"):
        load_arrays(garbage)
    single = tmp_path / "single.npz"
    with single.open("wb") as stream:
        np.save(stream, np.zeros((2, 2)))
    with pytest.raises(DatasetError, match="single array"):
        load_arrays(single)


def test_safetensors_dataset(tmp_path: Path) -> None:
    """A safetensors file's x and y load, half-precision features widened to float32."""
    path = tmp_path / "d.safetensors"
    save_file({"x": torch.ones(4, 2, dtype=torch.float16), "y": torch.tensor([0.5, 1.0, 0.0, 2.0])}, str(path))
    features, labels = load_arrays(path)
    assert features.dtype == torch.float32 and features.shape == (4, 2)
    assert labels.dtype == torch.float32


def test_corrupt_safetensors_is_refused(tmp_path: Path) -> None:
    """A file that is not safetensors is a DatasetError, not a library exception."""
    path = tmp_path / "d.safetensors"
    path.write_bytes(b"\xff" * 16)
    with pytest.raises(DatasetError, match="safetensors"):
        load_arrays(path)


def test_heldout_split_is_deterministic_disjoint_and_complete() -> None:
    """The same seed gives the same split; parts are disjoint and cover every row."""
    features = torch.arange(100, dtype=torch.float32).reshape(100, 1)
    labels = torch.zeros(100, dtype=torch.int64)
    first = make_dataset("d", features, labels, heldout_fraction=0.3, split_seed=5)
    again = make_dataset("d", features, labels, heldout_fraction=0.3, split_seed=5)
    other = make_dataset("d", features, labels, heldout_fraction=0.3, split_seed=6)
    assert torch.equal(first.heldout_features, again.heldout_features)
    assert not torch.equal(first.heldout_features, other.heldout_features)
    assert first.heldout_samples == 30
    rows = torch.cat([first.features, first.heldout_features]).flatten().tolist()
    assert sorted(rows) == list(range(100))


@pytest.mark.parametrize("fraction", [-0.1, 1.0, float("nan")])
def test_heldout_fraction_out_of_range_is_refused(fraction: float) -> None:
    """A held-out fraction outside [0, 1) is refused."""
    with pytest.raises(DatasetError, match="fraction"):
        make_dataset("d", torch.zeros(4, 1), torch.zeros(4, dtype=torch.int64), heldout_fraction=fraction)


def test_parse_dataset_spec() -> None:
    """NAME=PATH parses; a missing '=', an empty path or a bad name is refused."""
    assert parse_dataset_spec("breast_cancer=./a.csv") == ("breast_cancer", Path("a.csv"))
    for bad in ("noequals", "=a.csv", "name=", "bad name=a.csv", "-x=a.csv"):
        with pytest.raises(DatasetError, match="spec"):
            parse_dataset_spec(bad)


def test_bad_tags_are_refused() -> None:
    """Tags follow the gateway's tag rules."""
    with pytest.raises(DatasetError, match="invalid tag"):
        make_dataset("d", torch.zeros(4, 1), torch.zeros(4, dtype=torch.int64), tags=["no spaces"])
