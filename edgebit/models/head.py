"""The output head (and the tied embedding that shares its table) at a chosen precision.

The head is the largest full-precision tensor of a 1-bit model (vocab x hidden: 1.3 GB in fp32 at BitNet 2B-4T
size, two thirds of the bytes a decode step reads), so its precision decides decode speed once the projections are
ternary. ``edgebit export --head`` picks it; the host reference model uses the same head, so ``validate`` compares
like with like, and the export records what the head costs in perplexity against fp32 (manifest ``model.head``).

* ``fp32``: the checkpoint's table as it is.
* ``int8``: one int8 code per weight and one float32 scale per row (``ops/int8_matmul/SPEC.md``); the logits run
  through ``edgebit::int8_linear`` (activations quantized per block of 128, as llama.cpp's q8_0 and ONNX Runtime's
  MatMulNBits do), the tied embedding looks up the same codes. 4.0x fewer bytes than fp32.
* ``q4``: 4-bit codes with one float32 scale per block of 64 weights of a row (``ops/q4_matmul/SPEC.md``, llama.cpp's
  q4_0 with float32 scales), through ``edgebit::q4_linear``: 4.5 bits a weight, 1.9x fewer bytes than int8, for
  0.2-0.9 % of held-out perplexity on the demo models (int8: under 0.05 %).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edgebit_ops import q4_matmul
from edgebit_ops.int8_matmul import block_size_for, int8_linear, quantize_rows
from edgebit_ops.int8_matmul.reference import ZERO_POINT

from edgebit.export import HEAD_PRECISIONS  # noqa: F401  (the first is export's default)


class QuantizedTable(nn.Module):
    """A quantized vocab x hidden table, int8 (``bits`` 8) or 4-bit (``bits`` 4): ``forward(ids)`` embeds,
    ``logits(hidden)`` is the output head."""

    is_packed = True  # like the packed projections: runtimes that lower weights as inputs take its buffers

    def __init__(self, codes: torch.Tensor, scale: torch.Tensor, in_features: int, block_size: int, bits: int = 8):
        super().__init__()
        if bits not in (8, 4):
            raise ValueError(f"a quantized table has 8 or 4 bits a weight, not {bits}")
        self.in_features = in_features
        self.block_size = block_size
        self.bits = bits
        self.register_buffer("w_codes", codes.to(torch.uint8).contiguous())
        # int8: one scale per row [N]; q4: one per block of a row [N, blocks]
        shape = (codes.shape[0],) if bits == 8 else (codes.shape[0], -1)
        self.register_buffer("w_scale", scale.float().reshape(shape).contiguous())

    @classmethod
    def from_weight(cls, weight: torch.Tensor, bits: int = 8) -> "QuantizedTable":
        if bits == 4:
            block = q4_matmul.block_size_for(weight.shape[1])
            codes, scale = q4_matmul.quantize_blocks_q4(weight, block)
        else:
            block = block_size_for(weight.shape[1])
            codes, scale = quantize_rows(weight, block)
        return cls(codes, scale, weight.shape[1], block, bits)

    @classmethod
    def from_codes(cls, codes, scale, in_features: int, block_size: int, bits: int = 8) -> "QuantizedTable":
        return cls(codes, scale, in_features, block_size, bits)

    @property
    def num_embeddings(self) -> int:
        return self.w_codes.shape[0]

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        # whole rows first, then the columns: slicing the table itself would copy all of it on every step
        rows = F.embedding(ids, self.w_codes)
        if self.bits == 8:
            return (rows[..., :self.in_features].to(torch.int32) - ZERO_POINT).float() * F.embedding(ids, self.w_scale[:, None])
        # two codes a byte (SPEC: element j of a block low, j + B/2 high), unpacked with float arithmetic every
        # runtime lowers (floor instead of integer shifts)
        codes = rows.float().reshape(*ids.shape, -1, self.block_size // 2)
        high = torch.floor(codes / 16.0)
        weights = torch.cat([codes - 16.0 * high, high], dim=-1) - q4_matmul.reference.ZERO_POINT
        scaled = weights * F.embedding(ids, self.w_scale)[..., None]
        return scaled.reshape(*ids.shape, -1)[..., :self.in_features]

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        linear = int8_linear if self.bits == 8 else q4_matmul.q4_linear
        return linear(hidden, self.w_codes, self.w_scale, self.in_features, self.block_size)

    def extra_repr(self) -> str:
        kind = "int8" if self.bits == 8 else "q4"
        return f"{self.num_embeddings}, {self.in_features}, {kind} (block {self.block_size})"


class HeadOfTable(nn.Module):
    """``forward(hidden) -> logits`` of a table (the output head alone, as operator tests and benchmarks call it)."""

    def __init__(self, table: nn.Module):
        super().__init__()
        self.table = table

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return output_logits(hidden, self.table, None)


def head_modules(model: nn.Module) -> tuple[str, str | None]:
    """(attribute of the input embedding, attribute of the untied head or None) of a family's model."""
    embedding = next(name for name, child in model.named_children() if isinstance(child, (nn.Embedding, QuantizedTable)))
    return embedding, ("lm_head" if getattr(model, "lm_head", None) is not None else None)


def table_params(table: nn.Module) -> int:
    """Weights of an embedding / head table, full precision or a QuantizedTable (its codes are padded: count the
    logical vocab x hidden)."""
    return table.weight.numel() if hasattr(table, "weight") else table.num_embeddings * table.in_features


def head_precision(model: nn.Module) -> str:
    embedding, head = head_modules(model)
    table = getattr(model, head or embedding)
    if not isinstance(table, QuantizedTable):
        return "fp32"
    return "int8" if table.bits == 8 else "q4"


def set_head_precision(model: nn.Module, precision: str) -> nn.Module:
    """Store ``model``'s head (and embedding) at ``precision`` in place; returns ``model``. Tied models keep one
    table, which the embedding and the head share."""
    if precision not in HEAD_PRECISIONS:
        raise ValueError(f"unknown head precision {precision!r}; choose one of {', '.join(HEAD_PRECISIONS)}")
    current = head_precision(model)
    if precision == "fp32" or current == precision:
        return model
    if current != "fp32":
        raise ValueError(f"the head is already {current}; quantize it to {precision} from the checkpoint's fp32 table")
    embedding, head = head_modules(model)
    bits = {"int8": 8, "q4": 4}[precision]
    with torch.no_grad():
        table = QuantizedTable.from_weight(getattr(model, embedding).weight, bits)
        setattr(model, embedding, table)
        if head is not None:
            setattr(model, head, QuantizedTable.from_weight(getattr(model, head).weight, bits))
    return model


def output_logits(hidden: torch.Tensor, embedding: nn.Module, lm_head: nn.Module | None) -> torch.Tensor:
    """float32 logits from the final hidden states: the untied head if there is one, else the tied embedding."""
    table = embedding if lm_head is None else lm_head
    if hasattr(table, "logits"):  # QuantizedTable, or a runtime's stand-in for it
        return table.logits(hidden)
    return F.linear(hidden, table.weight.float())
