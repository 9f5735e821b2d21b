// edgebit::q4_linear / Q4MatMul (SPEC.md in this folder), once for every runtime:
//   x float [..., K], w_codes uint8 [N, Kp / 2] (two codes w + 8 a byte), w_scale float [N, Kp / B] -> float [..., N]
// Per token: int8 quantization per block of B columns (the int8 head's, kernel_common.h), then per row an exact
// int32 sum per block, times the block's weight scale and activation scale, summed in float.
//
// A byte of a block holds element j (low nibble) and j + B/2 (high nibble), so one mask gives the first half of the
// block and one shift the second, each in order against contiguous activations. The paths: AVX-512 VNNI (vpdpbusd
// on the unsigned codes, the 8 * sum(q) it adds taken off once per block and row; four rows at a time share each
// activation load), AVX2 (pmaddubsw + pmaddwd, the same correction), NEON (codes - 8 as int8, sdot or smull).
#pragma once

#include "common/kernel_common.h"

namespace edgebit_kernels::q4_matmul {

constexpr int kZeroPoint = 8;

// ---- generic C++: the exact sum of q * w over one block (signed weights) ----
namespace generic {
inline int32_t BlockDot(const uint8_t* w, const int8_t* q, int64_t block) {
  const int64_t half = block / 2;
  int32_t total = 0;
  for (int64_t j = 0; j < half; ++j)
    total += q[j] * ((w[j] & 15) - kZeroPoint) + q[j + half] * ((w[j] >> 4) - kZeroPoint);
  return total;
}
}  // namespace generic

#if defined(EDGEBIT_AVX2)
namespace avx2 {
// sum q * code over one block (block / 2 a multiple of 16); the caller takes off 8 * sum(q).
inline int32_t BlockCodeDot(const uint8_t* w, const int8_t* q, int64_t block) {
  const int64_t half = block / 2;
  const __m128i low = _mm_set1_epi8(0x0f);
  const __m256i ones = _mm256_set1_epi16(1);
  __m256i acc = _mm256_setzero_si256();
  for (int64_t j = 0; j < half; j += 16) {
    const __m128i packed = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w + j));
    const __m256i codes = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(packed, 4), low), _mm_and_si128(packed, low));
    const __m256i acts = _mm256_set_m128i(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q + half + j)),
                                          _mm_loadu_si128(reinterpret_cast<const __m128i*>(q + j)));
    acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(codes, acts), ones));  // |pair| <= 3810
  }
  return HorizontalSumAvx2(acc);
}
}  // namespace avx2
#endif

#if defined(EDGEBIT_NEON)
namespace neon {
inline int32_t BlockDot(const uint8_t* w, const int8_t* q, int64_t block) {
  const int64_t half = block / 2;
  const uint8x16_t low = vdupq_n_u8(0x0f);
  const int8x16_t zero_point = vdupq_n_s8(kZeroPoint);
  int32x4_t acc = vdupq_n_s32(0);
  for (int64_t j = 0; j < half; j += 16) {
    const uint8x16_t packed = vld1q_u8(w + j);
    const int8x16_t first = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(packed, low)), zero_point);
    const int8x16_t second = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(packed, 4)), zero_point);
    const int8x16_t q0 = vld1q_s8(q + j), q1 = vld1q_s8(q + half + j);
#if defined(EDGEBIT_DOTPROD)
    acc = vdotq_s32(vdotq_s32(acc, first, q0), second, q1);
#else
    acc = vpadalq_s16(acc, vmull_s8(vget_low_s8(first), vget_low_s8(q0)));
    acc = vpadalq_s16(acc, vmull_high_s8(first, q0));
    acc = vpadalq_s16(acc, vmull_s8(vget_low_s8(second), vget_low_s8(q1)));
    acc = vpadalq_s16(acc, vmull_high_s8(second, q1));
#endif
  }
  return vaddvq_s32(acc);
}
}  // namespace neon
#endif

// One row against one token: sum_b scale[b] * d[b] * (exact block sum).
inline float RowDot(const uint8_t* w, const float* scale, const int8_t* q, const float* d, const int32_t* sums,
                    int64_t blocks, int64_t block) {
  (void)sums;
  float total = 0.0f;
  for (int64_t b = 0; b < blocks; ++b) {
    const uint8_t* wb = w + b * block / 2;
    const int8_t* qb = q + b * block;
    int32_t dot;
#if defined(EDGEBIT_AVX2)
    dot = block % 32 == 0 ? avx2::BlockCodeDot(wb, qb, block) - kZeroPoint * sums[b] : generic::BlockDot(wb, qb, block);
#elif defined(EDGEBIT_NEON)
    dot = block % 32 == 0 ? neon::BlockDot(wb, qb, block) : generic::BlockDot(wb, qb, block);
#else
    dot = generic::BlockDot(wb, qb, block);
#endif
    total += static_cast<float>(dot) * (scale[b] * d[b]);
  }
  return total;
}

#if defined(EDGEBIT_AVX512VNNI) && defined(__AVX512VL__)
namespace avx512vnni {
constexpr int64_t kRows = 4;
// Rows [0, 4) of w (row stride `stride` bytes, scales `blocks` apart) against one token, blocks a multiple of 64:
// out[r] = sum_b scale[r, b] * d[b] * (sum q * code - 8 * sums[b]). The rows are read in address order ahead of
// use (four cursors `stride` apart are not a pattern the hardware prefetchers follow, as in the ternary GEMV).
inline void RowsDot(const uint8_t* w, int64_t stride, const float* scale, const int8_t* q, const float* d,
                    const int32_t* sums, int64_t blocks, int64_t block, float* out) {
  const __m256i low = _mm256_set1_epi8(0x0f);
  const int64_t half = block / 2;
  __m256 acc[kRows];
  float correction[kRows] = {0.0f, 0.0f, 0.0f, 0.0f};
  for (auto& a : acc) a = _mm256_setzero_ps();
  const char* ahead = reinterpret_cast<const char*>(w + std::max<int64_t>(kRows * stride, 8192));
  for (int64_t b = 0; b < blocks; ++b) {
    __m256i dots[kRows];
    for (auto& dot : dots) dot = _mm256_setzero_si256();
    for (int64_t j = 0; j < half; j += 32, ahead += 32 * kRows) {
      _mm_prefetch(ahead, _MM_HINT_T0);
      _mm_prefetch(ahead + 64, _MM_HINT_T0);
      const __m256i first = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + b * block + j));
      const __m256i second = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + b * block + half + j));
      for (int64_t r = 0; r < kRows; ++r) {
        const __m256i packed = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + r * stride + b * half + j));
        dots[r] = _mm256_dpbusd_epi32(dots[r], _mm256_and_si256(packed, low), first);
        dots[r] = _mm256_dpbusd_epi32(dots[r], _mm256_and_si256(_mm256_srli_epi16(packed, 4), low), second);
      }
    }
    for (int64_t r = 0; r < kRows; ++r) {
      const float sd = scale[r * blocks + b] * d[b];
      acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dots[r]), _mm256_set1_ps(sd), acc[r]);
      correction[r] += sd * static_cast<float>(kZeroPoint * sums[b]);
    }
  }
  for (int64_t r = 0; r < kRows; ++r) {
    __m128 sum = _mm_add_ps(_mm256_castps256_ps128(acc[r]), _mm256_extractf128_ps(acc[r], 1));
    sum = _mm_hadd_ps(sum, sum);
    sum = _mm_hadd_ps(sum, sum);
    out[r] = _mm_cvtss_f32(sum) - correction[r];
  }
}
}  // namespace avx512vnni
#endif

// ---- the operator ----

// Why these shapes do not fit the SPEC ("" when they do).
inline std::string ShapeError(const Dims& x, const Dims& w, const Dims& scale, int64_t in_features,
                              int64_t block_size) {
  if (in_features <= 0) return "in_features must be positive, got " + std::to_string(in_features);
  if (block_size != 32 && block_size != 64 && block_size != 128)
    return "block_size must be 32, 64 or 128, got " + std::to_string(block_size);
  if (x.empty() || x.back() != in_features)
    return "x " + ShapeText(x) + " must end in in_features = " + std::to_string(in_features);
  const int64_t blocks = (in_features + block_size - 1) / block_size;
  if (w.size() != 2 || w[1] != blocks * block_size / 2 || w[0] < 0)
    return "w_codes " + ShapeText(w) + " must be [N, " + std::to_string(blocks * block_size / 2) +
           "] (two 4-bit codes a byte, in_features rounded up to block_size)";
  if (scale.size() != 2 || scale[0] != w[0] || scale[1] != blocks)
    return "w_scale " + ShapeText(scale) + " must be [" + std::to_string(w[0]) + ", " + std::to_string(blocks) +
           "] (one scale per block of a row)";
  return "";
}

struct Problem {
  const float* x;        // [tokens, k]
  const uint8_t* w;      // [n, padded / 2]
  const float* w_scale;  // [n, padded / block]
  float* out;            // [tokens, n]
  int64_t tokens, k, n, padded, block;
};

inline Problem MakeProblem(const Dims& x, const Dims& w, const float* xs, const uint8_t* ws, const float* scales,
                           int64_t block, float* out) {
  return {xs, ws, scales, out, Product(x) / x.back(), x.back(), w[0], w[1] * 2, block};
}

template <class Parallel>
void Run(const Problem& p, Parallel&& parallel) {
  const int64_t blocks = p.padded / p.block, stride = p.padded / 2;
  std::vector<int8_t> q(static_cast<size_t>(p.tokens * p.padded));
  std::vector<float> d(static_cast<size_t>(p.tokens * blocks));
  std::vector<int32_t> sums(static_cast<size_t>(p.tokens * blocks));
  for (int64_t t = 0; t < p.tokens; ++t)
    QuantizeInt8Blocks(p.x + t * p.k, p.k, p.padded, p.block, q.data() + t * p.padded, d.data() + t * blocks,
                       sums.data() + t * blocks);
  const int64_t grain = std::max<int64_t>(4, 65536 / std::max<int64_t>(stride, 1)) / 4 * 4;  // ~64 KiB a task
  parallel(p.n, grain, [&](RowRange rows) {
    int64_t row = rows.begin;
#if defined(EDGEBIT_AVX512VNNI) && defined(__AVX512VL__)
    if (p.block % 64 == 0) {
      float out[avx512vnni::kRows];
      for (; row + avx512vnni::kRows <= rows.end; row += avx512vnni::kRows)
        for (int64_t t = 0; t < p.tokens; ++t) {
          avx512vnni::RowsDot(p.w + row * stride, stride, p.w_scale + row * blocks, q.data() + t * p.padded,
                              d.data() + t * blocks, sums.data() + t * blocks, blocks, p.block, out);
          for (int64_t r = 0; r < avx512vnni::kRows; ++r) p.out[t * p.n + row + r] = out[r];
        }
    }
#endif
    for (; row < rows.end; ++row)
      for (int64_t t = 0; t < p.tokens; ++t)
        p.out[t * p.n + row] = RowDot(p.w + row * stride, p.w_scale + row * blocks, q.data() + t * p.padded,
                                      d.data() + t * blocks, sums.data() + t * blocks, blocks, p.block);
  });
}

}  // namespace edgebit_kernels::q4_matmul
