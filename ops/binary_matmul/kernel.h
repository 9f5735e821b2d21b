// edgebit::binary_linear / BinaryMatMul (FBI-Linear, SPEC.md in this folder), once for every runtime:
//   x float [..., K], w_signs uint8 [N, Kq] (bit j of byte b = column j * Kq + b, 1 -> +1, 0 -> -1),
//   alpha float [1, K], beta float [1, K]  ->  out float [..., N] = sign(W) @ (alpha * x) + (beta . x)
// The scaled activations alpha * x are formed once per token (8 planes of Kq values, zeros beyond K); a row's plane j
// is then a contiguous run of them, and a sign flips the float's sign bit.
//
// Every path keeps 16 partial sums per row, lane i summing columns b + i of each 16-byte block plane by plane, then
// adds the lanes in order: AVX2 (two 8-float registers) and NEON (four 4-float registers) give bit-identical results
// to the generic C++ loop, which the compiler vectorizes on other ISAs without reassociating.
#pragma once

#include "common/kernel_common.h"

namespace edgebit_kernels::binary_matmul {

constexpr int kBits = 8;
constexpr int kLanes = 16;

// ---- generic C++ ----
namespace generic {
inline float FlipUnless(float value, unsigned bit) {
  uint32_t word;
  std::memcpy(&word, &value, sizeof word);
  word ^= static_cast<uint32_t>(bit ^ 1u) << 31;  // bit 1 -> +value, bit 0 -> -value
  std::memcpy(&value, &word, sizeof value);
  return value;
}

// Adds 16-byte blocks from *b on into lanes (advancing *b), as the SIMD paths do.
inline void DotBlocks(const uint8_t* w, const float* xa, int64_t kq, int64_t* b, float* lanes) {
  for (; *b + kLanes <= kq; *b += kLanes)
    for (int j = 0; j < kBits; ++j) {
      const float* plane = xa + j * kq + *b;
      for (int i = 0; i < kLanes; ++i) lanes[i] += FlipUnless(plane[i], (w[*b + i] >> j) & 1u);
    }
}

inline float Tail(const uint8_t* w, const float* xa, int64_t kq, int64_t b, const float* lanes) {
  float total = 0.0f;
  for (int i = 0; i < kLanes; ++i) total += lanes[i];
  for (; b < kq; ++b)
    for (int j = 0; j < kBits; ++j) total += FlipUnless(xa[j * kq + b], (w[b] >> j) & 1u);
  return total;
}
}  // namespace generic

// ---- x86: AVX2 ----
#if defined(EDGEBIT_AVX2)
namespace avx2 {
inline void DotBlocks(const uint8_t* w, const float* xa, int64_t kq, int64_t* b, float* lanes) {
  __m256 acc0 = _mm256_loadu_ps(lanes), acc1 = _mm256_loadu_ps(lanes + 8);
  const __m256i sign = _mm256_set1_epi32(INT32_MIN);
  for (; *b + kLanes <= kq; *b += kLanes) {
    const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w + *b));
    const __m128i inverted = _mm_xor_si128(bytes, _mm_set1_epi8(-1));  // a 0 bit flips the sign
    const __m256i lo = _mm256_cvtepu8_epi32(inverted), hi = _mm256_cvtepu8_epi32(_mm_srli_si128(inverted, 8));
    for (int j = 0; j < kBits; ++j) {
      const float* plane = xa + j * kq + *b;
      const __m256i flip0 = _mm256_and_si256(_mm256_slli_epi32(lo, 31 - j), sign);
      const __m256i flip1 = _mm256_and_si256(_mm256_slli_epi32(hi, 31 - j), sign);
      acc0 = _mm256_add_ps(acc0, _mm256_xor_ps(_mm256_loadu_ps(plane), _mm256_castsi256_ps(flip0)));
      acc1 = _mm256_add_ps(acc1, _mm256_xor_ps(_mm256_loadu_ps(plane + 8), _mm256_castsi256_ps(flip1)));
    }
  }
  _mm256_storeu_ps(lanes, acc0);
  _mm256_storeu_ps(lanes + 8, acc1);
}
}  // namespace avx2
#endif

// ---- arm: NEON ----
#if defined(EDGEBIT_NEON)
namespace neon {
inline void DotBlocks(const uint8_t* w, const float* xa, int64_t kq, int64_t* b, float* lanes) {
  float32x4_t acc[4];
  for (int r = 0; r < 4; ++r) acc[r] = vld1q_f32(lanes + 4 * r);
  const uint32x4_t sign = vdupq_n_u32(0x80000000u);
  for (; *b + kLanes <= kq; *b += kLanes) {
    const uint8x16_t inverted = vmvnq_u8(vld1q_u8(w + *b));  // a 0 bit flips the sign
    const uint16x8_t lo = vmovl_u8(vget_low_u8(inverted)), hi = vmovl_high_u8(inverted);
    const uint32x4_t words[4] = {vmovl_u16(vget_low_u16(lo)), vmovl_high_u16(lo), vmovl_u16(vget_low_u16(hi)),
                                 vmovl_high_u16(hi)};
    for (int j = 0; j < kBits; ++j) {
      const float* plane = xa + j * kq + *b;
      const int32x4_t shift = vdupq_n_s32(31 - j);
      for (int r = 0; r < 4; ++r) {
        const uint32x4_t flip = vandq_u32(vshlq_u32(words[r], shift), sign);
        acc[r] = vaddq_f32(acc[r], vreinterpretq_f32_u32(veorq_u32(vreinterpretq_u32_f32(vld1q_f32(plane + 4 * r)),
                                                                   flip)));
      }
    }
  }
  for (int r = 0; r < 4; ++r) vst1q_f32(lanes + 4 * r, acc[r]);
}
}  // namespace neon
#endif

// sum_k sign[k] * xa[k] for one packed row; xa holds 8 planes of kq values.
inline float DotSigns(const uint8_t* w, const float* xa, int64_t kq) {
  float lanes[kLanes] = {};
  int64_t b = 0;
#if defined(EDGEBIT_AVX2)
  avx2::DotBlocks(w, xa, kq, &b, lanes);
#elif defined(EDGEBIT_NEON)
  neon::DotBlocks(w, xa, kq, &b, lanes);
#else
  generic::DotBlocks(w, xa, kq, &b, lanes);
#endif
  return generic::Tail(w, xa, kq, b, lanes);
}

// ---- the operator ----

// Why these shapes do not fit the SPEC ("" when they do): x [..., K] with K = in_features, w_signs [N, Kq] with
// 8 * Kq >= K, alpha and beta K values each.
inline std::string ShapeError(const Dims& x, const Dims& w, int64_t alpha_count, int64_t beta_count,
                              int64_t in_features) {
  if (in_features <= 0) return "in_features must be positive, got " + std::to_string(in_features);
  if (x.empty() || x.back() != in_features)
    return "x " + ShapeText(x) + " must end in in_features = " + std::to_string(in_features);
  if (w.size() != 2 || w[1] * kBits < in_features || w[0] < 0)
    return "w_signs " + ShapeText(w) + " must be [N, Kq] with 8 * Kq >= in_features = " + std::to_string(in_features);
  if (alpha_count != in_features || beta_count != in_features)
    return "alpha and beta must be [1, in_features = " + std::to_string(in_features) + "], hold " +
           std::to_string(alpha_count) + " and " + std::to_string(beta_count) + " values";
  return "";
}

struct Problem {
  const float* x;                // [tokens, k]
  const uint8_t* w;              // [n, kq]
  const float *alpha, *beta;     // [k]
  float* out;                    // [tokens, n]
  int64_t tokens, k, n, kq;
};

// Builds the problem from shapes ShapeError accepted.
inline Problem MakeProblem(const Dims& x, const Dims& w, const float* xs, const uint8_t* ws, const float* alpha,
                           const float* beta, float* out) {
  return {xs, ws, alpha, beta, out, Product(x) / x.back(), x.back(), w[0], w[1]};
}

// Scaled activations and shifts once per token, then output rows split over `parallel` (kernel_common.h).
template <class Parallel>
void Run(const Problem& p, Parallel&& parallel) {
  const int64_t padded = kBits * p.kq;
  std::vector<float> scaled(static_cast<size_t>(p.tokens * padded), 0.0f);
  std::vector<float> shift(static_cast<size_t>(p.tokens), 0.0f);
  for (int64_t t = 0; t < p.tokens; ++t) {
    const float* row = p.x + t * p.k;
    float* xa = scaled.data() + t * padded;
    float sum = 0.0f;
    for (int64_t i = 0; i < p.k; ++i) {
      xa[i] = row[i] * p.alpha[i];
      sum += row[i] * p.beta[i];
    }
    shift[t] = sum;
  }
  const int64_t grain = std::max<int64_t>(1, 8192 / std::max<int64_t>(p.kq, 1));  // ~8 KiB of signs a task
  parallel(p.n, grain, [&](RowRange rows) {
    for (int64_t r = rows.begin; r < rows.end; ++r)
      for (int64_t t = 0; t < p.tokens; ++t)
        p.out[t * p.n + r] = DotSigns(p.w + r * p.kq, scaled.data() + t * padded, p.kq) + shift[t];
  });
}

}  // namespace edgebit_kernels::binary_matmul
