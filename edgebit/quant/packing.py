"""Bit layouts of ternary weights: edgebit's planar 2-bit form, its base-3 storage form, and HF's row-blocked form.

A ternary weight w in {-1, 0, +1} is stored as the 2-bit code ``c = w + 1`` (0 -> -1, 1 -> 0, 2 -> +1); code 1
(weight 0) is also the padding value, so padded columns contribute nothing to a dot product.

**Planar** (edgebit's compute layout, what the kernels read): a matrix W [N, K] becomes uint8 [N, Kq] with
``Kq >= ceil(K / 4)``. Byte ``b`` of row ``n`` holds, in bits ``2j..2j+1``, the code of column ``k = j * Kq + b``
(j = 0..3). Each of the four bit planes of a row therefore covers a contiguous run of Kq activations, so a kernel
decodes one plane with a shift and a mask and multiplies it against a contiguous slice of x.

**Base-3** (edgebit's dense storage form, 1.6 bits per weight): five codes per byte, ``byte = sum(c_i * 3**i)``
over consecutive columns, rows padded to a multiple of five with code 1. Only a storage form: it is converted to
planar at load time.

**HF row-blocked** (microsoft/bitnet-b1.58-2B-4T): uint8 [N / 4, K]; with R = N / 4,
``W[i * R + r, k] = ((P[r, k] >> 2i) & 3) - 1``.
"""

from __future__ import annotations

import torch

CODES_PER_BYTE = 4
TRITS_PER_BYTE = 5
ZERO_CODE = 1  # the code of weight 0, used for padding


def planar_columns(in_features: int) -> int:
    """Bytes per row in the planar layout for ``in_features`` columns (the smallest valid Kq)."""
    return -(-in_features // CODES_PER_BYTE)


def pack_planar(ternary: torch.Tensor, packed_columns: int | None = None) -> torch.Tensor:
    """Pack int ternary weights [N, K] into planar uint8 [N, Kq]."""
    n, k = ternary.shape
    kq = planar_columns(k) if packed_columns is None else packed_columns
    if kq * CODES_PER_BYTE < k:
        raise ValueError(f"packed_columns={kq} cannot hold {k} columns")
    codes = torch.full((n, kq * CODES_PER_BYTE), ZERO_CODE, dtype=torch.uint8)
    codes[:, :k] = (ternary.to(torch.int16) + 1).to(torch.uint8)
    planes = codes.reshape(n, CODES_PER_BYTE, kq)
    packed = torch.zeros((n, kq), dtype=torch.uint8)
    for j in range(CODES_PER_BYTE):
        packed |= planes[:, j, :] << (2 * j)
    return packed


def unpack_planar(packed: torch.Tensor, in_features: int) -> torch.Tensor:
    """Unpack planar uint8 [N, Kq] into int8 ternary weights [N, in_features]."""
    n, kq = packed.shape
    planes = [((packed >> (2 * j)) & 3) for j in range(CODES_PER_BYTE)]
    codes = torch.stack(planes, dim=1).reshape(n, kq * CODES_PER_BYTE)[:, :in_features]
    return codes.to(torch.int8) - 1


def unpack_hf_rowblocked(packed: torch.Tensor) -> torch.Tensor:
    """Unpack HF BitNet's uint8 [N/4, K] into int8 ternary weights [N, K]."""
    blocks = [((packed >> (2 * i)) & 3) for i in range(CODES_PER_BYTE)]
    return torch.cat(blocks, dim=0).to(torch.int8) - 1


def pack_hf_rowblocked(ternary: torch.Tensor) -> torch.Tensor:
    """Pack int ternary weights [N, K] (N divisible by 4) into HF BitNet's row-blocked uint8 [N/4, K]."""
    n, _ = ternary.shape
    if n % CODES_PER_BYTE:
        raise ValueError(f"HF row-blocked packing needs out_features divisible by 4, got {n}")
    codes = (ternary.to(torch.int16) + 1).to(torch.uint8)
    r = n // CODES_PER_BYTE
    packed = torch.zeros((r, ternary.shape[1]), dtype=torch.uint8)
    for i in range(CODES_PER_BYTE):
        packed |= codes[i * r:(i + 1) * r] << (2 * i)
    return packed


_POW3 = torch.tensor([1, 3, 9, 27, 81], dtype=torch.int32)


def pack_base3(ternary: torch.Tensor) -> torch.Tensor:
    """Pack int ternary weights [N, K] into base-3 uint8 [N, ceil(K / 5)] (five codes per byte)."""
    n, k = ternary.shape
    width = -(-k // TRITS_PER_BYTE)
    codes = torch.full((n, width * TRITS_PER_BYTE), ZERO_CODE, dtype=torch.int32)
    codes[:, :k] = ternary.to(torch.int32) + 1
    return (codes.reshape(n, width, TRITS_PER_BYTE) * _POW3).sum(-1).to(torch.uint8)


def unpack_base3(packed: torch.Tensor, in_features: int) -> torch.Tensor:
    """Unpack base-3 uint8 [N, ceil(K / 5)] into int8 ternary weights [N, in_features]."""
    if packed.numel() and int(packed.max()) >= 3 ** TRITS_PER_BYTE:
        raise ValueError("base-3 packed byte out of range (>= 243): the file is corrupt")
    values = packed.to(torch.int32).unsqueeze(-1)
    codes = (values // _POW3) % 3
    n = packed.shape[0]
    return (codes.reshape(n, -1)[:, :in_features] - 1).to(torch.int8)
