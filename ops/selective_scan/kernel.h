// edgebit::selective_scan / SelectiveScan (Mamba-2's recurrence, SPEC.md in this folder), once for every runtime:
//   x [Bt,T,H,P], dt [Bt,T,H], A [H], B [Bt,T,G,N], C [Bt,T,G,N], D [H], state [Bt,H,P,N]
//     -> y [Bt,T,H,P], final_state [Bt,H,P,N]
// per token t, head h (group g = h / (H/G)): S = S * exp(dt A) + (dt x) (outer) B_g;  y = S @ C_g + D x.
// The sequential recurrence serves prefill and decode alike; (batch, head) pairs are independent and split over
// the adapter's threads.
//
// One generic form for every ISA: the state update and the dot with C run in one pass over a state row, in 8
// independent lanes the compiler vectorizes (AVX2/AVX-512 with FMA, NEON) under the target's cflags.
#pragma once

#include "common/kernel_common.h"

namespace edgebit_kernels::selective_scan {

constexpr int kLanes = 8;

// s = s * decay + dx * b, then returns s . c (lanes summed in order, then the tail).
inline float UpdateRow(float* s, const float* b, const float* c, float decay, float dx, int64_t n) {
  float lanes[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int l = 0; l < kLanes; ++l) {
      s[i + l] = s[i + l] * decay + dx * b[i + l];
      lanes[l] += s[i + l] * c[i + l];
    }
  float total = 0.0f;
  for (int l = 0; l < kLanes; ++l) total += lanes[l];
  for (; i < n; ++i) {
    s[i] = s[i] * decay + dx * b[i];
    total += s[i] * c[i];
  }
  return total;
}

// Why these shapes do not fit the SPEC ("" when they do).
inline std::string ShapeError(const Dims& x, const Dims& dt, int64_t a_count, const Dims& b, const Dims& c,
                              int64_t d_count, const Dims& state) {
  if (x.size() != 4 || b.size() != 4 || state.size() != 4)
    return "x " + ShapeText(x) + ", B " + ShapeText(b) + " and state " + ShapeText(state) + " must be 4-D";
  const int64_t batch = x[0], length = x[1], heads = x[2], dim = x[3], groups = b[2], size = b[3];
  if (groups <= 0 || heads % groups != 0)
    return "heads (" + std::to_string(heads) + ") must be a multiple of groups (" + std::to_string(groups) + ")";
  if (state != Dims{batch, heads, dim, size})
    return "state " + ShapeText(state) + " must be [Bt, H, P, N] = " + ShapeText({batch, heads, dim, size});
  if (b != Dims{batch, length, groups, size} || c != b)
    return "B " + ShapeText(b) + " and C " + ShapeText(c) + " must be [Bt, T, G, N] with Bt, T from x " +
           ShapeText(x);
  if (dt != Dims{batch, length, heads}) return "dt " + ShapeText(dt) + " must be [Bt, T, H] = " +
                                               ShapeText({batch, length, heads});
  if (a_count != heads || d_count != heads)
    return "A and D must hold one value per head (" + std::to_string(heads) + "), hold " + std::to_string(a_count) +
           " and " + std::to_string(d_count);
  return "";
}

struct Problem {
  const float *x, *dt, *a, *b, *c, *d, *state;
  float *y, *final_state;  // final_state may be the same buffer as state
  int64_t batch, length, heads, dim, groups, size;
};

// Builds the problem from shapes ShapeError accepted.
inline Problem MakeProblem(const Dims& x, const Dims& b, const float* xs, const float* dt, const float* a,
                           const float* bs, const float* cs, const float* d, const float* state, float* y,
                           float* final_state) {
  return {xs, dt, a, bs, cs, d, state, y, final_state, x[0], x[1], x[2], x[3], b[2], b[3]};
}

// Heads [rows.begin, rows.end) of the flattened (batch, head) index, on final_state already holding the input state.
inline void ScanHeads(const Problem& p, RowRange rows) {
  const int64_t per_group = p.heads / p.groups;
  for (int64_t bh = rows.begin; bh < rows.end; ++bh) {
    const int64_t bi = bh / p.heads, h = bh % p.heads, g = h / per_group;
    float* s_head = p.final_state + bh * p.dim * p.size;
    for (int64_t t = 0; t < p.length; ++t) {
      const int64_t bt = bi * p.length + t;
      const float step = p.dt[bt * p.heads + h], decay = std::exp(step * p.a[h]);
      const float* bv = p.b + (bt * p.groups + g) * p.size;
      const float* cv = p.c + (bt * p.groups + g) * p.size;
      const float* xv = p.x + (bt * p.heads + h) * p.dim;
      float* yv = p.y + (bt * p.heads + h) * p.dim;
      for (int64_t i = 0; i < p.dim; ++i)
        yv[i] = UpdateRow(s_head + i * p.size, bv, cv, decay, step * xv[i], p.size) + p.d[h] * xv[i];
    }
  }
}

// The scan runs in place on final_state (memmove: a runtime may hand the input and output state the same buffer).
template <class Parallel>
void Run(const Problem& p, Parallel&& parallel) {
  std::memmove(p.final_state, p.state, sizeof(float) * static_cast<size_t>(p.batch * p.heads * p.dim * p.size));
  parallel(p.batch * p.heads, 1, [&](RowRange rows) { ScanHeads(p, rows); });
}

}  // namespace edgebit_kernels::selective_scan
