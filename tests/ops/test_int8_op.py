"""edgebit::int8_linear (the quantized output head): the torch op against ops/int8_matmul/numpy_reference.py (written
from SPEC.md), the row quantization, the embedding that reads the same table, and each TVM dot-product kernel this host
can run (every runtime's lowering: tests/runtimes/test_operators.py; the perplexity cost: test_demo_heldout.py)."""

import numpy as np
import pytest
import torch

from edgebit.models.head import HeadOfTable, QuantizedTable, head_precision, set_head_precision
from edgebit_ops.int8_matmul import block_size_for, int8_linear, quantize_rows
from edgebit_ops.int8_matmul import numpy_reference as int8_reference


@pytest.mark.parametrize("case", sorted(int8_reference.cases()))
def test_op_matches_numpy(case):
    x, codes, scale, k, block = int8_reference.cases()[case]
    out = int8_linear(torch.from_numpy(x), torch.from_numpy(codes), torch.from_numpy(scale), k, block)
    (expected,) = int8_reference.reference(x, codes, scale, k, block)
    assert out.shape == expected.shape and out.dtype == torch.float32
    assert np.abs(out.numpy() - expected).max() <= 1e-6 * np.abs(expected).max()


def test_row_quantization_matches_numpy_and_bounds_the_error():
    rng = np.random.default_rng(1)
    weight = rng.standard_normal((40, 300)).astype(np.float32)
    weight[3] = 0
    codes, scale = quantize_rows(torch.from_numpy(weight), 128)
    want_codes, want_scale = int8_reference.quantize_rows(weight, 128)
    assert codes.shape == (40, 384) and np.array_equal(codes.numpy(), want_codes)
    np.testing.assert_array_equal(scale.numpy(), want_scale)
    dequantized = (codes.numpy()[:, :300].astype(np.float32) - 128) * scale.numpy()[:, None]
    assert np.abs(dequantized - weight).max() <= scale.numpy().max() / 2 + 1e-7
    assert (codes.numpy()[:, 300:] == 128).all()  # padding is weight 0


@pytest.mark.parametrize("k,block", [(8, 16), (16, 16), (17, 32), (100, 128), (2560, 128)])
def test_block_size_is_a_power_of_two_matmulnbits_accepts(k, block):
    assert block_size_for(k) == block


def test_embedding_and_head_read_the_same_table():
    weight = torch.randn(50, 24)
    table = QuantizedTable.from_weight(weight)
    ids = torch.tensor([[0, 7, 49, 7]])
    rows = table(ids)
    dequantized = (table.w_codes[:, :24].float() - 128) * table.w_scale[:, None]
    assert torch.equal(rows, dequantized[ids])
    hidden = torch.randn(1, 3, 24)
    # the head is the dequantized table up to the activations' block quantization (1/254 of each block's absmax)
    exact = hidden @ dequantized.T
    assert (HeadOfTable(table)(hidden) - exact).abs().max() <= 0.02 * exact.abs().max()


def test_tied_model_keeps_one_table_and_untied_quantizes_both():
    from edgebit.models.bitnet.model import BitNetConfig, BitNetForCausalLM

    torch.manual_seed(0)
    for tied in (True, False):
        config = BitNetConfig(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=1,
                              num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=tied)
        model = BitNetForCausalLM(config).pack().eval()
        ids = torch.randint(0, 64, (1, 5))
        before = model(ids)
        set_head_precision(model, "int8")
        assert head_precision(model) == "int8" and isinstance(model.embed_tokens, QuantizedTable)
        assert (model.lm_head is None) == tied and (tied or isinstance(model.lm_head, QuantizedTable))
        tables = {id(m) for m in model.modules() if isinstance(m, QuantizedTable)}
        assert len(tables) == (1 if tied else 2)
        assert (model(ids) - before).abs().max() <= 0.05 * before.abs().max()


@pytest.mark.slow
@pytest.mark.parametrize("isa,march", [("avx2", "haswell"), ("avx512vnni", "icelake-server")])
@pytest.mark.parametrize("case", ["k64-b64-n9", "k2566-b128-n67"])
def test_tvm_extern_kernel_matches_the_reference(isa, march, case, tmp_path):
    """The TensorIR call into kernel.h, linked into a library as a model's is, on TVM's thread pool."""
    import dataclasses

    import tvm

    from edgebit.runtimes.tvm.backend import _export
    from edgebit.runtimes.tvm.extern_kernels import ExternKernels
    from edgebit.targets import resolve_target
    from edgebit.toolchain.host_cpu import cpu_flags
    from edgebit_ops.int8_matmul.tvm_kernel import EXTERN_SOURCE, int8_extern_kernel

    if {"avx2": "avx2", "avx512vnni": "avx512_vnni"}[isa] not in cpu_flags():
        pytest.skip(f"this host cannot run {isa}")
    target = dataclasses.replace(resolve_target("x86_64"), cflags=(f"-march={march}",))
    x, codes, scale, k, block = int8_reference.cases()[case]
    x = x.reshape(-1, k)
    n, padded = codes.shape
    extern = ExternKernels()
    extern.use(EXTERN_SOURCE)
    executable = tvm.compile(tvm.IRModule({"k": int8_extern_kernel(n, k, padded, block, "k")}),
                             target=tvm.target.Target({"kind": "llvm", "mcpu": march}))
    _export(executable, target, extern, tmp_path / "k.so")
    out = tvm.runtime.tensor(np.zeros((x.shape[0], n), np.float32))
    tvm.runtime.load_module(str(tmp_path / "k.so"))["k"](*(tvm.runtime.tensor(a) for a in (x, codes, scale)), out)
    (expected,) = int8_reference.reference(x, codes, scale, k, block)
    assert np.abs(out.numpy() - expected).max() <= int8_reference.TOLERANCE * np.abs(expected).max()
