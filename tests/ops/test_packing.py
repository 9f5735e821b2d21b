"""Bit layouts: round trips (hypothesis) and the layouts' definitions checked element by element."""

import numpy as np
import torch
from hypothesis import given, settings, strategies as st
from transformers.integrations.bitnet import pack_weights

from edgebit.quant.packing import (pack_base3, pack_hf_rowblocked, pack_planar, planar_columns, unpack_base3,
                             unpack_hf_rowblocked, unpack_planar)
from edgebit_ops.ternary_matmul import numpy_reference as ternary_reference

shapes = st.tuples(st.integers(1, 9), st.integers(1, 70))


def ternary(shape, seed):
    return torch.randint(-1, 2, shape, generator=torch.Generator().manual_seed(seed), dtype=torch.int8)


@settings(max_examples=60, deadline=None)
@given(shapes, st.integers(0, 2**31), st.integers(0, 3))
def test_planar_round_trip(shape, seed, extra_columns):
    w = ternary(shape, seed)
    kq = planar_columns(shape[1]) + extra_columns
    packed = pack_planar(w, kq)
    assert packed.shape == (shape[0], kq) and packed.dtype == torch.uint8
    assert torch.equal(unpack_planar(packed, shape[1]), w)


@settings(max_examples=60, deadline=None)
@given(shapes, st.integers(0, 2**31))
def test_base3_round_trip_and_density(shape, seed):
    w = ternary(shape, seed)
    packed = pack_base3(w)
    assert packed.shape == (shape[0], -(-shape[1] // 5))
    assert int(packed.max()) < 243
    assert torch.equal(unpack_base3(packed, shape[1]), w)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 6), st.integers(1, 40), st.integers(0, 2**31))
def test_hf_rowblocked_matches_transformers(rows4, cols, seed):
    w = ternary((4 * rows4, cols), seed)
    theirs = pack_weights(w.to(torch.float32).clone())
    assert torch.equal(pack_hf_rowblocked(w), theirs)
    assert torch.equal(unpack_hf_rowblocked(theirs), w)


def test_planar_layout_definition():
    """Byte b of row n holds, in bits 2j..2j+1, code w[n, j*Kq + b] + 1 (written out with numpy)."""
    w = ternary((3, 22), 7)
    packed = pack_planar(w).numpy()
    kq = packed.shape[1]
    assert kq == 6
    codes = np.ones((3, 4 * kq), dtype=np.uint8)
    codes[:, :22] = w.numpy() + 1
    for n in range(3):
        for b in range(kq):
            expected = sum(int(codes[n, j * kq + b]) << (2 * j) for j in range(4))
            assert packed[n, b] == expected
    assert np.array_equal(packed, ternary_reference.pack_planar(w.numpy()))  # the numpy reference's packing too


def test_base3_layout_definition():
    w = torch.tensor([[1, -1, 0, 1, 1, -1, 0]], dtype=torch.int8)
    packed = pack_base3(w)
    codes = [2, 0, 1, 2, 2, 0, 1, 1, 1, 1]
    assert packed.tolist() == [[sum(c * 3**i for i, c in enumerate(codes[:5])),
                                sum(c * 3**i for i, c in enumerate(codes[5:]))]]
