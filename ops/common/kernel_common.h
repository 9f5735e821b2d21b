// What every ops/<op>/kernel.h shares: which vector ISA this translation unit is compiled for, the row range an
// adapter hands to a kernel, the parallel-for shape the kernels call back into, the shape-text helper of their
// error messages, and BitNet's per-token int8 absmax activation quantization.
//
// The kernels are plain functions over raw pointers and sizes; the runtime adapters (ops/<op>/ort_adapter.cc,
// ops/<op>/executorch_adapter.cpp) check shapes, allocate outputs and run row ranges on their own thread pool.
// The ISA is chosen at compile time from the target's `cflags` (targets/*.toml): there is no runtime dispatch, a
// library is built per target. Each kernel.h is laid out like llama.cpp's ggml-cpu/arch/<isa> + arch-fallback.h:
// one section per ISA (x86: AVX-512 VNNI, AVX2; arm: NEON, ARMv8.2 sdot) and a generic C++ fallback that every
// section reuses for its tail; the paths of one op add in the same order, so their dot products are bit-identical
// (checked on x86 and under qemu-aarch64 with -ffp-contract=off; FMA contraction may still round the float
// pre/post-processing differently per target).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#if defined(__AVX512VNNI__) && defined(__AVX512BW__)
#define EDGEBIT_AVX512VNNI 1
#endif
#if defined(__AVX2__)
#define EDGEBIT_AVX2 1
#include <immintrin.h>
#endif
#if defined(__ARM_NEON) && defined(__aarch64__)
#define EDGEBIT_NEON 1
#include <arm_neon.h>
#if defined(__ARM_FEATURE_DOTPROD)
#define EDGEBIT_DOTPROD 1
#endif
#endif

namespace edgebit_kernels {

using Dims = std::vector<int64_t>;

#if defined(EDGEBIT_AVX512VNNI)
// Keeps a loaded vector in a register. Left alone, GCC folds a load into every instruction that reads the vector, as
// a memory operand: in the ternary kernels each activation was loaded four times (once per row) and each packed row
// once per plane, and the loads, not the vpdpbusd, set the pace. Measured on one Zen 4 core: the ternary prefill block
// went from ~45 % to ~75 % of the vpdpbusd peak, its decode rows from 12 to 17-22 GB/s from memory.
inline void KeepInRegister(__m512i& v) { __asm__("" : "+v"(v)); }
#endif

#if defined(EDGEBIT_AVX2)
// The sum of the eight int32 lanes of an AVX2 register (integer: any order gives the same result).
inline int32_t HorizontalSumAvx2(__m256i v) {
  __m128i half = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  half = _mm_hadd_epi32(half, half);
  half = _mm_hadd_epi32(half, half);
  return _mm_cvtsi128_si32(half);
}
#endif

// A half-open range of output rows (or heads) one task computes.
struct RowRange {
  int64_t begin, end;
};

// How a kernel asks its adapter to run `total` items in tasks of about `grain`: the adapter passes a callable
// `parallel(total, grain, fn)` that calls fn(RowRange) on its thread pool (or serially) and returns when all are done.

inline std::string ShapeText(const Dims& shape) {
  std::string text = "[";
  for (size_t i = 0; i < shape.size(); ++i) text += (i ? ", " : "") + std::to_string(shape[i]);
  return text + "]";
}

inline int64_t Product(const Dims& shape) {
  int64_t count = 1;
  for (int64_t d : shape) count *= d;
  return count;
}

// `x` with its last dimension replaced by `n` (the output shape of a matmul over x's last dimension).
inline Dims WithLastDim(Dims shape, int64_t n) {
  shape.back() = n;
  return shape;
}

// BitNet activations, one token (SPEC of ternary_matmul, steps 1-2): q = clamp(round_half_even(x * s), -128, 127)
// with s = 127 / max(absmax(x), 1e-5), written to q[0 .. k) and zero up to q[padded). Returns s; *sum = sum of q.
inline float QuantizeAbsmaxInt8(const float* x, int64_t k, int64_t padded, int8_t* q, int32_t* sum) {
  float absmax = 0.0f;
  for (int64_t i = 0; i < k; ++i) absmax = std::max(absmax, std::fabs(x[i]));
  const float s = 127.0f / std::max(absmax, 1e-5f);
  int32_t total = 0;
  for (int64_t i = 0; i < k; ++i) {
    const float v = std::nearbyint(x[i] * s);  // the default rounding mode: to nearest, ties to even
    q[i] = static_cast<int8_t>(std::min(127.0f, std::max(-128.0f, v)));
    total += q[i];
  }
  std::memset(q + k, 0, static_cast<size_t>(padded - k));
  *sum = total;
  return s;
}

// The quantized heads' activations, one token (ops/int8_matmul and ops/q4_matmul SPEC steps 1-2): per block of
// `block` columns d = absmax / 127 and q = clamp(round_half_even(x * 127 / absmax), -127, 127) (zeros where absmax is
// 0), columns from k to padded taken as 0. Writes q [padded], d [blocks] and sums [blocks] (each block's sum of q).
inline void QuantizeInt8Blocks(const float* x, int64_t k, int64_t padded, int64_t block, int8_t* q, float* d,
                               int32_t* sums) {
  for (int64_t start = 0, b = 0; start < padded; start += block, ++b) {
    const int64_t end = std::min(start + block, k);
    float absmax = 0.0f;
    for (int64_t i = start; i < end; ++i) absmax = std::max(absmax, std::fabs(x[i]));
    d[b] = absmax / 127.0f;
    const float inverse = absmax > 0.0f ? 127.0f / absmax : 0.0f;
    int32_t sum = 0;
    for (int64_t i = start; i < start + block; ++i) {
      const float v = i < end ? std::nearbyint(x[i] * inverse) : 0.0f;  // ties to even
      q[i] = static_cast<int8_t>(std::min(127.0f, std::max(-127.0f, v)));
      sum += q[i];
    }
    sums[b] = sum;
  }
}

}  // namespace edgebit_kernels
