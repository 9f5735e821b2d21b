"""The output head (and the tied embedding that shares its table) at a chosen precision.

The head is the largest full-precision tensor of a 1-bit model (vocab x hidden: 1.3 GB in fp32 at BitNet 2B-4T
size, two thirds of the bytes a decode step reads), so its precision decides decode speed once the projections are
ternary. ``edgebit export --head`` picks it; the host reference model uses the same head, so ``validate`` compares
like with like, and the export records what the head costs in perplexity against fp32 (manifest ``model.head``).

* ``fp32``: the checkpoint's table as it is.
* ``int8``: one int8 code per weight and one float32 scale per row (``ops/int8_matmul/SPEC.md``); the logits run
  through ``edgebit::int8_linear`` (activations quantized per block of 128, as llama.cpp's q8_0 and ONNX Runtime's
  MatMulNBits do), the tied embedding looks up the same codes. 4.0x fewer bytes than fp32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edgebit_ops.int8_matmul import block_size_for, int8_linear, quantize_rows
from edgebit_ops.int8_matmul.reference import ZERO_POINT

from edgebit.export import HEAD_PRECISIONS  # noqa: F401  (the first is export's default)


class QuantizedTable(nn.Module):
    """An int8 vocab x hidden table: ``forward(ids)`` embeds, ``logits(hidden)`` is the output head."""

    is_packed = True  # like the packed projections: runtimes that lower weights as inputs take its buffers

    def __init__(self, codes: torch.Tensor, scale: torch.Tensor, in_features: int, block_size: int):
        super().__init__()
        self.in_features = in_features
        self.block_size = block_size
        self.register_buffer("w_codes", codes.to(torch.uint8).contiguous())
        self.register_buffer("w_scale", scale.float().reshape(-1).contiguous())

    @classmethod
    def from_weight(cls, weight: torch.Tensor) -> "QuantizedTable":
        block = block_size_for(weight.shape[1])
        codes, scale = quantize_rows(weight, block)
        return cls(codes, scale, weight.shape[1], block)

    @classmethod
    def from_codes(cls, codes, scale, in_features: int, block_size: int) -> "QuantizedTable":
        return cls(codes, scale, in_features, block_size)

    @property
    def num_embeddings(self) -> int:
        return self.w_codes.shape[0]

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        # whole rows first, then the columns: slicing the table itself would copy all of it on every step
        rows = F.embedding(ids, self.w_codes)[..., :self.in_features]
        return (rows.to(torch.int32) - ZERO_POINT).float() * F.embedding(ids, self.w_scale[:, None])

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return int8_linear(hidden, self.w_codes, self.w_scale, self.in_features, self.block_size)

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.in_features}, int8 (block {self.block_size})"


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
    return "int8" if isinstance(table, QuantizedTable) else "fp32"


def set_head_precision(model: nn.Module, precision: str) -> nn.Module:
    """Store ``model``'s head (and embedding) at ``precision`` in place; returns ``model``. Tied models keep one
    table, which the embedding and the head share."""
    if precision not in HEAD_PRECISIONS:
        raise ValueError(f"unknown head precision {precision!r}; choose one of {', '.join(HEAD_PRECISIONS)}")
    if precision == "fp32" or head_precision(model) == precision:
        return model
    embedding, head = head_modules(model)
    with torch.no_grad():
        table = QuantizedTable.from_weight(getattr(model, embedding).weight)
        setattr(model, embedding, table)
        if head is not None:
            setattr(model, head, QuantizedTable.from_weight(getattr(model, head).weight))
    return model


def output_logits(hidden: torch.Tensor, embedding: nn.Module, lm_head: nn.Module | None) -> torch.Tensor:
    """float32 logits from the final hidden states: the untied head if there is one, else the tied embedding."""
    table = embedding if lm_head is None else lm_head
    if hasattr(table, "logits"):  # QuantizedTable, or a runtime's stand-in for it
        return table.logits(hidden)
    return F.linear(hidden, table.weight.float())
