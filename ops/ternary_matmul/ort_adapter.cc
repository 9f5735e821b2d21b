// ONNX Runtime kernel of edgebit::TernaryMatMul (SPEC.md in this folder):
//   TernaryMatMul(x float [..., K], w_packed uint8 [N, Kq], w_scale float [1]; in_features = K) -> float [..., N]
// Per token: int8 absmax quantization (round half to even), an exact integer product with the planar 2-bit codes,
// then acc / s * w_scale in float32 -- the same operations, in the same order, as the reference.
//
// The product uses sum_k q[k] * (c[k] - 1) = sum_k q[k] * c[k] - sum_k q[k] with codes c in {0, 1, 2}, so the
// inner loop multiplies unsigned codes by signed activations (AVX2 maddubs, NEON sdot / smull) with no sign fix-up.

#include <cmath>
#include <cstring>

#include "ort_ops.h"

#if defined(__AVX2__)
#include <immintrin.h>
#elif defined(__ARM_NEON)
#include <arm_neon.h>
#endif

namespace edgebit_ort {
namespace {

// sum_b sum_j q[j * kq + b] * ((w[b] >> 2j) & 3) over one packed row.
inline int32_t DotCodes(const uint8_t* w, const int8_t* q, int64_t kq) {
  int64_t b = 0;
  int32_t total = 0;
#if defined(__AVX2__)
  const __m256i mask = _mm256_set1_epi8(3), ones = _mm256_set1_epi16(1);
  __m256i acc = _mm256_setzero_si256();
  for (; b + 32 <= kq; b += 32) {
    __m256i p = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + b));
    auto plane = [&](int j, __m256i codes) {
      return _mm256_maddubs_epi16(codes, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + j * kq + b)));
    };
    __m256i s01 = _mm256_add_epi16(plane(0, _mm256_and_si256(p, mask)),
                                   plane(1, _mm256_and_si256(_mm256_srli_epi16(p, 2), mask)));
    __m256i s23 = _mm256_add_epi16(plane(2, _mm256_and_si256(_mm256_srli_epi16(p, 4), mask)),
                                   plane(3, _mm256_and_si256(_mm256_srli_epi16(p, 6), mask)));
    acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_add_epi16(s01, s23), ones));  // |lane| <= 2048 before madd
  }
  __m128i half = _mm_add_epi32(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1));
  half = _mm_hadd_epi32(half, half);
  half = _mm_hadd_epi32(half, half);
  total = _mm_cvtsi128_si32(half);
#elif defined(__ARM_NEON)
  const uint8x16_t mask = vdupq_n_u8(3);
  int32x4_t acc = vdupq_n_s32(0);
  for (; b + 16 <= kq; b += 16) {
    uint8x16_t p = vld1q_u8(w + b);
    int8x16_t c0 = vreinterpretq_s8_u8(vandq_u8(p, mask)), c1 = vreinterpretq_s8_u8(vandq_u8(vshrq_n_u8(p, 2), mask));
    int8x16_t c2 = vreinterpretq_s8_u8(vandq_u8(vshrq_n_u8(p, 4), mask)), c3 = vreinterpretq_s8_u8(vshrq_n_u8(p, 6));
    int8x16_t q0 = vld1q_s8(q + b), q1 = vld1q_s8(q + kq + b), q2 = vld1q_s8(q + 2 * kq + b),
              q3 = vld1q_s8(q + 3 * kq + b);
#if defined(__ARM_FEATURE_DOTPROD)
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
  total = vaddvq_s32(acc);
#endif
  for (; b < kq; ++b) {  // tail (and the whole row on other architectures; -O3 vectorizes it)
    const uint8_t p = w[b];
    total += q[b] * (p & 3) + q[kq + b] * ((p >> 2) & 3) + q[2 * kq + b] * ((p >> 4) & 3) + q[3 * kq + b] * (p >> 6);
  }
  return total;
}

// SPEC steps 1-2 for one token: codes into q[0 .. 4*kq) (zero beyond K), returns s; *sum = sum of the codes.
inline float Quantize(const float* x, int64_t k, int64_t kq, int8_t* q, int32_t* sum) {
  float absmax = 0.0f;
  for (int64_t i = 0; i < k; ++i) absmax = std::max(absmax, std::fabs(x[i]));
  const float s = 127.0f / std::max(absmax, 1e-5f);
  int32_t total = 0;
  for (int64_t i = 0; i < k; ++i) {
    float v = std::nearbyint(x[i] * s);  // default rounding mode: to nearest, ties to even
    v = std::min(127.0f, std::max(-128.0f, v));
    q[i] = static_cast<int8_t>(v);
    total += q[i];
  }
  std::memset(q + k, 0, static_cast<size_t>(4 * kq - k));
  *sum = total;
  return s;
}

struct TernaryKernel {
  int64_t in_features;

  OrtStatusPtr ComputeV2(OrtKernelContext* context) {
    return Guarded("TernaryMatMul", [&] {
      Ort::KernelContext ctx(context);
      auto x = ctx.GetInput(0), w = ctx.GetInput(1), scale = ctx.GetInput(2);
      std::vector<int64_t> x_shape = x.GetTensorTypeAndShapeInfo().GetShape();
      std::vector<int64_t> w_shape = w.GetTensorTypeAndShapeInfo().GetShape();
      Require(!x_shape.empty() && x_shape.back() == in_features,
              "x " + ShapeText(x_shape) + " must end in in_features = " + std::to_string(in_features));
      Require(w_shape.size() == 2 && w_shape[1] * 4 >= in_features,
              "w_packed " + ShapeText(w_shape) + " must be [N, >= ceil(K/4)]");
      Require(scale.GetTensorTypeAndShapeInfo().GetElementCount() == 1, "w_scale must hold one value");
      const int64_t k = in_features, n = w_shape[0], kq = w_shape[1];
      const int64_t tokens = k ? static_cast<int64_t>(x.GetTensorTypeAndShapeInfo().GetElementCount()) / k : 0;
      std::vector<int64_t> out_shape(x_shape);
      out_shape.back() = n;
      float* out = ctx.GetOutput(0, out_shape).GetTensorMutableData<float>();
      const float* xs = x.GetTensorData<float>();
      const uint8_t* ws = w.GetTensorData<uint8_t>();
      const float w_scale = scale.GetTensorData<float>()[0];

      std::vector<int8_t> codes(static_cast<size_t>(tokens * 4 * kq));
      std::vector<int32_t> sums(static_cast<size_t>(tokens));
      std::vector<float> scales(static_cast<size_t>(tokens));
      for (int64_t t = 0; t < tokens; ++t)
        scales[t] = Quantize(xs + t * k, k, kq, codes.data() + t * 4 * kq, &sums[t]);
      // Row blocks: each task streams its weight rows once and reuses them for every token.
      ParallelChunks(ctx, n, 64, [&](int64_t begin, int64_t end) {
        for (int64_t row = begin; row < end; ++row) {
          const uint8_t* packed = ws + row * kq;
          for (int64_t t = 0; t < tokens; ++t) {
            int32_t acc = DotCodes(packed, codes.data() + t * 4 * kq, kq) - sums[t];
            out[t * n + row] = static_cast<float>(acc) / scales[t] * w_scale;
          }
        }
      });
    });
  }
};

struct TernaryMatMul : Ort::CustomOpBase<TernaryMatMul, TernaryKernel, true> {
  OrtStatusPtr CreateKernelV2(const OrtApi&, const OrtKernelInfo* info, void** kernel) const {
    return Guarded("TernaryMatMul", [&] {
      int64_t k = Ort::ConstKernelInfo(info).GetAttribute<int64_t>("in_features");
      Require(k > 0, "in_features must be positive");
      *kernel = new TernaryKernel{k};
    });
  }
  const char* GetName() const { return "TernaryMatMul"; }
  size_t GetInputTypeCount() const { return 3; }
  ONNXTensorElementDataType GetInputType(size_t index) const {
    return index == 1 ? ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8 : ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
  }
  size_t GetOutputTypeCount() const { return 1; }
  ONNXTensorElementDataType GetOutputType(size_t) const { return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT; }
};

}  // namespace

const OrtCustomOp* TernaryMatMulOp() {
  static const TernaryMatMul op;
  return &op;
}

}  // namespace edgebit_ort
