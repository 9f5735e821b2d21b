"""PyTorch reference of ``edgebit::selective_scan`` (the sequential recurrence of SPEC.md), its registration, and the
chunked (SSD) form of the same recurrence that training differentiates through."""

from __future__ import annotations

import torch
import torch.nn.functional as F

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


def _decay_matrix(a_cum: torch.Tensor) -> torch.Tensor:
    """``out[..., i, j] = exp(a_cum[i] - a_cum[j])`` for ``i >= j`` (the decay from step j to step i, the exp of
    the segment sum ``a[j+1] + ... + a[i]``), 0 above the diagonal. Masked before the exp so nothing overflows;
    a difference of cumulative sums is exact enough inside one chunk, where the sums stay small."""
    length = a_cum.shape[-1]
    upper = torch.ones(length, length, dtype=torch.bool, device=a_cum.device).triu(1)
    return torch.exp((a_cum[..., :, None] - a_cum[..., None, :]).masked_fill(upper, float("-inf")))


def _segment_decay(a: torch.Tensor) -> torch.Tensor:
    """The same matrix from the per-step log decays ``a``, each segment summed on its own (no difference of two
    large cumulative sums), for the hand-over across chunks, whose sums grow with the sequence."""
    length = a.shape[-1]
    strict = torch.ones(length, length, dtype=torch.bool, device=a.device).tril(-1)
    sums = a[..., :, None].expand(*a.shape, length).masked_fill(~strict, 0).cumsum(-2)  # [i, j] = a[j+1..i]
    return torch.exp(sums.masked_fill(strict.T, float("-inf")))


def selective_scan_chunked(x, dt, A, B, C, D, state, chunk_size: int = 64):
    """The recurrence of SPEC.md in chunks of ``chunk_size`` tokens (SPEC.md, "Chunked form"): matrix products
    inside each chunk and one state hand-over per chunk, so autograd keeps O(T / chunk) states instead of T."""
    batch, length, heads, head_dim = x.shape
    groups, size = B.shape[2], B.shape[3]
    per_group = heads // groups
    chunks = max(1, -(-length // chunk_size))
    pad = chunks * chunk_size - length
    if pad:  # dt = 0 past the end: no decay and no input, so the final state is unchanged
        x, dt = F.pad(x, (0, 0, 0, 0, 0, pad)), F.pad(dt, (0, 0, 0, pad))
        B, C = F.pad(B, (0, 0, 0, 0, 0, pad)), F.pad(C, (0, 0, 0, 0, 0, pad))
    b, c, L, g, r, p, n = batch, chunks, chunk_size, groups, per_group, head_dim, size
    # index names: b batch, c chunk, l/s token in chunk, g group, r head within group, p head channel, n state
    dt = dt.reshape(b, c, L, g, r)
    x_dt = x.reshape(b, c, L, g, r, p) * dt[..., None]
    Bg = B.reshape(b, c, L, g, n).transpose(2, 3)  # [b, c, g, L, n]
    Cg = C.reshape(b, c, L, g, n).transpose(2, 3)
    a_cum = (dt * A.reshape(g, r)).cumsum(2).permute(0, 1, 3, 4, 2)  # log decay from chunk start [b, c, g, r, L]
    # 1. within each chunk: y_l = sum_{s <= l} (C_l . B_s) exp(a_cum_l - a_cum_s) dt_s x_s
    scores = (Cg @ Bg.transpose(-1, -2))[:, :, :, None] * _decay_matrix(a_cum)  # [b, c, g, r, L, L]
    y = (scores @ x_dt.permute(0, 1, 3, 4, 2, 5)).permute(0, 1, 4, 2, 3, 5)  # [b, c, L, g, r, p]
    # 2. the state each chunk adds by its end: sum_s exp(a_cum_L - a_cum_s) dt_s x_s (outer) B_s
    to_end = torch.exp(a_cum[..., -1:] - a_cum).permute(0, 1, 4, 2, 3)  # [b, c, L, g, r]
    weighted = (x_dt * to_end[..., None]).reshape(b, c, L, g, r * p).permute(0, 1, 3, 4, 2)  # [b, c, g, rp, L]
    added = (weighted @ Bg).reshape(b, c, g, r, p, n)
    # 3. hand the state over chunk to chunk: S_c = exp(a_cum_L of chunk c) S_{c-1} + added_c, S_0 = initial state
    initial = state.to(x.dtype).reshape(b, 1, g, r, p, n)
    states = torch.cat([initial, added], dim=1)  # [b, c+1, g, r, p, n]
    totals = F.pad(a_cum[..., -1].permute(0, 2, 3, 1), (1, 0))  # log decay of each chunk [b, g, r, c+1]
    states = torch.einsum("bgrzc,bcgrpn->bzgrpn", _segment_decay(totals), states)
    entering, final = states[:, :-1], states[:, -1]
    # 4. what the state entering a chunk contributes: y_l += exp(a_cum_l) C_l . S_{c-1}
    carried = Cg @ entering.reshape(b, c, g, r * p, n).transpose(-1, -2)  # [b, c, g, L, rp]
    carried = carried.reshape(b, c, g, L, r, p).transpose(2, 3) * torch.exp(a_cum).permute(0, 1, 4, 2, 3)[..., None]
    y = (y + carried).reshape(b, c * L, heads, head_dim)[:, :length]
    return y + D[:, None] * x[:, :length], final.reshape(b, heads, head_dim, size)


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
