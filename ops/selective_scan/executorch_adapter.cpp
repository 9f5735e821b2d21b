// ExecuTorch adapter of edgebit::selective_scan.out (Mamba-2's recurrence, SPEC.md; the math is kernel.h).
//
// The op has two out tensors (y, final_state). EXECUTORCH_LIBRARY's unboxing wrapper accepts exactly one, so this
// kernel is registered with a boxed function over the argument stack the ExecuTorch emitter writes for out variants:
// the 7 inputs, the out tensors y and final_state, then the returned tensor list (aliases of y and final_state).
#include "common/executorch_ops.h"
#include "selective_scan/kernel.h"

namespace edgebit_executorch {

using executorch::runtime::EValue;
using executorch::runtime::Span;

namespace kernel = edgebit_kernels::selective_scan;

void selective_scan_out(KernelRuntimeContext& ctx, const Tensor& x, const Tensor& dt, const Tensor& A,
                        const Tensor& B, const Tensor& C, const Tensor& D, const Tensor& state, Tensor& y,
                        Tensor& final_state) {
  ET_KERNEL_CHECK_MSG(ctx, AllFloat({&x, &dt, &A, &B, &C, &D, &state, &y, &final_state}), InvalidArgument, ,
                      "selective_scan: all tensors must be float32");
  const Dims xs = Shape(x), bs = Shape(B), ss = Shape(state);
  EDGEBIT_ET_CHECK_SHAPES(ctx, "selective_scan", kernel::ShapeError(xs, Shape(dt), A.numel(), bs, Shape(C),
                                                                    D.numel(), ss), );
  ET_KERNEL_CHECK_MSG(ctx, Resize(y, xs) && Resize(final_state, ss), InvalidArgument, ,
                      "selective_scan: cannot resize the outputs");
  kernel::Run(kernel::MakeProblem(xs, bs, x.const_data_ptr<float>(), dt.const_data_ptr<float>(),
                                  A.const_data_ptr<float>(), B.const_data_ptr<float>(), C.const_data_ptr<float>(),
                                  D.const_data_ptr<float>(), state.const_data_ptr<float>(), y.mutable_data_ptr<float>(),
                                  final_state.mutable_data_ptr<float>()),
              EtParallel{});
}

namespace {

constexpr int kInputs = 7;

void SelectiveScanBoxed(KernelRuntimeContext& ctx, Span<EValue*> stack) {
  ET_KERNEL_CHECK_MSG(ctx, stack.size() >= kInputs + 2, InvalidArgument, ,
                      "selective_scan.out: expected 7 inputs and 2 out tensors");
  for (size_t i = 0; i < kInputs + 2; ++i)
    ET_KERNEL_CHECK_MSG(ctx, stack[i]->isTensor(), InvalidArgument, , "selective_scan.out: argument %zu is no tensor",
                        i);
  selective_scan_out(ctx, stack[0]->toTensor(), stack[1]->toTensor(), stack[2]->toTensor(), stack[3]->toTensor(),
                     stack[4]->toTensor(), stack[5]->toTensor(), stack[6]->toTensor(), stack[kInputs]->toTensor(),
                     stack[kInputs + 1]->toTensor());
}

const auto registered = executorch::runtime::register_kernel(
    executorch::runtime::Kernel("edgebit::selective_scan.out", SelectiveScanBoxed));

}  // namespace

}  // namespace edgebit_executorch
