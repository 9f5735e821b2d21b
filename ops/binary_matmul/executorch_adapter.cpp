// ExecuTorch adapter of edgebit::binary_linear.out (FBI-Linear, SPEC.md; the math, with its SIMD paths, is kernel.h).
#include "binary_matmul/kernel.h"
#include "common/executorch_ops.h"

namespace edgebit_executorch {

namespace kernel = edgebit_kernels::binary_matmul;

Tensor& binary_linear_out(KernelRuntimeContext& ctx, const Tensor& x, const Tensor& w_signs, const Tensor& alpha,
                          const Tensor& beta, int64_t in_features, Tensor& out) {
  ET_KERNEL_CHECK_MSG(ctx, AllFloat({&x, &alpha, &beta, &out}) && w_signs.scalar_type() == ScalarType::Byte,
                      InvalidArgument, out, "binary_linear: x, alpha, beta and out must be float32, w_signs uint8");
  const Dims xs = Shape(x), ws = Shape(w_signs);
  EDGEBIT_ET_CHECK_SHAPES(ctx, "binary_linear", kernel::ShapeError(xs, ws, alpha.numel(), beta.numel(), in_features),
                          out);
  ET_KERNEL_CHECK_MSG(ctx, Resize(out, edgebit_kernels::WithLastDim(xs, ws[0])), InvalidArgument, out,
                      "binary_linear: cannot resize the output");
  kernel::Run(kernel::MakeProblem(xs, ws, x.const_data_ptr<float>(), w_signs.const_data_ptr<uint8_t>(),
                                  alpha.const_data_ptr<float>(), beta.const_data_ptr<float>(),
                                  out.mutable_data_ptr<float>()),
              EtParallel{});
  return out;
}

}  // namespace edgebit_executorch

EXECUTORCH_LIBRARY(edgebit, "binary_linear.out", edgebit_executorch::binary_linear_out);
