// ExecuTorch adapter of edgebit::ternary_linear.out (SPEC.md; the math, with its SIMD paths, is kernel.h).
#include "common/executorch_ops.h"
#include "ternary_matmul/kernel.h"

namespace edgebit_executorch {

namespace kernel = edgebit_kernels::ternary_matmul;

Tensor& ternary_linear_out(KernelRuntimeContext& ctx, const Tensor& x, const Tensor& w_packed, const Tensor& w_scale,
                           int64_t in_features, Tensor& out) {
  ET_KERNEL_CHECK_MSG(ctx, AllFloat({&x, &w_scale, &out}) && w_packed.scalar_type() == ScalarType::Byte,
                      InvalidArgument, out, "ternary_linear: x, w_scale and out must be float32, w_packed uint8");
  const Dims xs = Shape(x), ws = Shape(w_packed);
  EDGEBIT_ET_CHECK_SHAPES(ctx, "ternary_linear", kernel::ShapeError(xs, ws, w_scale.numel(), in_features), out);
  ET_KERNEL_CHECK_MSG(ctx, Resize(out, edgebit_kernels::WithLastDim(xs, ws[0])), InvalidArgument, out,
                      "ternary_linear: cannot resize the output");
  kernel::Run(kernel::MakeProblem(xs, ws, x.const_data_ptr<float>(), w_packed.const_data_ptr<uint8_t>(),
                                  w_scale.const_data_ptr<float>()[0], out.mutable_data_ptr<float>()),
              EtParallel{});
  return out;
}

}  // namespace edgebit_executorch

EXECUTORCH_LIBRARY(edgebit, "ternary_linear.out", edgebit_executorch::ternary_linear_out);
