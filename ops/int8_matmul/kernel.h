// edgebit::int8_linear / Int8MatMul (SPEC.md in this folder), once for every runtime:
//   x float [..., K], w_codes uint8 [N, Kp] (code = w + 128, Kp = blocks * B), w_scale float [N] -> out float [..., N]
// Per token: int8 quantization per block of B columns (scale absmax / 127, round half to even), then per row an
// exact int32 sum per block, scaled by the block's activation scale into a float sum, times the row's scale.
//
// The inner loops take the signed weights (code ^ 0x80) times the signed activations: AVX-512 VNNI vpdpbusd on the
// unsigned codes with the 128 * sum(q) it adds taken off once per token, AVX2 pmaddwd on values widened to int16,
// NEON sdot (ARMv8.2) or smull + sadalp. Block sums are exact on every path; the float sums may round differently.
#pragma once

#include "common/kernel_common.h"

namespace edgebit_kernels::int8_matmul {

constexpr int kZeroPoint = 128;

// ---- generic C++ (the fallback, and every path's tail): sum of q * (code - 128) over [begin, end) ----
namespace generic {
inline int32_t Dot(const uint8_t* w, const int8_t* q, int64_t begin, int64_t end) {
  int32_t total = 0;
  for (int64_t i = begin; i < end; ++i) total += q[i] * (static_cast<int32_t>(w[i]) - kZeroPoint);
  return total;
}
}  // namespace generic

#if defined(EDGEBIT_AVX512VNNI)
namespace avx512vnni {
// sum q * code over whole 64-byte steps of [0, block); *i ends where it stopped. The caller removes 128 * sum(q).
inline __m512i DotCodes(const uint8_t* w, const int8_t* q, int64_t block, int64_t* i) {
  __m512i acc = _mm512_setzero_si512();
  for (; *i + 64 <= block; *i += 64)
    acc = _mm512_dpbusd_epi32(acc, _mm512_loadu_si512(w + *i), _mm512_loadu_si512(q + *i));
  return acc;
}

// Prefill: kRows rows x kTokens tokens at a time (8 int32 + 8 float accumulators, 2 rows and 4 tokens of operands in
// 32 zmm registers), so each load of a row's codes serves 4 tokens and each load of a token's codes 2 rows; the row
// at a time loop loads both for every product. out[r * kTokens + t] is RowDot's result for row r and token t.
constexpr int64_t kRows = 2, kTokens = 4;
inline void BlockDot(const uint8_t* w, int64_t padded, const int8_t* q, const float* d, int64_t blocks,
                     int64_t block, const float* q_sum_scaled, float* out) {
  __m512 totals[kRows][kTokens];
  for (auto& row : totals)
    for (auto& total : row) total = _mm512_setzero_ps();
  for (int64_t b = 0; b < blocks; ++b) {
    __m512i dots[kRows][kTokens];
    for (auto& row : dots)
      for (auto& dot : row) dot = _mm512_setzero_si512();
    for (int64_t i = b * block; i < (b + 1) * block; i += 64) {
      __m512i codes[kRows], acts[kTokens];
      for (int64_t r = 0; r < kRows; ++r) codes[r] = _mm512_loadu_si512(w + r * padded + i);
      for (int64_t t = 0; t < kTokens; ++t) acts[t] = _mm512_loadu_si512(q + t * padded + i);
      for (int64_t r = 0; r < kRows; ++r)
        for (int64_t t = 0; t < kTokens; ++t) dots[r][t] = _mm512_dpbusd_epi32(dots[r][t], codes[r], acts[t]);
    }
    for (int64_t t = 0; t < kTokens; ++t) {
      const __m512 scale = _mm512_set1_ps(d[t * blocks + b]);
      for (int64_t r = 0; r < kRows; ++r)
        totals[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dots[r][t]), scale, totals[r][t]);
    }
  }
  for (int64_t r = 0; r < kRows; ++r)
    for (int64_t t = 0; t < kTokens; ++t) out[r * kTokens + t] = _mm512_reduce_add_ps(totals[r][t]) - q_sum_scaled[t];
}
}  // namespace avx512vnni
#endif

#if defined(EDGEBIT_AVX2)
namespace avx2 {
inline int32_t Dot(const uint8_t* w, const int8_t* q, int64_t block, int64_t* i) {
  const __m128i flip = _mm_set1_epi8(static_cast<char>(0x80));
  __m256i acc = _mm256_setzero_si256();
  for (; *i + 16 <= block; *i += 16) {
    const __m128i weights = _mm_xor_si128(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + *i)), flip);
    const __m128i acts = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q + *i));
    acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_cvtepi8_epi16(weights), _mm256_cvtepi8_epi16(acts)));
  }
  return HorizontalSumAvx2(acc);
}
}  // namespace avx2
#endif

#if defined(EDGEBIT_NEON)
namespace neon {
inline int32_t Dot(const uint8_t* w, const int8_t* q, int64_t block, int64_t* i) {
  const uint8x16_t flip = vdupq_n_u8(0x80);
  int32x4_t acc = vdupq_n_s32(0);
  for (; *i + 16 <= block; *i += 16) {
    const int8x16_t weights = vreinterpretq_s8_u8(veorq_u8(vld1q_u8(w + *i), flip));
    const int8x16_t acts = vld1q_s8(q + *i);
#if defined(EDGEBIT_DOTPROD)
    acc = vdotq_s32(acc, weights, acts);
#else
    acc = vpadalq_s16(acc, vmull_s8(vget_low_s8(weights), vget_low_s8(acts)));
    acc = vpadalq_s16(acc, vmull_high_s8(weights, acts));
#endif
  }
  return vaddvq_s32(acc);
}
}  // namespace neon
#endif

// One row against one token's quantized blocks: sum_b d[b] * sum q * w, plus the VNNI correction.
inline float RowDot(const uint8_t* w, const int8_t* q, const float* d, float q_sum_scaled, int64_t blocks,
                    int64_t block) {
#if defined(EDGEBIT_AVX512VNNI)
  if (block % 64 == 0) {
    __m512 acc = _mm512_setzero_ps();
    for (int64_t b = 0; b < blocks; ++b) {
      int64_t i = 0;
      const __m512i dots = avx512vnni::DotCodes(w + b * block, q + b * block, block, &i);
      acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dots), _mm512_set1_ps(d[b]), acc);
    }
    return _mm512_reduce_add_ps(acc) - q_sum_scaled;
  }
#endif
  (void)q_sum_scaled;
  float total = 0.0f;
  for (int64_t b = 0; b < blocks; ++b) {
    const uint8_t* wb = w + b * block;
    const int8_t* qb = q + b * block;
    int64_t i = 0;
    int32_t dot = 0;
#if defined(EDGEBIT_AVX2)
    dot += avx2::Dot(wb, qb, block, &i);
#elif defined(EDGEBIT_NEON)
    dot += neon::Dot(wb, qb, block, &i);
#endif
    dot += generic::Dot(wb, qb, i, block);
    total += static_cast<float>(dot) * d[b];
  }
  return total;
}

// ---- the operator ----

// Why these shapes do not fit the SPEC ("" when they do).
inline std::string ShapeError(const Dims& x, const Dims& w, int64_t scale_count, int64_t in_features,
                              int64_t block_size) {
  if (in_features <= 0) return "in_features must be positive, got " + std::to_string(in_features);
  if (block_size < 16 || block_size > 128 || (block_size & (block_size - 1)))
    return "block_size must be a power of two in [16, 128], got " + std::to_string(block_size);
  if (x.empty() || x.back() != in_features)
    return "x " + ShapeText(x) + " must end in in_features = " + std::to_string(in_features);
  const int64_t padded = (in_features + block_size - 1) / block_size * block_size;
  if (w.size() != 2 || w[1] != padded || w[0] < 0)
    return "w_codes " + ShapeText(w) + " must be [N, " + std::to_string(padded) + "] (in_features rounded up to " +
           "block_size)";
  if (scale_count != w[0]) return "w_scale must hold one value per row (" + std::to_string(w[0]) + "), has " +
                                  std::to_string(scale_count);
  return "";
}

struct Problem {
  const float* x;        // [tokens, k]
  const uint8_t* w;      // [n, padded]
  const float* w_scale;  // [n]
  float* out;            // [tokens, n]
  int64_t tokens, k, n, padded, block;
};

inline Problem MakeProblem(const Dims& x, const Dims& w, const float* xs, const uint8_t* ws, const float* scales,
                           int64_t block, float* out) {
  return {xs, ws, scales, out, Product(x) / x.back(), x.back(), w[0], w[1], block};
}

// SPEC steps 1-2 for one token: q [padded] and d [blocks]; returns 128 * sum_b d[b] * sum(q in b).
inline float QuantizeBlocks(const float* x, int64_t k, int64_t padded, int64_t block, int8_t* q, float* d) {
  std::vector<int32_t> sums(static_cast<size_t>(padded / block));
  QuantizeInt8Blocks(x, k, padded, block, q, d, sums.data());
  float correction = 0.0f;
  for (size_t b = 0; b < sums.size(); ++b) correction += static_cast<float>(sums[b] * kZeroPoint) * d[b];
  return correction;
}

template <class Parallel>
void Run(const Problem& p, Parallel&& parallel) {
  const int64_t blocks = p.padded / p.block;
  std::vector<int8_t> q(static_cast<size_t>(p.tokens * p.padded));
  std::vector<float> d(static_cast<size_t>(p.tokens * blocks)), correction(static_cast<size_t>(p.tokens));
  for (int64_t t = 0; t < p.tokens; ++t)
    correction[t] = QuantizeBlocks(p.x + t * p.k, p.k, p.padded, p.block, q.data() + t * p.padded,
                                   d.data() + t * blocks);
  const int64_t grain = std::max<int64_t>(1, 65536 / std::max<int64_t>(p.padded, 1));  // ~64 KiB of weights a task
  parallel(p.n, grain, [&](RowRange rows) {
    int64_t row = rows.begin;
#if defined(EDGEBIT_AVX512VNNI)
    namespace vnni = avx512vnni;
    for (; p.block % 64 == 0 && p.tokens >= vnni::kTokens && row + vnni::kRows <= rows.end; row += vnni::kRows) {
      int64_t t = 0;
      for (; t + vnni::kTokens <= p.tokens; t += vnni::kTokens) {
        float out[vnni::kRows * vnni::kTokens];
        vnni::BlockDot(p.w + row * p.padded, p.padded, q.data() + t * p.padded, d.data() + t * blocks, blocks,
                       p.block, correction.data() + t, out);
        for (int64_t r = 0; r < vnni::kRows; ++r)
          for (int64_t u = 0; u < vnni::kTokens; ++u)
            p.out[(t + u) * p.n + row + r] = out[r * vnni::kTokens + u] * p.w_scale[row + r];
      }
      for (; t < p.tokens; ++t)
        for (int64_t r = 0; r < vnni::kRows; ++r)
          p.out[t * p.n + row + r] = RowDot(p.w + (row + r) * p.padded, q.data() + t * p.padded,
                                            d.data() + t * blocks, correction[t], blocks, p.block) * p.w_scale[row + r];
    }
#endif
    for (; row < rows.end; ++row) {
      const uint8_t* w = p.w + row * p.padded;
      for (int64_t t = 0; t < p.tokens; ++t)
        p.out[t * p.n + row] = RowDot(w, q.data() + t * p.padded, d.data() + t * blocks, correction[t], blocks,
                                      p.block) * p.w_scale[row];
    }
  });
}

}  // namespace edgebit_kernels::int8_matmul
