// edgebit::binary_linear / BinaryMatMul (FBI-Linear, SPEC.md in this folder), once for every runtime:
//   x float [..., K], w_signs uint8 [N, Kq] (bit j of byte b = column j * Kq + b, 1 -> +1, 0 -> -1),
//   alpha float [1, K], beta float [1, K]  ->  out float [..., N] = sum_j d_j (2 P_j - S_j) + (beta . x)
// Per token the scaled activations v = alpha * x are laid out as the weights' 8 planes of Kq columns and each plane
// is quantized to int8 (d_j = absmax / 127, SPEC steps 1-2). A row's plane j is then the run of bit j over the row's
// Kq bytes, and P_j, the sum of the plane's codes where that bit is 1, is an exact int32 dot product:
//   AVX-512 VNNI: vpdpbusd of (bytes & (1 << j)), values 0 or 2^j, with the codes: 2^j P_j, 64 weights an instruction;
//   AVX2: pmaddubsw of the same operands, then pmaddwd into int32;
//   NEON: vtst turns bit j into 0 / -1 bytes, sdot (ARMv8.2) or a widening pairwise add sums the selected codes.
// Every path yields the same exact integer plane sums; AVX2, NEON and the generic loop combine them in one fixed order
// (Combine: bit-identical results), AVX-512 in float lanes (rounding may differ by float32 ulps, as the SPEC allows).
#pragma once

#include "common/kernel_common.h"

namespace edgebit_kernels::binary_matmul {

constexpr int kBits = 8;

// One token's quantized activations: 8 planes of kq codes, the plane scales and what every row adds.
struct Token {
  const int8_t* q;        // [8 * kq]
  float d[kBits];         // plane scales
  int32_t sums[kBits];    // S_j, each plane's sum of codes
  float shift;            // beta . x
  float scaled[kBits];    // 2 d_j / 2^j (the AVX-512 path sums 2^j P_j)
  float base;             // shift - sum_j d_j S_j
};

// out = shift + sum_j d_j (2 P_j - S_j), the brackets exact, in this order on every path.
inline float Combine(const int32_t* positive, const Token& token) {
  float total = token.shift;
  for (int j = 0; j < kBits; ++j) total += token.d[j] * static_cast<float>(2 * positive[j] - token.sums[j]);
  return total;
}

// ---- generic C++ (the fallback, and every path's tail): adds P_j over bytes [begin, end) ----
namespace generic {
inline void AddPlaneSums(const uint8_t* w, const int8_t* q, int64_t kq, int64_t begin, int64_t end, int32_t* sums) {
  for (int j = 0; j < kBits; ++j) {
    int32_t total = 0;
    for (int64_t b = begin; b < end; ++b) total += ((w[b] >> j) & 1) ? q[j * kq + b] : 0;
    sums[j] += total;
  }
}
}  // namespace generic

#if defined(EDGEBIT_AVX512VNNI)
namespace avx512vnni {
constexpr int64_t kRows = 2;  // 16 accumulators, 2 rows of bytes and the masked planes in 32 zmm registers
// Two rows read side by side are not a stream the hardware prefetchers follow well: each row's bytes this far ahead
// are asked for as it is read (from memory on one Ice Lake core, 2.7B in_proj / out_proj: 5.8 / 4.6 GB/s without,
// 7.3 / 7.6 with 4 KiB; 1 / 2 / 8 KiB did worse, the read bandwidth was 9.3).
constexpr int64_t kPrefetchBytes = 4096;

// out[r] for rows w, w + kq, ... (kRows of them): per plane j an int32 vector of 2^j P_j (vpdpbusd of the bytes
// masked to bit j, values 0 or 2^j, with the codes), converted (exactly: |sums| < 2^24) and scaled by
// 2 d_j / 2^j in float lanes, one horizontal sum per row. Rows side by side share each load of the codes.
template <int64_t R>
__attribute__((always_inline)) inline void Dot(const uint8_t* w, int64_t kq, const Token& token, float* out) {
  __m512i acc[R][kBits];
  for (auto& row : acc)
    for (auto& a : row) a = _mm512_setzero_si512();
  // One loop, the last step masked, each loaded vector kept in a register: written as a lambda called for the whole
  // steps and the tail, the adapter's code held 176 vector loads and stores of the stack (26 now) and loaded codes
  // as memory operands of vpdpbusd. Same speed from memory on a Zen 4 core (9-11 GB/s of signs, 2.7B projections):
  // this path is bound by its one vpand and one vpdpbusd per 64 weights, not by the reads.
  for (int64_t b = 0; b < kq; b += 64) {
    const __mmask64 live = b + 64 <= kq ? ~__mmask64{0} : (__mmask64{1} << (kq - b)) - 1;
    __m512i bytes[R];
    for (int64_t r = 0; r < R; ++r) {
      _mm_prefetch(reinterpret_cast<const char*>(w + r * kq + b + kPrefetchBytes), _MM_HINT_T0);
      bytes[r] = _mm512_maskz_loadu_epi8(live, w + r * kq + b);
      KeepInRegister(bytes[r]);
    }
    for (int j = 0; j < kBits; ++j) {
      __m512i codes = _mm512_maskz_loadu_epi8(live, token.q + j * kq + b);
      KeepInRegister(codes);
      const __m512i bit = _mm512_set1_epi8(static_cast<char>(1 << j));
      for (int64_t r = 0; r < R; ++r) acc[r][j] = _mm512_dpbusd_epi32(acc[r][j], _mm512_and_si512(bytes[r], bit), codes);
    }
  }
  for (int64_t r = 0; r < R; ++r) {
    __m512 total = _mm512_setzero_ps();
    for (int j = 0; j < kBits; ++j)
      total = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[r][j]), _mm512_set1_ps(token.scaled[j]), total);
    out[r] = token.base + _mm512_reduce_add_ps(total);
  }
}
}  // namespace avx512vnni
#endif

#if defined(EDGEBIT_AVX2)
namespace avx2 {
// Adds P_j over whole 32-byte steps from *b on.
inline void AddPlaneSums(const uint8_t* w, const int8_t* q, int64_t kq, int64_t* b, int32_t* sums) {
  __m256i acc[kBits];
  for (int j = 0; j < kBits; ++j) acc[j] = _mm256_setzero_si256();
  const __m256i ones = _mm256_set1_epi16(1);
  for (; *b + 32 <= kq; *b += 32) {
    const __m256i bytes = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + *b));
    for (int j = 0; j < kBits; ++j) {
      const __m256i bit = _mm256_and_si256(bytes, _mm256_set1_epi8(static_cast<char>(1 << j)));
      const __m256i codes = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + j * kq + *b));
      // pairs of 2^j * code: at most 2 * 128 * 127, inside int16
      acc[j] = _mm256_add_epi32(acc[j], _mm256_madd_epi16(_mm256_maddubs_epi16(bit, codes), ones));
    }
  }
  for (int j = 0; j < kBits; ++j) sums[j] += HorizontalSumAvx2(acc[j]) >> j;
}
}  // namespace avx2
#endif

#if defined(EDGEBIT_NEON)
namespace neon {
// Adds P_j over whole 16-byte steps from *b on.
inline void AddPlaneSums(const uint8_t* w, const int8_t* q, int64_t kq, int64_t* b, int32_t* sums) {
  int32x4_t acc[kBits];
  for (int j = 0; j < kBits; ++j) acc[j] = vdupq_n_s32(0);
  for (; *b + 16 <= kq; *b += 16) {
    const uint8x16_t bytes = vld1q_u8(w + *b);
    for (int j = 0; j < kBits; ++j) {
      const int8x16_t selected = vreinterpretq_s8_u8(vtstq_u8(bytes, vdupq_n_u8(static_cast<uint8_t>(1 << j))));
      const int8x16_t codes = vld1q_s8(q + j * kq + *b);
#if defined(EDGEBIT_DOTPROD)
      acc[j] = vdotq_s32(acc[j], selected, codes);  // selected is -1 where the bit is set: adds -P_j
#else
      acc[j] = vpadalq_s16(acc[j], vpaddlq_s8(vandq_s8(selected, codes)));
#endif
    }
  }
  for (int j = 0; j < kBits; ++j) {
#if defined(EDGEBIT_DOTPROD)
    sums[j] -= vaddvq_s32(acc[j]);
#else
    sums[j] += vaddvq_s32(acc[j]);
#endif
  }
}
}  // namespace neon
#endif

// One packed row against one token: the exact plane sums P_j, then Combine (AVX-512 has its own, Dot above).
inline float Dot(const uint8_t* w, int64_t kq, const Token& token) {
  int32_t sums[kBits] = {};
  int64_t b = 0;
#if defined(EDGEBIT_AVX2)
  avx2::AddPlaneSums(w, token.q, kq, &b, sums);
#elif defined(EDGEBIT_NEON)
  neon::AddPlaneSums(w, token.q, kq, &b, sums);
#endif
  generic::AddPlaneSums(w, token.q, kq, b, kq, sums);
  return Combine(sums, token);
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

// The tokens a task walks its rows for before moving to the next ones, so their codes stay in L1 (8 * kq bytes each).
constexpr int64_t kTokenTile = 8;

// SPEC steps 1-2 once per token, then output rows split over `parallel` (kernel_common.h); within a task each row's
// bytes are reused, from L1, by a tile of tokens.
template <class Parallel>
void Run(const Problem& p, Parallel&& parallel) {
  const int64_t padded = kBits * p.kq;
  std::vector<int8_t> codes(static_cast<size_t>(p.tokens * padded));
  std::vector<float> scaled(static_cast<size_t>(p.k));
  std::vector<Token> tokens(static_cast<size_t>(p.tokens));
  for (int64_t t = 0; t < p.tokens; ++t) {
    const float* row = p.x + t * p.k;
    Token& token = tokens[t];
    token.shift = 0.0f;
    for (int64_t i = 0; i < p.k; ++i) {
      scaled[i] = row[i] * p.alpha[i];
      token.shift += row[i] * p.beta[i];
    }
    token.q = codes.data() + t * padded;
    QuantizeInt8Blocks(scaled.data(), p.k, padded, p.kq, codes.data() + t * padded, token.d, token.sums);
    token.base = token.shift;
    for (int j = 0; j < kBits; ++j) {
      token.scaled[j] = 2.0f * token.d[j] / static_cast<float>(1 << j);
      token.base -= token.d[j] * static_cast<float>(token.sums[j]);
    }
  }
  const int64_t grain = std::max<int64_t>(1, 8192 / std::max<int64_t>(p.kq, 1));  // ~8 KiB of signs a task
  parallel(p.n, grain, [&](RowRange rows) {
    for (int64_t first = 0; first < p.tokens; first += kTokenTile) {
      const int64_t last = std::min(p.tokens, first + kTokenTile);
      int64_t r = rows.begin;
#if defined(EDGEBIT_AVX512VNNI)
      for (; r + avx512vnni::kRows <= rows.end; r += avx512vnni::kRows)
        for (int64_t t = first; t < last; ++t)
          avx512vnni::Dot<avx512vnni::kRows>(p.w + r * p.kq, p.kq, tokens[t], p.out + t * p.n + r);
      for (; r < rows.end; ++r)
        for (int64_t t = first; t < last; ++t) avx512vnni::Dot<1>(p.w + r * p.kq, p.kq, tokens[t], p.out + t * p.n + r);
#else
      for (; r < rows.end; ++r)
        for (int64_t t = first; t < last; ++t) p.out[t * p.n + r] = Dot(p.w + r * p.kq, p.kq, tokens[t]);
#endif
    }
  });
}

}  // namespace edgebit_kernels::binary_matmul
