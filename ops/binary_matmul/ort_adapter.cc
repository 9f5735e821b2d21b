// ONNX Runtime kernel of edgebit::BinaryMatMul (FBI-Linear, SPEC.md in this folder):
//   BinaryMatMul(x float [..., K], w_signs uint8 [N, Kq], alpha float [1, K], beta float [1, K]; in_features = K)
//     -> float [..., N]
// out = sign(W) @ (alpha * x) + (beta . x). Each packed byte holds 8 signs, one per plane (bit j = column
// j * Kq + b), so plane j of a row is a contiguous run of the scaled activations; a sign flips the float's sign bit.

#include <cstring>

#include "ort_ops.h"

namespace edgebit_ort {
namespace {

constexpr int kBits = 8;
constexpr int kLanes = 16;  // independent partial sums: the compiler vectorizes them without reassociating

inline float FlipUnless(float value, unsigned bit) {
  uint32_t word;
  std::memcpy(&word, &value, sizeof word);
  word ^= static_cast<uint32_t>(bit ^ 1u) << 31;  // bit 1 -> +value, bit 0 -> -value
  std::memcpy(&value, &word, sizeof value);
  return value;
}

// sum_k sign[k] * xa[k] for one packed row; xa holds 8 planes of kq values (zeros beyond K).
inline float DotSigns(const uint8_t* w, const float* xa, int64_t kq) {
  float lanes[kLanes] = {};
  int64_t b = 0;
  for (; b + kLanes <= kq; b += kLanes)
    for (int j = 0; j < kBits; ++j) {
      const float* plane = xa + j * kq + b;
      for (int i = 0; i < kLanes; ++i) lanes[i] += FlipUnless(plane[i], (w[b + i] >> j) & 1u);
    }
  float total = 0.0f;
  for (int i = 0; i < kLanes; ++i) total += lanes[i];
  for (; b < kq; ++b)
    for (int j = 0; j < kBits; ++j) total += FlipUnless(xa[j * kq + b], (w[b] >> j) & 1u);
  return total;
}

struct BinaryKernel {
  int64_t in_features;

  OrtStatusPtr ComputeV2(OrtKernelContext* context) {
    return Guarded("BinaryMatMul", [&] {
      Ort::KernelContext ctx(context);
      auto x = ctx.GetInput(0), w = ctx.GetInput(1), alpha = ctx.GetInput(2), beta = ctx.GetInput(3);
      std::vector<int64_t> x_shape = x.GetTensorTypeAndShapeInfo().GetShape();
      std::vector<int64_t> w_shape = w.GetTensorTypeAndShapeInfo().GetShape();
      const int64_t k = in_features;
      Require(!x_shape.empty() && x_shape.back() == k,
              "x " + ShapeText(x_shape) + " must end in in_features = " + std::to_string(k));
      Require(w_shape.size() == 2 && w_shape[1] * kBits >= k, "w_signs " + ShapeText(w_shape) +
                                                                  " must be [N, >= ceil(K/8)]");
      Require(static_cast<int64_t>(alpha.GetTensorTypeAndShapeInfo().GetElementCount()) == k &&
                  static_cast<int64_t>(beta.GetTensorTypeAndShapeInfo().GetElementCount()) == k,
              "alpha and beta must be [1, in_features]");
      const int64_t n = w_shape[0], kq = w_shape[1];
      const int64_t tokens = static_cast<int64_t>(x.GetTensorTypeAndShapeInfo().GetElementCount()) / k;
      std::vector<int64_t> out_shape(x_shape);
      out_shape.back() = n;
      float* out = ctx.GetOutput(0, out_shape).GetTensorMutableData<float>();
      const float *xs = x.GetTensorData<float>(), *a = alpha.GetTensorData<float>(), *c = beta.GetTensorData<float>();
      const uint8_t* ws = w.GetTensorData<uint8_t>();

      std::vector<float> scaled(static_cast<size_t>(tokens * kBits * kq), 0.0f);
      std::vector<float> shift(static_cast<size_t>(tokens), 0.0f);
      for (int64_t t = 0; t < tokens; ++t) {
        const float* row = xs + t * k;
        float* xa = scaled.data() + t * kBits * kq;
        for (int64_t i = 0; i < k; ++i) xa[i] = row[i] * a[i];
        float sum = 0.0f;
        for (int64_t i = 0; i < k; ++i) sum += row[i] * c[i];
        shift[t] = sum;
      }
      ParallelChunks(ctx, n, 64, [&](int64_t begin, int64_t end) {
        for (int64_t r = begin; r < end; ++r)
          for (int64_t t = 0; t < tokens; ++t)
            out[t * n + r] = DotSigns(ws + r * kq, scaled.data() + t * kBits * kq, kq) + shift[t];
      });
    });
  }
};

struct BinaryMatMul : Ort::CustomOpBase<BinaryMatMul, BinaryKernel, true> {
  OrtStatusPtr CreateKernelV2(const OrtApi&, const OrtKernelInfo* info, void** kernel) const {
    return Guarded("BinaryMatMul", [&] {
      int64_t k = Ort::ConstKernelInfo(info).GetAttribute<int64_t>("in_features");
      Require(k > 0, "in_features must be positive");
      *kernel = new BinaryKernel{k};
    });
  }
  const char* GetName() const { return "BinaryMatMul"; }
  size_t GetInputTypeCount() const { return 4; }
  ONNXTensorElementDataType GetInputType(size_t index) const {
    return index == 1 ? ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8 : ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
  }
  size_t GetOutputTypeCount() const { return 1; }
  ONNXTensorElementDataType GetOutputType(size_t) const { return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT; }
};

}  // namespace

const OrtCustomOp* BinaryMatMulOp() {
  static const BinaryMatMul op;
  return &op;
}

}  // namespace edgebit_ort
