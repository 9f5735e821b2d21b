// ExecuTorch kernel of edgebit::binary_linear.out (SPEC.md in this folder): FBI-Linear,
// out = sign(W) @ (alpha * x) + (beta . x), with sign(W) in the planar 1-bit layout (bit j of byte b = column
// j * Kq + b, 1 -> +1, 0 -> -1).
//
// The signs stay packed: per token the scaled activations alpha * x are formed once (zero-padded to 8 * Kq), then
// each output row sums them plane by plane with +-1 taken from the bit, in loops the compiler vectorizes. Output
// rows are split over ExecuTorch's thread pool.
#include <executorch/extension/kernel_util/make_boxed_from_unboxed_functor.h>
#include <executorch/runtime/core/exec_aten/util/tensor_util.h>
#include <executorch/runtime/kernel/kernel_includes.h>
#include <executorch/runtime/kernel/thread_parallel_interface.h>

#include <algorithm>
#include <cstdint>
#include <vector>

namespace edgebit_executorch {

using executorch::aten::ScalarType;
using executorch::aten::SizesType;
using executorch::aten::Tensor;
using executorch::runtime::Error;
using executorch::runtime::KernelRuntimeContext;

namespace {

float SignedSum(const uint8_t* row, const float* xa, int64_t kq) {
  float acc = 0.0f;
  for (int j = 0; j < 8; ++j) {
    const float* xj = xa + j * kq;
    float plane = 0.0f;
#pragma omp simd reduction(+ : plane)
    for (int64_t b = 0; b < kq; ++b) plane += static_cast<float>(2 * ((row[b] >> j) & 1) - 1) * xj[b];
    acc += plane;
  }
  return acc;
}

}  // namespace

Tensor& binary_linear_out(KernelRuntimeContext& ctx, const Tensor& x, const Tensor& w_signs, const Tensor& alpha,
                          const Tensor& beta, int64_t in_features, Tensor& out) {
  const int64_t k = in_features;
  ET_KERNEL_CHECK_MSG(ctx, x.scalar_type() == ScalarType::Float && out.scalar_type() == ScalarType::Float,
                      InvalidArgument, out, "binary_linear: x and out must be float32");
  ET_KERNEL_CHECK_MSG(ctx, w_signs.scalar_type() == ScalarType::Byte && w_signs.dim() == 2, InvalidArgument, out,
                      "binary_linear: w_signs must be uint8 [N, Kq]");
  ET_KERNEL_CHECK_MSG(ctx, alpha.scalar_type() == ScalarType::Float && beta.scalar_type() == ScalarType::Float &&
                      alpha.numel() == k && beta.numel() == k, InvalidArgument, out,
                      "binary_linear: alpha and beta must be float32 [1, in_features]");
  const int64_t n = w_signs.size(0), kq = w_signs.size(1);
  ET_KERNEL_CHECK_MSG(ctx, x.dim() >= 1 && x.size(x.dim() - 1) == k && kq * 8 >= k, InvalidArgument, out,
                      "binary_linear: x's last dimension must be in_features <= 8 * Kq");

  SizesType sizes[executorch::runtime::kTensorDimensionLimit];
  for (ssize_t d = 0; d + 1 < x.dim(); ++d) sizes[d] = x.size(d);
  sizes[x.dim() - 1] = static_cast<SizesType>(n);
  ET_KERNEL_CHECK_MSG(ctx, executorch::runtime::resize_tensor(out, {sizes, static_cast<size_t>(x.dim())}) == Error::Ok,
                      InvalidArgument, out, "binary_linear: cannot resize the output");

  const int64_t tokens = x.numel() / std::max<int64_t>(k, 1);
  const float* xs = x.const_data_ptr<float>();
  const float* a = alpha.const_data_ptr<float>();
  const float* bt = beta.const_data_ptr<float>();
  const uint8_t* w = w_signs.const_data_ptr<uint8_t>();
  float* o = out.mutable_data_ptr<float>();

  const int64_t padded = 8 * kq;
  std::vector<float> scaled(static_cast<size_t>(tokens * padded), 0.0f);
  std::vector<float> shift(static_cast<size_t>(tokens), 0.0f);
  for (int64_t t = 0; t < tokens; ++t) {
    const float* xt = xs + t * k;
    float* st = scaled.data() + t * padded;
    float dot = 0.0f;
    for (int64_t i = 0; i < k; ++i) {
      st[i] = xt[i] * a[i];
      dot += xt[i] * bt[i];
    }
    shift[t] = dot;
  }

  executorch::extension::parallel_for(0, n, std::max<int64_t>(1, 8192 / std::max<int64_t>(kq, 1)),
                                      [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const uint8_t* row = w + r * kq;
      for (int64_t t = 0; t < tokens; ++t) o[t * n + r] = SignedSum(row, scaled.data() + t * padded, kq) + shift[t];
    }
  });
  return out;
}

}  // namespace edgebit_executorch

EXECUTORCH_LIBRARY(edgebit, "binary_linear.out", edgebit_executorch::binary_linear_out);
