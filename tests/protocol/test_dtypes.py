"""The torch-free dtype allowlist agrees with the torch one."""

from __future__ import annotations

import pytest
import torch

from protocol.dtypes import DTYPE_ITEMSIZES, check_dtype_name
from protocol.errors import BadTensor
from protocol.tensors import DTYPES, dtype_from_name


def test_each_allowlisted_name_is_a_torch_dtype_of_the_listed_item_size() -> None:
    """tensors.DTYPES maps every name of DTYPE_ITEMSIZES to a torch dtype whose element size is the listed one."""
    for name, dtype in DTYPES.items():
        assert isinstance(dtype, torch.dtype), name
        assert DTYPE_ITEMSIZES[name] == torch.empty((), dtype=dtype).element_size(), name


@pytest.mark.parametrize("name", ["complex64", "float", "", "x" * 100, 5, None, b"float32"])
def test_names_outside_the_allowlist_are_bad_tensor(name: object) -> None:
    """check_dtype_name and dtype_from_name refuse the same names with the same error."""
    with pytest.raises(BadTensor) as torch_free:
        check_dtype_name(name)
    with pytest.raises(BadTensor) as with_torch:
        dtype_from_name(name)
    assert (torch_free.value.message, torch_free.value.details) == (with_torch.value.message, with_torch.value.details)
