// ExecuTorch adapter of edgebit::q4_linear.out (the 4-bit output head, SPEC.md; the math is kernel.h).
#include "q4_matmul/kernel.h"
#include "common/executorch_ops.h"

namespace edgebit_executorch {

namespace kernel = edgebit_kernels::q4_matmul;

Tensor& q4_linear_out(KernelRuntimeContext& ctx, const Tensor& x, const Tensor& w_codes, const Tensor& w_scale,
                        int64_t in_features, int64_t block_size, Tensor& out) {
  ET_KERNEL_CHECK_MSG(ctx, AllFloat({&x, &w_scale, &out}) && w_codes.scalar_type() == ScalarType::Byte,
                      InvalidArgument, out, "q4_linear: x, w_scale and out must be float32, w_codes uint8");
  const Dims xs = Shape(x), ws = Shape(w_codes);
  EDGEBIT_ET_CHECK_SHAPES(ctx, "q4_linear", kernel::ShapeError(xs, ws, Shape(w_scale), in_features, block_size),
                          out);
  ET_KERNEL_CHECK_MSG(ctx, Resize(out, edgebit_kernels::WithLastDim(xs, ws[0])), InvalidArgument, out,
                      "q4_linear: cannot resize the output");
  kernel::Run(kernel::MakeProblem(xs, ws, x.const_data_ptr<float>(), w_codes.const_data_ptr<uint8_t>(),
                                  w_scale.const_data_ptr<float>(), block_size, out.mutable_data_ptr<float>()),
              EtParallel{});
  return out;
}

}  // namespace edgebit_executorch

EXECUTORCH_LIBRARY(edgebit, "q4_linear.out", edgebit_executorch::q4_linear_out);
