"""PyTorch reference of ``edgebit::selective_scan`` (the sequential recurrence of SPEC.md) and its registration."""

from __future__ import annotations

import torch

_lib = torch.library.Library("edgebit", "FRAGMENT")
_lib.define("selective_scan(Tensor x, Tensor dt, Tensor A, Tensor B, Tensor C, Tensor D, Tensor state) "
            "-> (Tensor, Tensor)")
_lib.define("selective_scan.out(Tensor x, Tensor dt, Tensor A, Tensor B, Tensor C, Tensor D, Tensor state, *, "
            "Tensor(a!) y, Tensor(b!) final_state) -> (Tensor(a!), Tensor(b!))")


def selective_scan_reference(x, dt, A, B, C, D, state):
    batch, length, heads, _ = x.shape
    groups = B.shape[2]
    per_group = heads // groups
    B = B.repeat_interleave(per_group, dim=2)  # [Bt, T, H, N]
    C = C.repeat_interleave(per_group, dim=2)
    decay = torch.exp(dt * A)  # [Bt, T, H]
    s = state.float()
    outputs = []
    for t in range(length):
        s = s * decay[:, t, :, None, None] + (dt[:, t, :, None, None] * x[:, t, :, :, None]) * B[:, t, :, None, :]
        outputs.append((s @ C[:, t, :, :, None])[..., 0] + D[:, None] * x[:, t])
    y = torch.stack(outputs, dim=1) if outputs else x.new_zeros(x.shape)
    return y, s


@torch.library.impl(_lib, "selective_scan", "CompositeExplicitAutograd")
def _impl(x, dt, A, B, C, D, state):
    return selective_scan_reference(x, dt, A, B, C, D, state)


@torch.library.impl(_lib, "selective_scan.out", "CompositeExplicitAutograd")
def _impl_out(x, dt, A, B, C, D, state, *, y, final_state):
    result, last = selective_scan_reference(x, dt, A, B, C, D, state)
    y.resize_(result.shape).copy_(result)
    final_state.resize_(last.shape).copy_(last)
    return y, final_state


@torch.library.register_fake("edgebit::selective_scan")
def _fake(x, dt, A, B, C, D, state):
    return x.new_empty(x.shape), state.new_empty(state.shape)


@torch.library.register_fake("edgebit::selective_scan.out")
def _fake_out(x, dt, A, B, C, D, state, *, y, final_state):
    return y, final_state


selective_scan = torch.ops.edgebit.selective_scan.default
