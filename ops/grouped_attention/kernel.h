// edgebit::grouped_attention (SPEC.md in this folder): causal grouped-query attention of T new tokens over a
// runner-owned KV cache, read in place: the filled prefix [P, Hkv, D] and the new rows [T, Hkv, D] are two tensors
// and no concatenation is made.
//
// One task per (KV head, token): its G = H / Hkv query heads go through the visible slots together, so each key
// and value row is read once per token, and the scores of those G heads stay in a per-task buffer. Dot products and
// the weighted sums of values are vectorized for every target (AVX2 / AVX-512, NEON).
#pragma once

#include "common/kernel_common.h"

namespace edgebit_kernels::grouped_attention {

struct Problem {
  const float* q;                            // [H, T, D]
  const float* prefix_k;                     // [P, Hkv, D]
  const float* prefix_v;                     // [P, Hkv, D]
  const float* new_k;                        // [T, Hkv, D]
  const float* new_v;                        // [T, Hkv, D]
  const int64_t* positions;                  // [T]
  float* out;                                // [T, H * D]
  int64_t heads, kv_heads, tokens, prefix, dim;
};

// Eight floats in the compiler's generic vector type (GCC / Clang): AVX / AVX-512 registers on x86-64, two NEON
// registers on arm64. Plain loops do not vectorize a float dot product without -ffast-math (its sum would be
// reordered); this one says the order: 8 lanes, two accumulators, then a fixed tree.
typedef float Float8 __attribute__((vector_size(32)));

inline Float8 Load8(const float* p) {
  Float8 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

inline float Dot(const float* a, const float* b, int64_t n) {
  Float8 even = {}, odd = {};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    even += Load8(a + i) * Load8(b + i);
    odd += Load8(a + i + 8) * Load8(b + i + 8);
  }
  if (i + 8 <= n) {
    even += Load8(a + i) * Load8(b + i);
    i += 8;
  }
  const Float8 acc = even + odd;
  float total = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
  for (; i < n; ++i) total += a[i] * b[i];
  return total;
}

// out[0:n] += p * v[0:n]
inline void AddScaled(float* out, float p, const float* v, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] += p * v[i];
}

// Row of slot s for KV head g: the prefix's row s, or new row s - P.
inline const float* SlotRow(const float* prefix, const float* fresh, const Problem& p, int64_t s, int64_t g) {
  return s < p.prefix ? prefix + (s * p.kv_heads + g) * p.dim : fresh + ((s - p.prefix) * p.kv_heads + g) * p.dim;
}

template <class Parallel>
void Run(const Problem& p, Parallel&& parallel) {
  const int64_t group = p.heads / p.kv_heads, slots = p.prefix + p.tokens;
  const float scale = 1.0f / std::sqrt(static_cast<float>(p.dim));
  parallel(p.kv_heads * p.tokens, 1, [&](RowRange tasks) {
    std::vector<float> scores(static_cast<size_t>(group * slots));
    for (int64_t task = tasks.begin; task < tasks.end; ++task) {
      const int64_t g = task / p.tokens, t = task % p.tokens;
      const int64_t visible = std::min(std::max<int64_t>(p.positions[t] + 1, 1), slots);
      for (int64_t s = 0; s < visible; ++s) {
        const float* key = SlotRow(p.prefix_k, p.new_k, p, s, g);
        for (int64_t h = 0; h < group; ++h)
          scores[h * visible + s] = Dot(p.q + ((g * group + h) * p.tokens + t) * p.dim, key, p.dim) * scale;
      }
      for (int64_t h = 0; h < group; ++h) {
        float* row = scores.data() + h * visible;
        const float top = *std::max_element(row, row + visible);
        float sum = 0.0f;
        for (int64_t s = 0; s < visible; ++s) sum += (row[s] = std::exp(row[s] - top));
        for (int64_t s = 0; s < visible; ++s) row[s] /= sum;
        std::fill_n(p.out + (t * p.heads + g * group + h) * p.dim, p.dim, 0.0f);
      }
      for (int64_t s = 0; s < visible; ++s) {
        const float* value = SlotRow(p.prefix_v, p.new_v, p, s, g);
        for (int64_t h = 0; h < group; ++h)
          AddScaled(p.out + (t * p.heads + g * group + h) * p.dim, scores[h * visible + s], value, p.dim);
      }
    }
  });
}

}  // namespace edgebit_kernels::grouped_attention
