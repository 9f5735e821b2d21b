"""edgebit::q4_linear (the 4-bit output head): the torch op and the block quantizer against
ops/q4_matmul/numpy_reference.py (written from SPEC.md), the embedding that reads the same table, each C++ path this
host can run through TVM, and a --head q4 bundle validated on emulated arm64 (NEON and sdot paths) and the host
(every runtime's lowering on the numpy cases: tests/runtimes/test_operators.py; the perplexity cost:
tests/models/test_demo_heldout.py)."""

import json

import numpy as np
import pytest
import torch

from cli_helpers import run_cli
from edgebit.models.head import HeadOfTable, QuantizedTable, head_precision, set_head_precision
from edgebit_ops.q4_matmul import block_size_for, q4_linear, quantize_blocks_q4
from edgebit_ops.q4_matmul import numpy_reference as q4_reference


@pytest.mark.parametrize("case", sorted(q4_reference.cases()))
def test_op_matches_numpy(case):
    x, codes, scale, k, block = q4_reference.cases()[case]
    out = q4_linear(torch.from_numpy(x), torch.from_numpy(codes), torch.from_numpy(scale), k, block)
    (expected,) = q4_reference.reference(x, codes, scale, k, block)
    assert out.shape == expected.shape and out.dtype == torch.float32
    assert np.abs(out.numpy() - expected).max() <= 1e-6 * np.abs(expected).max()


def test_block_quantization_matches_numpy_and_beats_the_plain_absmax_scale():
    rng = np.random.default_rng(1)
    weight = rng.standard_normal((40, 300)).astype(np.float32)
    weight[3] = 0
    codes, scale = quantize_blocks_q4(torch.from_numpy(weight), 64)
    want_codes, want_scale = q4_reference.quantize_rows(weight, 64)
    assert codes.shape == (40, 160) and scale.shape == (40, 5)
    assert np.array_equal(codes.numpy(), want_codes)
    np.testing.assert_array_equal(scale.numpy(), want_scale)
    w = q4_reference.weights(want_codes, 64)
    assert w.min() >= -8 and w.max() <= 7 and (w[3] == 0).all() and (w[:, 4, 300 - 256:] == 0).all()  # padding: 0
    dequantized = (w * want_scale[..., None]).reshape(40, -1)[:, :300]
    blocks = np.zeros((40, 320), np.float32)
    blocks[:, :300] = weight
    amax = np.abs(blocks.reshape(40, 5, 64)).max(-1, keepdims=True) / 7
    naive = np.clip(np.round(blocks.reshape(40, 5, 64) / np.where(amax > 0, amax, 1)), -8, 7) * amax  # s = max / 7
    searched_error = ((dequantized - weight) ** 2).sum()
    naive_error = ((naive.reshape(40, -1)[:, :300] - weight) ** 2).sum()
    assert searched_error < 0.95 * naive_error


@pytest.mark.parametrize("k,block", [(8, 32), (32, 32), (33, 64), (2560, 64)])
def test_block_size(k, block):
    assert block_size_for(k) == block


def test_embedding_and_head_read_the_same_table():
    weight = torch.randn(50, 100)
    table = QuantizedTable.from_weight(weight, bits=4)
    ids = torch.tensor([[0, 7, 49, 7]])
    codes = table.w_codes.numpy()
    dequantized = torch.from_numpy((q4_reference.weights(codes, 64) * table.w_scale.numpy()[..., None])
                                   .reshape(50, -1)[:, :100]).float()
    assert torch.equal(table(ids), dequantized[ids])
    hidden = torch.randn(1, 3, 100)
    exact = hidden @ dequantized.T  # up to the activations' block quantization (1/254 of each block's absmax)
    assert (HeadOfTable(table)(hidden) - exact).abs().max() <= 0.02 * exact.abs().max()
    assert (dequantized - weight).abs().max() <= 0.25 * weight.abs().max()  # 4 bits: a coarse, bounded error


def test_tied_model_keeps_one_table_and_an_int8_head_is_not_requantized():
    from edgebit.models.bitnet.model import BitNetConfig, BitNetForCausalLM

    torch.manual_seed(0)
    config = BitNetConfig(vocab_size=64, hidden_size=64, intermediate_size=48, num_hidden_layers=1,
                          num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True)
    model = BitNetForCausalLM(config).pack().eval()
    ids = torch.randint(0, 64, (1, 5))
    before = model(ids)
    set_head_precision(model, "q4")
    assert head_precision(model) == "q4" and model.lm_head is None
    assert len({id(m) for m in model.modules() if isinstance(m, QuantizedTable)}) == 1
    assert (model(ids) - before).abs().max() <= 0.15 * before.abs().max()
    with pytest.raises(ValueError, match="already q4"):
        set_head_precision(model, "int8")


@pytest.mark.slow
@pytest.mark.parametrize("isa,march", [("avx2", "haswell"), ("avx512vnni", "icelake-server")])
@pytest.mark.parametrize("case", ["k13-b32-n5", "k70-b128-n150", "k2566-b64-n67"])
def test_tvm_extern_kernel_matches_the_reference(isa, march, case, tmp_path):
    """The TensorIR call into kernel.h, linked into a library as a model's is, on TVM's thread pool: AVX2 and the
    VNNI path's groups of four rows (67 = 16 x 4 + 3) for one token (decode) and six (prefill)."""
    import dataclasses

    import tvm

    from edgebit.runtimes.tvm.backend import _export
    from edgebit.runtimes.tvm.extern_kernels import ExternKernels
    from edgebit.targets import resolve_target
    from edgebit.toolchain.host_cpu import cpu_flags
    from edgebit_ops.q4_matmul.tvm_kernel import EXTERN_SOURCE, q4_extern_kernel

    if {"avx2": "avx2", "avx512vnni": "avx512_vnni"}[isa] not in cpu_flags():
        pytest.skip(f"this host cannot run {isa}")
    target = dataclasses.replace(resolve_target("x86_64"), cflags=(f"-march={march}",))
    x, codes, scale, k, block = q4_reference.cases()[case]
    n = codes.shape[0]
    extern = ExternKernels()
    extern.use(EXTERN_SOURCE)
    executable = tvm.compile(tvm.IRModule({"k": q4_extern_kernel(n, k, codes.shape[1] * 2, block, "k")}),
                             target=tvm.target.Target({"kind": "llvm", "mcpu": march}))
    _export(executable, target, extern, tmp_path / "k.so")
    kernel = tvm.runtime.load_module(str(tmp_path / "k.so"))["k"]
    for tokens in (x.reshape(-1, k), x.reshape(-1, k)[1:2]):
        out = tvm.runtime.tensor(np.zeros((tokens.shape[0], n), np.float32))
        kernel(*(tvm.runtime.tensor(a) for a in (tokens, codes, scale)), out)
        (expected,) = q4_reference.reference(tokens, codes, scale, k, block)
        assert np.abs(out.numpy() - expected).max() <= q4_reference.TOLERANCE * np.abs(expected).max()


@pytest.mark.slow
@pytest.mark.parametrize("target,runtimes", [("arm64-dotprod", ("tvm", "onnx-custom", "executorch")),
                                             ("arm64", ("tvm",))])
def test_q4_bundle_validates_on_emulated_arm64(target, runtimes, tmp_path):
    """export --head q4: the manifest records the head and its perplexity cost, and the device's logits (kernel.h's
    sdot and NEON paths under qemu) pass validate against the host model with the same head."""
    bundle = tmp_path / "q4.bundle"
    runtime_flags = [flag for name in runtimes for flag in ("-r", name)]
    run_cli("export", "demo", "--target", target, "--head", "q4", "--max-seq-len", 64, *runtime_flags, "-o", bundle,
            check=True)
    head = json.loads((bundle / "manifest.json").read_text())["model"]["head"]
    assert head["precision"] == "q4"
    cost = head["reference_perplexity"]
    assert abs(cost["q4"] / cost["fp32"] - 1) < 0.02, cost  # the demo's reference texts: -1.2 %
    report = json.loads(run_cli("validate", bundle, "--device", "qemu", *runtime_flags, "--json", check=True).stdout)
    assert report["passed"] and sorted(r["runtime"] for r in report["runtimes"]) == sorted(runtimes), report
