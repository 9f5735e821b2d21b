"""``edgebit::selective_scan`` in numpy, written from SPEC.md alone (no edgebit code): the sequential recurrence
in float64."""

from __future__ import annotations

import numpy as np


def selective_scan(x, dt, A, B, C, D, state):
    """For each token t and head h (group ``g = h // (H / G)``):
    ``S = S * exp(dt[t,h] A[h]) + dt[t,h] x[t,h] (outer) B[t,g]``, ``y[t,h] = S @ C[t,g] + D[h] x[t,h]``.

    Shapes: x [Bt, T, H, P], dt [Bt, T, H], A [H], B and C [Bt, T, G, N], D [H], state [Bt, H, P, N].
    Returns (y [Bt, T, H, P], the state after the last token), float64.
    """
    x, dt, A, B, C, D = (np.asarray(v, np.float64) for v in (x, dt, A, B, C, D))
    heads, groups = x.shape[2], B.shape[2]
    B, C = np.repeat(B, heads // groups, axis=2), np.repeat(C, heads // groups, axis=2)  # [Bt, T, H, N]
    s = np.array(state, dtype=np.float64)
    y = np.zeros_like(x)
    for t in range(x.shape[1]):
        s = s * np.exp(dt[:, t] * A)[..., None, None] + (dt[:, t, :, None] * x[:, t])[..., None] * B[:, t, :, None, :]
        y[:, t] = (s * C[:, t, :, None, :]).sum(-1) + D[:, None] * x[:, t]
    return y, s


def random_inputs(rng, batch=2, length=7, heads=4, head_dim=3, groups=2, size=5, dtype=np.float64):
    """Inputs in the ranges a Mamba-2 layer feeds the scan (dt > 0, A < 0), from a numpy Generator ``rng``."""
    return tuple(a.astype(dtype) for a in (
        rng.normal(size=(batch, length, heads, head_dim)), rng.uniform(0.01, 0.5, (batch, length, heads)),
        -rng.uniform(0.5, 4, heads), rng.normal(size=(batch, length, groups, size)),
        rng.normal(size=(batch, length, groups, size)), rng.normal(size=heads),
        rng.normal(size=(batch, heads, head_dim, size))))


# ---- the operator at its schema, and the cases every runtime's implementation is checked on ----
TOLERANCE = 1e-5  # max |out - reference| over max |reference|, per output


def reference(x, dt, A, B, C, D, state):
    """``edgebit::selective_scan(x, dt, A, B, C, D, state)`` -> (y, final_state), float64."""
    return selective_scan(x, dt, A, B, C, D, state)


def cases() -> dict:
    """{name: schema arguments}, float32, a batch of one (a bundle's step): decode (T = 1) and prefill (T = 7) from
    a nonzero state, heads sharing groups, a state size with full 16-lane vectors and a tail."""
    result = {}
    for length, heads, groups, size in ((1, 4, 2, 16), (7, 6, 2, 20), (5, 3, 1, 9)):
        rng = np.random.default_rng(length)
        result[f"t{length}-h{heads}-g{groups}-n{size}"] = random_inputs(
            rng, batch=1, length=length, heads=heads, head_dim=5, groups=groups, size=size, dtype=np.float32)
    return result
