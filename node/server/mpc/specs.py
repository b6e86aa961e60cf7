"""Secret-sharing specs between their wire form and the core's.

Owns the translation of :mod:`protocol.mpc`'s wire specs (``WireTriple``,
``WireTruncation``, ``WireConv``, ``WireCompare``) into :mod:`node.mpc`'s
material specs, which check shapes (a ``compare`` spec becomes its route's
spec class, :mod:`node.mpc.compare`), and the specs a party expects for one ``mpc_step``
(so it can check the crypto provider dealt what the client asked for).
Pure; must not import asyncio or the transport.
"""

from __future__ import annotations

from typing import Any, Sequence

from protocol.errors import BadRequest
from protocol.mpc import (
    COMPARE_OPS,
    BilinearKind,
    MpcStepRequest,
    StepOp,
    TruncationScheme,
    WireCompare,
    WireConv,
    WireSpec,
    WireTriple,
    WireTruncation,
)

from node.mpc import BilinearOp, ConvParams, TripleSpec, TruncationSpec
from node.mpc.compare import compare_spec, party_range

__all__ = ["conv_params", "material_specs", "step_wire_specs", "product_shape", "check_parties"]

_OPS = {
    BilinearKind.MUL: BilinearOp.MUL,
    BilinearKind.MATMUL: BilinearOp.MATMUL,
    BilinearKind.CONV2D: BilinearOp.CONV2D,
}


def conv_params(conv: WireConv | None) -> ConvParams | None:
    """The core's conv parameters (checked), or None."""
    if conv is None:
        return None
    return ConvParams(conv.stride, conv.padding, conv.dilation, conv.groups)


def material_specs(specs: Sequence[WireSpec]) -> list[Any]:
    """The core's specs for wire specs; MaterialError for shapes that do not fit.

    Beaver specs are :data:`node.mpc.material.MaterialSpec`; a ``compare``
    spec is its route's spec class (``FssSpec``, ``BinarySpec``).
    """
    out: list[Any] = []
    for spec in specs:
        if isinstance(spec, WireCompare):
            out.append(compare_spec(spec.route, spec.shape, spec.width, spec.relu))
        elif isinstance(spec, WireTriple):
            # TripleSpec refuses conv parameters for another op, naming the problem.
            out.append(TripleSpec(_OPS[spec.op], spec.x_shape, spec.y_shape, conv_params(spec.conv)))
        else:
            out.append(TruncationSpec(spec.shape, spec.bits))
    return out


def product_shape(op: StepOp, x_shape: tuple[int, ...], y_shape: tuple[int, ...], conv: WireConv | None) -> tuple[int, ...]:
    """Shape of a step's product (checked on meta tensors)."""
    triple = material_specs([WireTriple(BilinearKind(op.value), x_shape, y_shape, conv)])[0]
    assert isinstance(triple, TripleSpec)
    return triple.z_shape


def step_wire_specs(
    request: MpcStepRequest, x_shape: tuple[int, ...], y_shape: tuple[int, ...] | None
) -> tuple[WireSpec, ...]:
    """The specs the dealer must have dealt for this step, in order.

    A Beaver triple for a product step, then masks for a dealer truncation
    of the product (or of ``x`` for a truncation step); for a comparison
    the one ``compare`` spec of its route, width and x's shape.
    """
    if request.op in COMPARE_OPS:
        assert request.route is not None  # StepPlanner.plan checked
        return (WireCompare(x_shape, request.width, request.op is StepOp.RELU, request.route),)
    specs: list[WireSpec] = []
    shape = x_shape
    if request.op is not StepOp.TRUNCATE:
        assert y_shape is not None
        conv = request.conv if request.op is StepOp.CONV2D else None
        specs.append(WireTriple(BilinearKind(request.op.value), x_shape, y_shape, conv))
        shape = product_shape(request.op, x_shape, y_shape, conv)
    if request.bits and request.truncation is TruncationScheme.DEALER:
        specs.append(WireTruncation(shape, request.bits))
    return tuple(specs)


def check_parties(specs: Sequence[WireSpec], n: int) -> None:
    """BadRequest when a ``compare`` spec's route does not work for ``n`` parties (``fss``: exactly 2)."""
    for spec in specs:
        if isinstance(spec, WireCompare):
            low, high = party_range(spec.route)
            if n < low or (high is not None and n > high):
                allowed = (
                    f"exactly {low}" if high == low
                    else f"{low} or more" if high is None
                    else f"{low} to {high}"
                )
                raise BadRequest(
                    f"comparison route {spec.route.value!r} works for {allowed} parties, not {n}"
                    + (": use route 'a2b'" if spec.route.value == "fss" else ""),
                    {"route": spec.route.value, "parties": n},
                )
