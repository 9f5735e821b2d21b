// edgebit::ternary_linear / TernaryMatMul (SPEC.md in this folder), once for every runtime:
//   x float [..., K], w_packed uint8 [N, Kq] (planar 2-bit codes: byte b of a row holds k = j * Kq + b in bits 2j),
//   w_scale float [1]  ->  out float [..., N]
// Per token: int8 absmax quantization (round half to even), an exact integer product with the codes, then
// acc / s * w_scale in float32 -- the same operations, in the same order, as the reference.
//
// The product uses sum_k q[k] * (c[k] - 1) = sum_k q[k] * c[k] - sum_k q[k] with codes c in {0, 1, 2}, so the inner
// loop multiplies unsigned codes by signed activations (AVX-512 VNNI vpdpbusd, AVX2 maddubs, NEON sdot / smull) with
// no sign fix-up. Integer sums: every ISA path gives exactly the same result.
#pragma once

#include "common/kernel_common.h"

namespace edgebit_kernels::ternary_matmul {

// ---- generic C++ (the fallback, and every path's tail from byte `b` on; -O3 vectorizes it on other ISAs) ----
namespace generic {
inline int32_t DotCodes(const uint8_t* w, const int8_t* q, int64_t kq, int64_t b) {
  int32_t total = 0;
  for (; b < kq; ++b) {
    const uint8_t p = w[b];
    total += q[b] * (p & 3) + q[kq + b] * ((p >> 2) & 3) + q[2 * kq + b] * ((p >> 4) & 3) + q[3 * kq + b] * (p >> 6);
  }
  return total;
}
}  // namespace generic

// ---- x86: AVX-512 VNNI (64 bytes a step), then AVX2 (32 bytes a step); each advances *b past what it summed ----
#if defined(EDGEBIT_AVX512VNNI)
namespace avx512vnni {
inline int32_t DotCodes(const uint8_t* w, const int8_t* q, int64_t kq, int64_t* b) {
  const __m512i mask = _mm512_set1_epi8(3);
  __m512i acc = _mm512_setzero_si512();
  for (; *b + 64 <= kq; *b += 64) {
    const __m512i p = _mm512_loadu_si512(w + *b);
    for (int j = 0; j < 4; ++j) {
      const __m512i codes = _mm512_and_si512(_mm512_srli_epi16(p, 2 * j), mask);
      acc = _mm512_dpbusd_epi32(acc, codes, _mm512_loadu_si512(q + j * kq + *b));
    }
  }
  return _mm512_reduce_add_epi32(acc);
}
}  // namespace avx512vnni
#endif

#if defined(EDGEBIT_AVX2)
namespace avx2 {
inline int32_t DotCodes(const uint8_t* w, const int8_t* q, int64_t kq, int64_t* b) {
  const __m256i mask = _mm256_set1_epi8(3), ones = _mm256_set1_epi16(1);
  __m256i acc = _mm256_setzero_si256();
  for (; *b + 32 <= kq; *b += 32) {
    const __m256i p = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + *b));
    auto plane = [&](int j) {
      const __m256i codes = _mm256_and_si256(_mm256_srli_epi16(p, 2 * j), mask);
      return _mm256_maddubs_epi16(codes, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + j * kq + *b)));
    };
    const __m256i sum = _mm256_add_epi16(_mm256_add_epi16(plane(0), plane(1)), _mm256_add_epi16(plane(2), plane(3)));
    acc = _mm256_add_epi32(acc, _mm256_madd_epi16(sum, ones));  // |lane| <= 4 * 2 * 2 * 128 before madd: no overflow
  }
  return HorizontalSumAvx2(acc);
}
}  // namespace avx2
#endif

// ---- arm: NEON (smull / smlal) or ARMv8.2 sdot, 16 bytes a step ----
#if defined(EDGEBIT_NEON)
namespace neon {
inline int32_t DotCodes(const uint8_t* w, const int8_t* q, int64_t kq, int64_t* b) {
  const uint8x16_t mask = vdupq_n_u8(3);
  int32x4_t acc = vdupq_n_s32(0);
  for (; *b + 16 <= kq; *b += 16) {
    const uint8x16_t p = vld1q_u8(w + *b);
    const int8x16_t c0 = vreinterpretq_s8_u8(vandq_u8(p, mask));
    const int8x16_t c1 = vreinterpretq_s8_u8(vandq_u8(vshrq_n_u8(p, 2), mask));
    const int8x16_t c2 = vreinterpretq_s8_u8(vandq_u8(vshrq_n_u8(p, 4), mask));
    const int8x16_t c3 = vreinterpretq_s8_u8(vshrq_n_u8(p, 6));
    const int8x16_t q0 = vld1q_s8(q + *b), q1 = vld1q_s8(q + kq + *b), q2 = vld1q_s8(q + 2 * kq + *b),
                    q3 = vld1q_s8(q + 3 * kq + *b);
#if defined(EDGEBIT_DOTPROD)
    acc = vdotq_s32(vdotq_s32(acc, c0, q0), c1, q1);
    acc = vdotq_s32(vdotq_s32(acc, c2, q2), c3, q3);
#else
    int16x8_t lo = vmull_s8(vget_low_s8(c0), vget_low_s8(q0));
    lo = vmlal_s8(lo, vget_low_s8(c1), vget_low_s8(q1));
    lo = vmlal_s8(lo, vget_low_s8(c2), vget_low_s8(q2));
    lo = vmlal_s8(lo, vget_low_s8(c3), vget_low_s8(q3));
    int16x8_t hi = vmull_high_s8(c0, q0);
    hi = vmlal_high_s8(hi, c1, q1);
    hi = vmlal_high_s8(hi, c2, q2);
    hi = vmlal_high_s8(hi, c3, q3);
    acc = vpadalq_s16(vpadalq_s16(acc, lo), hi);
#endif
  }
  return vaddvq_s32(acc);
}
}  // namespace neon
#endif

// sum_b sum_j q[j * kq + b] * ((w[b] >> 2j) & 3) over one packed row: the widest path first, the rest narrower.
inline int32_t DotCodes(const uint8_t* w, const int8_t* q, int64_t kq) {
  int64_t b = 0;
  int32_t total = 0;
#if defined(EDGEBIT_AVX512VNNI)
  total += avx512vnni::DotCodes(w, q, kq, &b);
#endif
#if defined(EDGEBIT_AVX2)
  total += avx2::DotCodes(w, q, kq, &b);
#elif defined(EDGEBIT_NEON)
  total += neon::DotCodes(w, q, kq, &b);
#endif
  return total + generic::DotCodes(w, q, kq, b);
}

// ---- decode (fewer tokens than a prefill block): kGemvRows rows at a time, AVX-512 VNNI ----
// One row at a time keeps one chain of dependent vpdpbusd and stalls on it; four rows share each activation load,
// and each plane's codes are taken with a mask alone (the plane j codes come out times 4^j, taken off once per row
// with an exact shift) instead of a shift and a mask. Reading four rows side by side is not a pattern the hardware
// prefetchers follow from memory (5-8 GB/s where one row at a time streamed 11-15), so the rows ahead are asked for
// in address order as this block is read: 17-20 GB/s from memory on one Zen 4 core (best of 4 runs on a shared
// host, 2B-4T shapes) against 13-15 for the one-row loop. The hints fill L2, not L1 (_MM_HINT_T1): an L1 fill holds
// one of the core's few L1 miss buffers for the whole trip to memory, an L2 fill one of L2's many, so more lines are
// on their way at once. 30 layers of 2B-4T weights from memory, median of 12 interleaved rounds on a 2-core Zen 4
// host: 25.6 -> 28.3 GB/s at 2 threads (a plain streaming sum read 31.7), 22.2 -> 24.0 at 1 thread. Integer sums:
// the same results as DotCodes.
#if defined(EDGEBIT_AVX512VNNI)
namespace avx512vnni {

constexpr int64_t kGemvRows = 4;
__attribute__((always_inline)) inline void DotCodesRows(const uint8_t* w, int64_t kq, const int8_t* q, int64_t* b,
                                                     int32_t* acc) {
  const __m512i masks[4] = {_mm512_set1_epi8(0x03), _mm512_set1_epi8(0x0c), _mm512_set1_epi8(0x30),
                            _mm512_set1_epi8(static_cast<char>(0xc0))};
  __m512i sums[kGemvRows][4];
  for (auto& row : sums)
    for (auto& sum : row) sum = _mm512_setzero_si512();
  // in address order, at least a block and 8 KiB ahead (nearer, the hints land on lines already on their way)
  const char* ahead = reinterpret_cast<const char*>(w + std::max<int64_t>(kGemvRows * kq, 8192));
  int64_t i = *b;  // compiled out of line and counting through the pointer, GCC kept 7 of the 16 sums on the stack
                   // (a load and a store of each every step); inlined, with a local counter, all stay in registers
  for (; i + 64 <= kq; i += 64, ahead += 64 * kGemvRows) {
    for (int64_t r = 0; r < kGemvRows; ++r) _mm_prefetch(ahead + 64 * r, _MM_HINT_T1);
    __m512i a[4];
    for (int j = 0; j < 4; ++j) {
      a[j] = _mm512_loadu_si512(q + j * kq + i);
      KeepInRegister(a[j]);
    }
    for (int64_t r = 0; r < kGemvRows; ++r) {
      __m512i packed = _mm512_loadu_si512(w + r * kq + i);
      KeepInRegister(packed);
      for (int j = 0; j < 4; ++j)
        sums[r][j] = _mm512_dpbusd_epi32(sums[r][j], _mm512_and_si512(packed, masks[j]), a[j]);
    }
  }
  *b = i;
  for (int64_t r = 0; r < kGemvRows; ++r)
    acc[r] = _mm512_reduce_add_epi32(sums[r][0]) + (_mm512_reduce_add_epi32(sums[r][1]) >> 2) +
             (_mm512_reduce_add_epi32(sums[r][2]) >> 4) + (_mm512_reduce_add_epi32(sums[r][3]) >> 6);
}
}  // namespace avx512vnni
#endif

// ---- prefill: a block of rows x tokens at a time, each decoded weight vector used for every token of the block ----
// Decoding a 2-bit plane (shift, mask) costs as much as the dot product itself; with several tokens it is paid once
// per row and chunk instead of once per token (register blocking, as GEMM kernels do). acc[r * kTokens + t] gets
// the integer dot product of row r and token t over bytes [0, *b); the caller adds the tail from *b on.
constexpr int64_t kBlockTokens = 4;

#if defined(EDGEBIT_AVX512VNNI)
namespace avx512vnni {
constexpr int64_t kBlockRows = 4;  // 16 accumulators + 4 rows + 4 decoded planes of 32 zmm registers

inline void DotCodesBlock(const uint8_t* w, int64_t kq, const int8_t* q, int64_t padded, int64_t* b, int32_t* acc) {
  const __m512i mask = _mm512_set1_epi8(3);
  __m512i sums[kBlockRows][kBlockTokens];
  for (auto& row : sums)
    for (auto& sum : row) sum = _mm512_setzero_si512();
  for (; *b + 64 <= kq; *b += 64) {
    __m512i packed[kBlockRows];
    for (int64_t r = 0; r < kBlockRows; ++r) {
      packed[r] = _mm512_loadu_si512(w + r * kq + *b);
      KeepInRegister(packed[r]);
    }
    for (int j = 0; j < 4; ++j) {
      __m512i codes[kBlockRows];
      for (int64_t r = 0; r < kBlockRows; ++r) codes[r] = _mm512_and_si512(_mm512_srli_epi16(packed[r], 2 * j), mask);
      for (int64_t t = 0; t < kBlockTokens; ++t) {
        __m512i a = _mm512_loadu_si512(q + t * padded + j * kq + *b);
        KeepInRegister(a);
        for (int64_t r = 0; r < kBlockRows; ++r) sums[r][t] = _mm512_dpbusd_epi32(sums[r][t], codes[r], a);
      }
    }
  }
  for (int64_t r = 0; r < kBlockRows; ++r)
    for (int64_t t = 0; t < kBlockTokens; ++t) acc[r * kBlockTokens + t] = _mm512_reduce_add_epi32(sums[r][t]);
}
}  // namespace avx512vnni
#endif

#if defined(EDGEBIT_AVX2)
namespace avx2 {
constexpr int64_t kBlockRows = 1;  // 16 ymm registers: 4 accumulators, 4 decoded planes, 4 activations
inline void DotCodesBlock(const uint8_t* w, int64_t kq, const int8_t* q, int64_t padded, int64_t* b, int32_t* acc) {
  const __m256i mask = _mm256_set1_epi8(3), ones = _mm256_set1_epi16(1);
  __m256i sums[kBlockTokens];
  for (auto& sum : sums) sum = _mm256_setzero_si256();
  for (; *b + 32 <= kq; *b += 32) {
    const __m256i p = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + *b));
    __m256i codes[4];
    for (int j = 0; j < 4; ++j) codes[j] = _mm256_and_si256(_mm256_srli_epi16(p, 2 * j), mask);
    for (int64_t t = 0; t < kBlockTokens; ++t) {
      const int8_t* a = q + t * padded + *b;
      auto plane = [&](int j) {
        return _mm256_maddubs_epi16(codes[j], _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + j * kq)));
      };
      const __m256i sum = _mm256_add_epi16(_mm256_add_epi16(plane(0), plane(1)), _mm256_add_epi16(plane(2), plane(3)));
      sums[t] = _mm256_add_epi32(sums[t], _mm256_madd_epi16(sum, ones));
    }
  }
  for (int64_t t = 0; t < kBlockTokens; ++t) {
    acc[t] = HorizontalSumAvx2(sums[t]);
  }
}
}  // namespace avx2
#endif

#if defined(EDGEBIT_DOTPROD)
namespace neon {
constexpr int64_t kBlockRows = 4;  // 16 accumulators + 4 rows + 4 decoded planes + activations of 32 registers
inline void DotCodesBlock(const uint8_t* w, int64_t kq, const int8_t* q, int64_t padded, int64_t* b, int32_t* acc) {
  const uint8x16_t mask = vdupq_n_u8(3);
  int32x4_t sums[kBlockRows][kBlockTokens];
  for (auto& row : sums)
    for (auto& sum : row) sum = vdupq_n_s32(0);
  for (; *b + 16 <= kq; *b += 16) {
    uint8x16_t packed[kBlockRows];
    for (int64_t r = 0; r < kBlockRows; ++r) packed[r] = vld1q_u8(w + r * kq + *b);
    for (int j = 0; j < 4; ++j) {
      int8x16_t codes[kBlockRows];
      for (int64_t r = 0; r < kBlockRows; ++r) {
        const uint8x16_t shifted = j == 0 ? packed[r] : j == 1 ? vshrq_n_u8(packed[r], 2)
                                         : j == 2 ? vshrq_n_u8(packed[r], 4) : vshrq_n_u8(packed[r], 6);
        codes[r] = vreinterpretq_s8_u8(vandq_u8(shifted, mask));
      }
      for (int64_t t = 0; t < kBlockTokens; ++t) {
        const int8x16_t a = vld1q_s8(q + t * padded + j * kq + *b);
        for (int64_t r = 0; r < kBlockRows; ++r) sums[r][t] = vdotq_s32(sums[r][t], codes[r], a);
      }
    }
  }
  for (int64_t r = 0; r < kBlockRows; ++r)
    for (int64_t t = 0; t < kBlockTokens; ++t) acc[r * kBlockTokens + t] = vaddvq_s32(sums[r][t]);
}
}  // namespace neon
#endif

// The widest blocked path this translation unit has (kBlockRows and DotCodesBlock); plain NEON and the generic
// fallback have none (EDGEBIT_BLOCKED undefined).
#if defined(EDGEBIT_AVX512VNNI)
#define EDGEBIT_BLOCKED 1
namespace blocked = avx512vnni;
#elif defined(EDGEBIT_AVX2)
#define EDGEBIT_BLOCKED 1
namespace blocked = avx2;
#elif defined(EDGEBIT_DOTPROD)
#define EDGEBIT_BLOCKED 1
namespace blocked = neon;
#endif

// ---- the operator ----

// Why these shapes do not fit the SPEC ("" when they do): x [..., K] with K = in_features, w_packed [N, Kq] with
// 4 * Kq >= K, w_scale one value.
inline std::string ShapeError(const Dims& x, const Dims& w, int64_t scale_count, int64_t in_features) {
  if (in_features <= 0) return "in_features must be positive, got " + std::to_string(in_features);
  if (x.empty() || x.back() != in_features)
    return "x " + ShapeText(x) + " must end in in_features = " + std::to_string(in_features);
  if (w.size() != 2 || w[1] * 4 < in_features || w[0] < 0)
    return "w_packed " + ShapeText(w) + " must be [N, Kq] with 4 * Kq >= in_features = " + std::to_string(in_features);
  if (scale_count != 1) return "w_scale must hold one value, has " + std::to_string(scale_count);
  return "";
}

struct Problem {
  const float* x;       // [tokens, k]
  const uint8_t* w;     // [n, kq]
  float w_scale;
  float* out;           // [tokens, n]
  int64_t tokens, k, n, kq;
};

// Builds the problem from shapes ShapeError accepted.
inline Problem MakeProblem(const Dims& x, const Dims& w, const float* xs, const uint8_t* ws, float w_scale,
                           float* out) {
  return {xs, ws, w_scale, out, Product(x) / x.back(), x.back(), w[0], w[1]};
}

// SPEC steps 1-4: the activations are quantized once, then output rows are split over `parallel` (see
// kernel_common.h); each task streams its weight rows once and reuses each for every token, in register blocks of
// rows x tokens where the ISA has a blocked path (prefill).
template <class Parallel>
void Run(const Problem& p, Parallel&& parallel) {
  const int64_t padded = 4 * p.kq;
  std::vector<int8_t> codes(static_cast<size_t>(p.tokens * padded));
  std::vector<int32_t> sums(static_cast<size_t>(p.tokens));
  std::vector<float> scales(static_cast<size_t>(p.tokens));
  // SPEC steps 1-2, tokens split over the threads too (serial, a prefill's quantization was ~6 % of its time on
  // one thread: a 2-thread prefill could not reach twice the speed of one)
  parallel(p.tokens, 8, [&](RowRange range) {
    for (int64_t t = range.begin; t < range.end; ++t)
      scales[t] = QuantizeAbsmaxInt8(p.x + t * p.k, p.k, padded, codes.data() + t * padded, &sums[t]);
  });
  // ~16 KiB of weights a task, in whole blocks of 4 rows (a range ending mid-block leaves rows to the unblocked loop)
  const int64_t grain = (std::max<int64_t>(1, 16384 / std::max<int64_t>(p.kq, 1)) + 3) / 4 * 4;
  // SPEC step 4: out[t, row] from the integer dot product of the codes
  auto store = [&](int64_t t, int64_t row, int32_t dot) {
    p.out[t * p.n + row] = static_cast<float>(dot - sums[t]) / scales[t] * p.w_scale;
  };
  parallel(p.n, grain, [&](RowRange rows) {
    int64_t row = rows.begin;
#if defined(EDGEBIT_BLOCKED)
    // blocks of kBlockRows rows x kBlockTokens tokens, the integer sums exactly those of DotCodes
    for (; p.tokens >= kBlockTokens && row + blocked::kBlockRows <= rows.end; row += blocked::kBlockRows) {
      const uint8_t* packed = p.w + row * p.kq;
      int64_t t = 0;
      for (; t + kBlockTokens <= p.tokens; t += kBlockTokens) {
        int32_t acc[blocked::kBlockRows * kBlockTokens];
        int64_t b = 0;
        const int8_t* q = codes.data() + t * padded;
        blocked::DotCodesBlock(packed, p.kq, q, padded, &b, acc);
        for (int64_t r = 0; r < blocked::kBlockRows; ++r)
          for (int64_t u = 0; u < kBlockTokens; ++u)
            store(t + u, row + r,
                  acc[r * kBlockTokens + u] + generic::DotCodes(packed + r * p.kq, q + u * padded, p.kq, b));
      }
      for (; t < p.tokens; ++t)
        for (int64_t r = 0; r < blocked::kBlockRows; ++r)
          store(t, row + r, DotCodes(packed + r * p.kq, codes.data() + t * padded, p.kq));
    }
#endif
#if defined(EDGEBIT_AVX512VNNI)
    // decode: blocks of kGemvRows rows, one token at a time
    for (; p.tokens < kBlockTokens && row + avx512vnni::kGemvRows <= rows.end; row += avx512vnni::kGemvRows) {
      const uint8_t* packed = p.w + row * p.kq;
      for (int64_t t = 0; t < p.tokens; ++t) {
        const int8_t* q = codes.data() + t * padded;
        int32_t acc[avx512vnni::kGemvRows];
        int64_t b = 0;
        avx512vnni::DotCodesRows(packed, p.kq, q, &b, acc);
        for (int64_t r = 0; r < avx512vnni::kGemvRows; ++r)
          store(t, row + r, acc[r] + generic::DotCodes(packed + r * p.kq, q, p.kq, b));
      }
    }
#endif
    for (; row < rows.end; ++row)
      for (int64_t t = 0; t < p.tokens; ++t) store(t, row, DotCodes(p.w + row * p.kq, codes.data() + t * padded, p.kq));
  });
}

}  // namespace edgebit_kernels::ternary_matmul
