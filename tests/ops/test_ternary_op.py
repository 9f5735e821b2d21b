"""edgebit::ternary_linear: numbers against the numpy reference of SPEC.md, the .out overload, and survival through
torch.export."""

import numpy as np
import pytest
import torch

from edgebit.models.bitnet.model import BitNetConfig, BitNetForCausalLM
from edgebit.quant.packing import pack_planar
from edgebit_ops.ternary_matmul import numpy_reference as ternary_reference
from edgebit_ops.ternary_matmul import ternary_linear


@pytest.mark.parametrize("n,k", [(8, 16), (7, 37), (64, 255)])
def test_op_matches_numpy(n, k):
    gen = torch.Generator().manual_seed(n * k)
    x = torch.randn(3, 4, k, generator=gen)
    w = torch.randint(-1, 2, (n, k), generator=gen)
    out = ternary_linear(x, pack_planar(w), torch.tensor([0.37]), k)
    assert out.shape == (3, 4, n) and out.dtype == torch.float32
    expected = ternary_reference.ternary_linear(x.numpy(), w.numpy(), 0.37)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-5, atol=1e-5)


def test_out_overload_writes_into_out():
    x = torch.randn(2, 12)
    packed = pack_planar(torch.randint(-1, 2, (5, 12)))
    out = torch.empty(2, 5)
    result = torch.ops.edgebit.ternary_linear.out(x, packed, torch.tensor([1.0]), 12, out=out)
    assert result is out
    assert torch.equal(out, ternary_linear(x, packed, torch.tensor([1.0]), 12))


def test_op_rejects_wrong_feature_count():
    with pytest.raises(ValueError, match="features"):
        ternary_linear(torch.randn(2, 10), pack_planar(torch.zeros(4, 12, dtype=torch.int8)), torch.ones(1), 12)


def test_export_keeps_one_node_per_linear_layer():
    config = BitNetConfig(vocab_size=50, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                          num_attention_heads=4, num_key_value_heads=2)
    model = BitNetForCausalLM(config).pack().eval()
    ids = torch.randint(0, 50, (1, 6))
    exported = torch.export.export(model, (ids,))
    nodes = [n for n in exported.graph.nodes if n.op == "call_function"
             and n.target == torch.ops.edgebit.ternary_linear.default]
    assert len(nodes) == 7 * config.num_hidden_layers
    torch.testing.assert_close(exported.module()(ids), model(ids))


@pytest.mark.parametrize("isa,mcpu", [("avx2", "haswell"), ("avx512vnni", "icelake-server")])
@pytest.mark.parametrize("n,k", [(96, 70), (64, 1000)])  # Kq 18 (tail only on VNNI) and 250 (vectors + tail)
def test_dot_product_kernels_match_the_reference(isa, mcpu, n, k):
    import tvm

    from edgebit.toolchain.host_cpu import cpu_flags
    from edgebit_ops.ternary_matmul.tvm_kernel import dot_product_kernel

    needed = {"avx2": "avx2", "avx512vnni": "avx512_vnni"}[isa]
    if needed not in cpu_flags():
        pytest.skip(f"this CPU lacks {needed}")
    gen = torch.Generator().manual_seed(k)
    x = torch.randn(5, k, generator=gen) * 2
    packed, scale = pack_planar(torch.randint(-1, 2, (n, k), generator=gen)), torch.tensor([0.07])
    kernel = tvm.tirx.build(dot_product_kernel(n, k, packed.shape[1], isa, "k"),
                            target=tvm.target.Target({"kind": "llvm", "mcpu": mcpu}))["k"]
    out = torch.empty(5, n)
    kernel(x, packed, scale, out)
    torch.testing.assert_close(out, ternary_linear(x, packed, scale, k), rtol=1e-5, atol=1e-5)
