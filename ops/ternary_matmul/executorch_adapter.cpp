// ExecuTorch kernel of edgebit::ternary_linear.out (SPEC.md in this folder): int8 per-token absmax activations
// (round half to even), planar 2-bit ternary weights, int32 accumulation, then acc / s * w_scale.
//
// The weights stay packed: each output row is decoded plane by plane ((byte >> 2j) & 3) against the contiguous
// activation slice of that plane, in loops the compiler vectorizes. Output rows are split over ExecuTorch's thread
// pool (parallel_for), which the runner sizes from EDGEBIT_NUM_THREADS.
#include <executorch/extension/kernel_util/make_boxed_from_unboxed_functor.h>
#include <executorch/runtime/core/exec_aten/util/tensor_util.h>
#include <executorch/runtime/kernel/kernel_includes.h>
#include <executorch/runtime/kernel/thread_parallel_interface.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace edgebit_executorch {

using executorch::aten::ScalarType;
using executorch::aten::SizesType;
using executorch::aten::Tensor;
using executorch::runtime::Error;
using executorch::runtime::KernelRuntimeContext;

namespace {

// Codes of one token, zero-padded to 4 * Kq; returns s_t = 127 / max(absmax, 1e-5).
float QuantizeToken(const float* x, int64_t k, int64_t padded, int8_t* q) {
  float absmax = 0.0f;
  for (int64_t i = 0; i < k; ++i) absmax = std::max(absmax, std::fabs(x[i]));
  const float s = 127.0f / std::max(absmax, 1e-5f);
  for (int64_t i = 0; i < k; ++i) {
    float v = std::nearbyint(x[i] * s);  // the default rounding mode: half to even
    q[i] = static_cast<int8_t>(std::min(127.0f, std::max(-128.0f, v)));
  }
  std::fill(q + k, q + padded, int8_t{0});
  return s;
}

// sum_k q[k] * (code(k) - 1) over one packed row: four planes, each a contiguous slice of q.
int32_t DotRow(const uint8_t* row, const int8_t* q, int64_t kq) {
  int32_t acc = 0;
  for (int j = 0; j < 4; ++j) {
    const int8_t* qj = q + j * kq;
    const int shift = 2 * j;
    int32_t plane = 0;
    for (int64_t b = 0; b < kq; ++b) plane += static_cast<int32_t>(qj[b]) * (((row[b] >> shift) & 3) - 1);
    acc += plane;
  }
  return acc;
}

}  // namespace

Tensor& ternary_linear_out(KernelRuntimeContext& ctx, const Tensor& x, const Tensor& w_packed, const Tensor& w_scale,
                           int64_t in_features, Tensor& out) {
  ET_KERNEL_CHECK_MSG(ctx, x.scalar_type() == ScalarType::Float && out.scalar_type() == ScalarType::Float,
                      InvalidArgument, out, "ternary_linear: x and out must be float32");
  ET_KERNEL_CHECK_MSG(ctx, w_packed.scalar_type() == ScalarType::Byte && w_packed.dim() == 2, InvalidArgument, out,
                      "ternary_linear: w_packed must be uint8 [N, Kq]");
  ET_KERNEL_CHECK_MSG(ctx, w_scale.scalar_type() == ScalarType::Float && w_scale.numel() == 1, InvalidArgument, out,
                      "ternary_linear: w_scale must be one float32");
  const int64_t k = in_features;
  const int64_t n = w_packed.size(0), kq = w_packed.size(1);
  ET_KERNEL_CHECK_MSG(ctx, x.dim() >= 1 && x.size(x.dim() - 1) == k && kq * 4 >= k, InvalidArgument, out,
                      "ternary_linear: x's last dimension must be in_features <= 4 * Kq");

  SizesType sizes[executorch::runtime::kTensorDimensionLimit];
  for (ssize_t d = 0; d + 1 < x.dim(); ++d) sizes[d] = x.size(d);
  sizes[x.dim() - 1] = static_cast<SizesType>(n);
  ET_KERNEL_CHECK_MSG(ctx, executorch::runtime::resize_tensor(out, {sizes, static_cast<size_t>(x.dim())}) == Error::Ok,
                      InvalidArgument, out, "ternary_linear: cannot resize the output");

  const int64_t tokens = x.numel() / std::max<int64_t>(k, 1);
  const float* xs = x.const_data_ptr<float>();
  const uint8_t* w = w_packed.const_data_ptr<uint8_t>();
  const float scale = w_scale.const_data_ptr<float>()[0];
  float* o = out.mutable_data_ptr<float>();

  std::vector<int8_t> codes(static_cast<size_t>(tokens * 4 * kq));
  std::vector<float> act_scale(static_cast<size_t>(tokens));
  for (int64_t t = 0; t < tokens; ++t) act_scale[t] = QuantizeToken(xs + t * k, k, 4 * kq, codes.data() + t * 4 * kq);

  // Output rows in parallel; every token reuses a row while it is in cache.
  executorch::extension::parallel_for(0, n, std::max<int64_t>(1, 16384 / std::max<int64_t>(kq, 1)),
                                      [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const uint8_t* row = w + r * kq;
      for (int64_t t = 0; t < tokens; ++t) {
        const float acc = static_cast<float>(DotRow(row, codes.data() + t * 4 * kq, kq));
        o[t * n + r] = acc / act_scale[t] * scale;
      }
    }
  });
  return out;
}

}  // namespace edgebit_executorch

EXECUTORCH_LIBRARY(edgebit, "ternary_linear.out", edgebit_executorch::ternary_linear_out);
