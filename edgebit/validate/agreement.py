"""How close two sets of logits must be: the one definition used by tests, the CLI and (later) on-device checks.

**The BitNet agreement bound** (two correct implementations differ only where float rounding flips an int8
activation code, or a float16 KV cache entry): cosine similarity >= 0.9999 over all logits (or, where the rounding
noise allows more, the cosine that an error of the max-abs bound in every logit would leave), max abs error <= the
larger of 1 % of the reference's largest |logit| and twice the reference's own *rounding noise*, and the same argmax
wherever the reference's top-2 margin exceeds twice the max abs error.

The rounding noise (``edgebit.validate.reference.rounding_noise``, measured at export and kept in the manifest) is
how far the host's logits move when the inputs of its quantized layers move by one float32 ulp, which is what a
kernel summing in another order does. One such flip early in a sequence moves every later logit, and how far
depends on the model: on the BitNet demo with a float16 KV cache a single flipped cache entry moves the logits by
1.5 % of the largest one. A wrong kernel misses by far more than the noise.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

MIN_COSINE = 0.9999
MAX_ABS_ERROR_FRACTION = 0.01
NOISE_FACTOR = 2.0


@dataclass
class Agreement:
    cosine: float
    max_abs_error: float
    max_abs_logit: float
    error_bound: float  # what max_abs_error must not exceed
    cosine_bound: float  # what cosine must reach: MIN_COSINE, or lower where the rounding noise explains it
    top1_agreement: float  # fraction of positions with the same argmax, over all positions
    clear_margin_mismatches: int  # positions whose top-2 margin is clear yet argmax differs
    passed: bool

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        return (f"cosine {self.cosine:.7f} (>= {self.cosine_bound:.7g}), max abs error {self.max_abs_error:.3g} "
                f"(<= {self.error_bound:.3g}), top-1 agreement "
                f"{self.top1_agreement:.2%}, clear-margin argmax mismatches {self.clear_margin_mismatches}")


def error_bound(max_abs_logit: float, rounding_noise: float = 0.0) -> float:
    return max(MAX_ABS_ERROR_FRACTION * max_abs_logit, NOISE_FACTOR * rounding_noise)


def cosine_bound(reference: np.ndarray, rounding_noise: float) -> float:
    """MIN_COSINE, or the cosine left by an error of NOISE_FACTOR x ``rounding_noise`` in every logit of
    ``reference`` when that is lower: a model whose logits move that far for a one-ulp change of a quantized layer's
    input (a tiny random model, where one flipped int8 code moves everything) cannot promise 0.9999 between two
    correct summation orders. 1 - cos ~ |error|^2 / (2 |reference|^2) for a small error."""
    energy = float(reference @ reference)
    if rounding_noise <= 0 or energy <= 0:
        return MIN_COSINE
    return min(MIN_COSINE, 1 - 0.5 * (NOISE_FACTOR * rounding_noise) ** 2 * reference.size / energy)


def compare_logits(candidate, reference, rounding_noise: float = 0.0) -> Agreement:
    """Compare [..., V] logits against a reference with the BitNet agreement bound (``rounding_noise``: the
    reference's, from the bundle's manifest; 0 for an independent reference such as transformers')."""
    cand = np.asarray(candidate, dtype=np.float64)
    ref = np.asarray(reference, dtype=np.float64)
    if cand.shape != ref.shape:
        raise ValueError(f"logit shapes differ: {cand.shape} vs reference {ref.shape}")
    a, b = cand.ravel(), ref.ravel()
    denom = np.linalg.norm(a) * np.linalg.norm(b)
    cosine = float(a @ b / denom) if denom > 0 else float(np.array_equal(a, b))
    max_err = float(np.abs(a - b).max()) if a.size else 0.0
    max_logit = float(np.abs(b).max()) if b.size else 0.0
    ref_flat = ref.reshape(-1, ref.shape[-1])
    cand_flat = cand.reshape(-1, cand.shape[-1])
    same = ref_flat.argmax(-1) == cand_flat.argmax(-1)
    top2 = np.sort(ref_flat, axis=-1)[:, -2:] if ref.shape[-1] > 1 else np.zeros((len(ref_flat), 2))
    clear = (top2[:, 1] - top2[:, 0]) > 2 * max_err
    mismatches = int((clear & ~same).sum())
    bound = error_bound(max_logit, rounding_noise)
    least_cosine = cosine_bound(b, rounding_noise)
    passed = cosine >= least_cosine and max_err <= bound and mismatches == 0
    return Agreement(cosine, max_err, max_logit, bound, least_cosine, float(same.mean()), mismatches, bool(passed))


def per_position(candidate, reference) -> dict[str, list[float]]:
    """Max abs error and top-1 agreement at each position of [B, T, V] logits (over the batch): where in a
    sequence a device drifts from the host, for ``validate --report``."""
    cand = np.asarray(candidate, dtype=np.float64)
    ref = np.asarray(reference, dtype=np.float64)
    error = np.abs(cand - ref).max(axis=(0, 2))
    same = (cand.argmax(-1) == ref.argmax(-1)).mean(axis=0)
    return {"max_abs_error": error.tolist(), "top1_agreement": same.tolist()}
