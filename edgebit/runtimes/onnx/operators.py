"""How each edgebit operator becomes ONNX, in the two forms the ONNX exporter writes.

**Custom form**: one node per operator in the ``edgebit`` domain (TernaryMatMul, BinaryMatMul, SelectiveScan; the
contract is the "ONNX" section of ``ops/<op>/SPEC.md``). Their schemas are registered with onnx (with type and
shape inference, so ``onnx.checker`` runs a full check) and the torch operators map to them through the dynamo
exporter's ``custom_translation_table``. Packed weights stay packed uint8 initializers.

**Portable form** (stock ONNX Runtime, ORT Mobile included): torch-level stand-ins swapped into the model while it
is exported. Ternary and binary matrices become ``com.microsoft.MatMulNBits`` with bits=2 (code = w + 2, the default
zero point 2, every block scale 1.0, so the dequantized matrix is exactly the ternary / sign matrix); activations
are quantized per token with standard ops, and the ternary products run exactly in ORT's int8 path (see
MatMulNBits); the scan is a ``Scan`` over the tokens (torch's scan higher-order op).
"""

from __future__ import annotations

import contextlib

import numpy as np
import onnx
import onnxscript
import torch
from onnxscript import FLOAT, UINT8
from onnxscript import opset18 as op  # the exporter builds at opset 18, then converts
from onnxscript.values import Opset
import torch.nn.functional as F
from torch import nn

from edgebit.quant.activations import quantize_activations
import edgebit_ops.binary_matmul  # noqa: F401 (registers the torch ops translation_table names)
import edgebit_ops.selective_scan  # noqa: F401
import edgebit_ops.ternary_matmul  # noqa: F401
from edgebit_ops.int8_matmul import block_size_for
from edgebit_ops.int8_matmul.reference import quantize_blocks

DOMAIN = "edgebit"
DOMAIN_VERSION = 1
EDGEBIT = Opset(DOMAIN, DOMAIN_VERSION)
NBITS = 2  # MatMulNBits' smallest width ONNX Runtime accepts (>= 1.26); bits=1 is rejected
NBITS_ZERO_POINT = 2  # the default zero point of bits=2: code = w + 2
ANCHOR = 127  # see MatMulNBits

# ---------------------------------------------------------------------------------------------------------------
# Custom form: schemas


def _float_type(shape_from: onnx.TypeProto | None = None, dims=None) -> onnx.TypeProto:
    out = onnx.TypeProto()
    out.tensor_type.elem_type = onnx.TensorProto.FLOAT
    if dims is not None:
        out.tensor_type.shape.dim.extend(dims)
    elif shape_from is not None and shape_from.tensor_type.HasField("shape"):
        out.tensor_type.shape.CopyFrom(shape_from.tensor_type.shape)
    return out


def _matmul_inference(codes_per_byte: int):
    """Output [..., N] from x [..., K] and packed weights [N, Kq]; checks K against ``in_features``."""

    def infer(ctx) -> None:
        x, w = ctx.get_input_type(0), ctx.get_input_type(1)
        in_features = ctx.get_attribute("in_features").i
        if not (x.tensor_type.HasField("shape") and w.tensor_type.HasField("shape")):
            ctx.set_output_type(0, _float_type())
            return
        x_dims, w_dims = x.tensor_type.shape.dim, w.tensor_type.shape.dim
        if len(w_dims) != 2 or not x_dims:
            raise onnx.shape_inference.InferenceError("x must be [..., K] and the packed weights [N, Kq]")
        if x_dims[-1].HasField("dim_value") and x_dims[-1].dim_value != in_features:
            raise onnx.shape_inference.InferenceError(
                f"x has {x_dims[-1].dim_value} features, in_features is {in_features}")
        if w_dims[1].HasField("dim_value") and w_dims[1].dim_value * codes_per_byte < in_features:
            raise onnx.shape_inference.InferenceError(
                f"{w_dims[1].dim_value} packed bytes per row cannot hold {in_features} columns")
        ctx.set_output_type(0, _float_type(dims=[*x_dims[:-1], w_dims[0]]))

    return infer


def _scan_inference(ctx) -> None:
    ctx.set_output_type(0, _float_type(ctx.get_input_type(0)))
    ctx.set_output_type(1, _float_type(ctx.get_input_type(6)))


def _schemas() -> list[onnx.defs.OpSchema]:
    Param = onnx.defs.OpSchema.FormalParameter
    Attr = onnx.defs.OpSchema.Attribute
    floats = ("T", ["tensor(float)"], "float32 tensors")
    bytes_ = ("U8", ["tensor(uint8)"], "packed weights")
    in_features = Attr("in_features", onnx.defs.OpSchema.AttrType.INT, "K, the number of input features", required=True)
    ternary = onnx.defs.OpSchema(
        "TernaryMatMul", DOMAIN, DOMAIN_VERSION,
        "BitNet b1.58 linear layer: per-token int8 activations x planar 2-bit ternary weights x w_scale "
        "(ops/ternary_matmul/SPEC.md).",
        inputs=[Param("x", "T", "activations [..., K]"), Param("w_packed", "U8", "planar 2-bit codes [N, Kq]"),
                Param("w_scale", "T", "per-tensor scale [1]")],
        outputs=[Param("y", "T", "[..., N]")], type_constraints=[floats, bytes_], attributes=[in_features])
    binary = onnx.defs.OpSchema(
        "BinaryMatMul", DOMAIN, DOMAIN_VERSION,
        "Bi-Mamba FBI-Linear: x @ (alpha * sign(W) + beta)^T with planar 1-bit signs (ops/binary_matmul/SPEC.md).",
        inputs=[Param("x", "T", "activations [..., K]"), Param("w_signs", "U8", "planar sign bits [N, Kq]"),
                Param("alpha", "T", "per-column scale [1, K]"), Param("beta", "T", "per-column shift [1, K]")],
        outputs=[Param("y", "T", "[..., N]")], type_constraints=[floats, bytes_], attributes=[in_features])
    scan = onnx.defs.OpSchema(
        "SelectiveScan", DOMAIN, DOMAIN_VERSION,
        "Mamba-2 selective scan over the tokens from an initial state (ops/selective_scan/SPEC.md).",
        inputs=[Param(name, "T", "") for name in ("x", "dt", "A", "B", "C", "D", "state")],
        outputs=[Param("y", "T", "[Bt, T, H, P]"), Param("final_state", "T", "[Bt, H, P, N]")],
        type_constraints=[floats])
    int8 = onnx.defs.OpSchema(
        "Int8MatMul", DOMAIN, DOMAIN_VERSION,
        "Quantized output head: int8 weights (code w + 128, one scale per row) x activations quantized to int8 per "
        "block (ops/int8_matmul/SPEC.md).",
        inputs=[Param("x", "T", "activations [..., K]"), Param("w_codes", "U8", "codes w + 128 [N, Kp]"),
                Param("w_scale", "T", "per-row scale [N]")],
        outputs=[Param("y", "T", "[..., N]")], type_constraints=[floats, bytes_],
        attributes=[in_features, Attr("block_size", onnx.defs.OpSchema.AttrType.INT, "activation block B",
                                      required=True)])
    q4 = onnx.defs.OpSchema(
        "Q4MatMul", DOMAIN, DOMAIN_VERSION,
        "4-bit output head: two codes w + 8 a byte, one scale per block of a row, x activations quantized to int8 per "
        "block (ops/q4_matmul/SPEC.md).",
        inputs=[Param("x", "T", "activations [..., K]"), Param("w_codes", "U8", "4-bit codes w + 8 [N, Kp / 2]"),
                Param("w_scale", "T", "per-block scale [N, Kp / B]")],
        outputs=[Param("y", "T", "[..., N]")], type_constraints=[floats, bytes_],
        attributes=[in_features, Attr("block_size", onnx.defs.OpSchema.AttrType.INT, "weight and activation block B",
                                      required=True)])
    ternary.set_type_and_shape_inference_function(_matmul_inference(4))
    binary.set_type_and_shape_inference_function(_matmul_inference(8))
    scan.set_type_and_shape_inference_function(_scan_inference)
    int8.set_type_and_shape_inference_function(_matmul_inference(1))
    q4.set_type_and_shape_inference_function(_matmul_inference(2))
    return [ternary, binary, scan, int8, q4]


def register_schemas() -> None:
    """Register the edgebit-domain schemas with onnx (once per process), so the checker knows the nodes."""
    for schema in _schemas():
        if not onnx.defs.has(schema.name, schema.domain):
            onnx.defs.register_schema(schema)


# ---------------------------------------------------------------------------------------------------------------
# Custom form: translation of the torch operators (onnxscript functions need their return annotations)


@onnxscript.script(EDGEBIT)
def _ternary_node(x: FLOAT, w_packed: UINT8, w_scale: FLOAT, in_features: int) -> FLOAT:
    return EDGEBIT.TernaryMatMul(x, w_packed, w_scale, in_features=in_features)


@onnxscript.script(EDGEBIT)
def _binary_node(x: FLOAT, w_signs: UINT8, alpha: FLOAT, beta: FLOAT, in_features: int) -> FLOAT:
    return EDGEBIT.BinaryMatMul(x, w_signs, alpha, beta, in_features=in_features)


@onnxscript.script(EDGEBIT)
def _scan_node(x: FLOAT, dt: FLOAT, A: FLOAT, B: FLOAT, C: FLOAT, D: FLOAT, state: FLOAT) -> tuple[FLOAT, FLOAT]:
    y, final_state = EDGEBIT.SelectiveScan(x, dt, A, B, C, D, state)
    return y, final_state


@onnxscript.script(EDGEBIT)
def _int8_node(x: FLOAT, w_codes: UINT8, w_scale: FLOAT, in_features: int, block_size: int) -> FLOAT:
    return EDGEBIT.Int8MatMul(x, w_codes, w_scale, in_features=in_features, block_size=block_size)


@onnxscript.script(EDGEBIT)
def _q4_node(x: FLOAT, w_codes: UINT8, w_scale: FLOAT, in_features: int, block_size: int) -> FLOAT:
    return EDGEBIT.Q4MatMul(x, w_codes, w_scale, in_features=in_features, block_size=block_size)


@onnxscript.script()
def _linear_gemm(x: FLOAT, weight: FLOAT) -> FLOAT:
    """``x @ weight^T`` as Gemm(transB=1): torchlib's MatMul(x, Transpose(weight)) lets the optimizer store a
    transposed copy of the (tied) embedding matrix, doubling the largest tensor of the file."""
    flat = op.Reshape(x, op.Concat(op.Constant(value_ints=[-1]), op.Shape(weight, start=1), axis=0))
    y = op.Gemm(flat, weight, transB=1)
    return op.Reshape(y, op.Concat(op.Shape(x, end=-1), op.Shape(weight, start=0, end=1), axis=0))


def translation_table(form: str) -> dict:
    """custom_translation_table for ``torch.onnx.export``: the custom form's edgebit nodes, and the head as Gemm."""
    table = {torch.ops.aten.linear.default: _linear_gemm}
    if form == "custom":
        table.update({torch.ops.edgebit.ternary_linear.default: _ternary_node,
                      torch.ops.edgebit.binary_linear.default: _binary_node,
                      torch.ops.edgebit.selective_scan.default: _scan_node,
                      torch.ops.edgebit.int8_linear.default: _int8_node,
                      torch.ops.edgebit.q4_linear.default: _q4_node})
    return table


# ---------------------------------------------------------------------------------------------------------------
# Portable form


def nbits_block_size(columns: int) -> int:
    """MatMulNBits block: 128 (0.25 bit of fp32 scale per weight), or the smallest power of two >= 16 covering K
    (the rule ops/int8_matmul/SPEC.md states for its activation blocks, which MatMulNBits computes)."""
    return block_size_for(columns)


def pack_matmul_nbits(weights: torch.Tensor, block_size: int) -> np.ndarray:
    """Integer weights [N, K] in {-1, 0, +1} -> MatMulNBits bits=2 blobs uint8 [N, ceil(K / block), block / 4].

    Code ``w + 2`` (the default zero point is 2); element k of a block sits in bits ``2 (k % 4)`` of byte ``k // 4``;
    the padding of the last block is code 2 (weight 0).
    """
    w = np.asarray(weights.to(torch.int16).numpy())
    if w.size and (w.min() < -1 or w.max() > 1):
        raise ValueError("MatMulNBits bits=2 packing takes weights in {-1, 0, +1}")
    n, k = w.shape
    blocks = -(-k // block_size)
    codes = np.full((n, blocks * block_size), NBITS_ZERO_POINT, dtype=np.uint8)
    codes[:, :k] = w + NBITS_ZERO_POINT
    quads = codes.reshape(n, blocks, block_size // 4, 4)
    return (quads[..., 0] | quads[..., 1] << 2 | quads[..., 2] << 4 | quads[..., 3] << 6).astype(np.uint8)


class MatMulNBits(nn.Module):
    """``x @ W^T`` for an integer matrix W in {-1, 0, +1}: one ``com.microsoft.MatMulNBits`` node when exported.

    Block scales are 1.0 and the zero point the default, so the dequantized matrix is W exactly. Two modes:

    * ``int8_inputs=False``: ONNX Runtime's float path (accuracy_level 0), float32 products; exact for any W, but
      ORT 1.32 runs bits=2 there about 70x slower than in its int8 path.
    * ``int8_inputs=True`` (x holds integers in [-127, 127], BitNet's activation codes): the int8 path
      (accuracy_level 4), which requantizes x per block with scale absmax / 127. Each block is made of
      ``block - 1`` columns of x plus one *anchor* column of 127 whose weight is 0, so every block's absmax is 127,
      its scale exactly 1 and the requantized codes are x itself: the int32 sums are exact, as in the float path
      (which a runtime without the int8 kernel falls back to, where the anchor adds 127 * 0).
    """

    def __init__(self, weights: torch.Tensor, int8_inputs: bool):
        super().__init__()
        self.out_features, self.in_features = weights.shape
        self.int8_inputs = int8_inputs
        if int8_inputs:
            self.block_size = nbits_block_size(self.in_features + 1)
            self.blocks = -(-self.in_features // (self.block_size - 1))
            per_block = torch.zeros(self.out_features, self.blocks * (self.block_size - 1), dtype=torch.int8)
            per_block[:, :self.in_features] = weights
            anchored = torch.zeros(self.out_features, self.blocks, self.block_size, dtype=torch.int8)
            anchored[:, :, :-1] = per_block.reshape(self.out_features, self.blocks, self.block_size - 1)
            weights = anchored.reshape(self.out_features, -1)
        else:
            self.block_size = nbits_block_size(self.in_features)
        self.columns = weights.shape[1]  # MatMulNBits' K
        blobs = pack_matmul_nbits(weights, self.block_size)
        self.register_buffer("nbits_weight", torch.from_numpy(blobs))
        self.register_buffer("nbits_scales", torch.ones(blobs.shape[0] * blobs.shape[1]))

    def anchored(self, x: torch.Tensor) -> torch.Tensor:
        """[..., K] -> [..., blocks * block]: blocks of ``block - 1`` columns of x (zero-padded) and a 127."""
        x = F.pad(x, (0, self.blocks * (self.block_size - 1) - self.in_features))
        x = F.pad(x.unflatten(-1, (self.blocks, self.block_size - 1)), (0, 1), value=float(ANCHOR))
        return x.flatten(-2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.int8_inputs:
            x = self.anchored(x)
        attributes = {"K": self.columns, "N": self.out_features, "bits": NBITS, "block_size": self.block_size,
                      "accuracy_level": 4 if self.int8_inputs else 0}
        return torch.onnx.ops.symbolic("com.microsoft::MatMulNBits", (x, self.nbits_weight, self.nbits_scales),
                                       attributes, dtype=torch.float32, shape=(*x.shape[:-1], self.out_features),
                                       version=1)


class PortableTernaryLinear(nn.Module):
    """``edgebit::ternary_linear`` with standard ops + MatMulNBits: the spec's steps in the spec's order."""

    def __init__(self, layer):
        super().__init__()
        self.matmul = MatMulNBits(layer.ternary_codes(), int8_inputs=True)
        self.register_buffer("w_scale", layer.w_scale.detach().float().reshape(1).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        codes, act_scale = quantize_activations(x)  # ONNX Round is round half to even, as torch.round
        return self.matmul(codes) / act_scale * self.w_scale


class PortableBinaryLinear(nn.Module):
    """``edgebit::binary_linear``: the SPEC's per-plane int8 activations with standard ops (ONNX ``Round`` is half to
    even, as torch.round), dequantized, then ``sign(W) @ v`` through MatMulNBits' float path (+1 -> code 3, -1 ->
    code 1; the per-plane scales leave no single activation scale for its int8 path) plus the rank-1 ``beta . x``."""

    def __init__(self, layer):
        super().__init__()
        self.matmul = MatMulNBits(layer.signs(), int8_inputs=False)
        self.in_features, self.plane_columns = layer.in_features, layer.w_signs.shape[1]
        self.register_buffer("alpha", layer.alpha.detach().float().reshape(-1).clone())
        self.register_buffer("beta", layer.beta.detach().float().reshape(-1).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        codes, scales = quantize_blocks((x * self.alpha).reshape(-1, self.in_features), 8 * self.plane_columns,
                                        self.plane_columns)  # SPEC steps 1-2: the planes are the blocks
        dequantized = (codes * scales).flatten(-2)[:, :self.in_features].reshape(x.shape)
        return self.matmul(dequantized) + (x * self.beta).sum(-1, keepdim=True)


class PortableQuantizedTable(nn.Module):
    """A quantized head and embedding table (edgebit.models.head.QuantizedTable) for stock ONNX Runtime, as one
    MatMulNBits blob that the embedding gathers rows of too, so the table is stored once:

    * int8: bits = 8, code = w + 128 (its default zero point), the row scale repeated per block;
    * q4: bits = 4, code = w + 8 (its default zero point), the block scales as they are; MatMulNBits packs elements
      2i and 2i + 1 of a block into byte i, so the export reorders the nibbles of the SPEC's layout.

    Both compute the edgebit operator in ORT's int8 path (accuracy_level 4: activations quantized per block as the
    specs' steps 1-2)."""

    def __init__(self, table):
        super().__init__()
        self.in_features, self.block_size, self.bits = table.in_features, table.block_size, table.bits
        self.out_features = table.w_codes.shape[0]
        self.padded = table.w_codes.shape[1] * 8 // self.bits
        blocks = self.padded // self.block_size
        if self.bits == 8:
            self.register_buffer("codes", table.w_codes.reshape(self.out_features, blocks, self.block_size).clone())
            self.register_buffer("w_scale", table.w_scale.clone())
            scales = table.w_scale[:, None].expand(-1, blocks)
        else:
            half = self.block_size // 2
            nibbles = table.w_codes.reshape(self.out_features, blocks, half)
            ordered = torch.cat([nibbles & 15, nibbles >> 4], dim=-1)  # the block's codes in order
            pairs = ordered.reshape(self.out_features, blocks, half, 2)
            self.register_buffer("codes", (pairs[..., 0] | (pairs[..., 1] << 4)).contiguous())
            self.register_buffer("w_scale", table.w_scale.clone())
            scales = table.w_scale
        self.register_buffer("block_scales", scales.reshape(-1).clone())

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        # One Gather on the blob itself: a reshaped initializer, or the transpose torchlib puts before GatherND for
        # ``codes[ids]``, would be constant-folded into a second copy of the table
        rows = torch.index_select(self.codes, 0, ids.reshape(-1))
        if self.bits == 8:
            rows = rows.reshape(*ids.shape, self.padded)[..., :self.in_features]
            return (rows.to(torch.int32) - 128).float() * F.embedding(ids, self.w_scale[:, None])
        codes = rows.float()  # [tokens, blocks, B / 2]: unpacked with float arithmetic, as QuantizedTable does
        high = torch.floor(codes / 16.0)
        weights = torch.stack([codes - 16.0 * high, high], dim=-1).flatten(-2) - 8.0  # [tokens, blocks, B]
        scaled = weights * self.w_scale.index_select(0, ids.reshape(-1))[..., None]
        return scaled.reshape(*ids.shape, self.padded)[..., :self.in_features]

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        attributes = {"K": self.padded, "N": self.out_features, "bits": self.bits, "block_size": self.block_size,
                      "accuracy_level": 4}
        x = F.pad(hidden, (0, self.padded - self.in_features)) if self.padded != self.in_features else hidden
        return torch.onnx.ops.symbolic("com.microsoft::MatMulNBits", (x, self.codes, self.block_scales),
                                       attributes, dtype=torch.float32, shape=(*x.shape[:-1], self.out_features),
                                       version=1)


def portable_selective_scan(x, dt, A, B, C, D, state):
    """``edgebit::selective_scan`` as torch's scan higher-order op, which the exporter writes as an ONNX ``Scan``
    over the tokens (T stays symbolic); the body is the spec's recurrence for one token."""
    from torch._higher_order_ops.scan import scan

    per_group = x.shape[2] // B.shape[2]
    B = B.repeat_interleave(per_group, dim=2)  # [Bt, T, H, N]
    C = C.repeat_interleave(per_group, dim=2)
    decay = torch.exp(dt * A)  # [Bt, T, H]
    dx = dt[..., None] * x  # [Bt, T, H, P]

    def one_token(s, inputs):
        decay_t, dx_t, b_t, c_t = inputs
        s = s * decay_t[..., None, None] + dx_t[..., None] * b_t[:, :, None, :]
        return s, (s @ c_t[..., None])[..., 0]

    time_major = [t.transpose(0, 1) for t in (decay, dx, B, C)]
    final_state, ys = scan(one_token, state.float(), time_major)
    return ys.transpose(0, 1) + D[:, None] * x, final_state


class PortableSelectiveScan(nn.Module):
    """``edgebit::selective_scan`` as an ONNX ``Scan`` (:func:`portable_selective_scan`)."""

    def __init__(self, scan=None):
        super().__init__()

    def forward(self, x, dt, A, B, C, D, state):
        return portable_selective_scan(x, dt, A, B, C, D, state)


@contextlib.contextmanager
def portable_operators(model):
    """While exporting, swap the operator modules of ``model`` (packed layers, the scan) for their portable
    stand-ins; restore the model afterwards, also on errors."""
    from edgebit.models.bimamba.model import FBILinear, SelectiveScan
    from edgebit.models.bitnet.model import TernaryLinear
    from edgebit.models.head import QuantizedTable

    stand_ins = {TernaryLinear: PortableTernaryLinear, FBILinear: PortableBinaryLinear,
                 SelectiveScan: PortableSelectiveScan, QuantizedTable: PortableQuantizedTable}
    swapped = []
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) in stand_ins and getattr(child, "is_packed", True):
                setattr(parent, name, stand_ins[type(child)](child))
                swapped.append((parent, name, child))
    try:
        yield
    finally:
        for parent, name, child in swapped:
            setattr(parent, name, child)
