// ExecuTorch kernel of edgebit::selective_scan.out (SPEC.md in this folder): the Mamba-2 recurrence
//   S = S * exp(dt * A[h]) + (dt * x[t,h]) (outer) B[t,g],   y[t,h] = S @ C[t,g] + D[h] * x[t,h]
// token by token (prefill and decode alike), heads split over ExecuTorch's thread pool.
//
// The op has two out tensors (y, final_state). EXECUTORCH_LIBRARY's unboxing wrapper accepts exactly one, so this
// kernel is registered with a boxed function over the argument stack the ExecuTorch emitter writes for out variants:
// the 7 inputs, the out tensors y and final_state, then the returned tensor list (aliases of y and final_state).
#include <executorch/extension/kernel_util/make_boxed_from_unboxed_functor.h>
#include <executorch/runtime/core/exec_aten/util/tensor_util.h>
#include <executorch/runtime/kernel/kernel_includes.h>
#include <executorch/runtime/kernel/thread_parallel_interface.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

namespace edgebit_executorch {

using executorch::aten::ScalarType;
using executorch::aten::Tensor;
using executorch::runtime::EValue;
using executorch::runtime::Error;
using executorch::runtime::KernelRuntimeContext;
using executorch::runtime::Span;

void selective_scan_out(KernelRuntimeContext& ctx, const Tensor& x, const Tensor& dt, const Tensor& A,
                        const Tensor& B, const Tensor& C, const Tensor& D, const Tensor& state, Tensor& y,
                        Tensor& final_state) {
  for (const Tensor* t : {&x, &dt, &A, &B, &C, &D, &state, static_cast<const Tensor*>(&y),
                          static_cast<const Tensor*>(&final_state)}) {
    ET_KERNEL_CHECK_MSG(ctx, t->scalar_type() == ScalarType::Float, InvalidArgument, , "selective_scan: all float32");
  }
  ET_KERNEL_CHECK_MSG(ctx, x.dim() == 4 && dt.dim() == 3 && B.dim() == 4 && C.dim() == 4 && state.dim() == 4,
                      InvalidArgument, , "selective_scan: x [Bt,T,H,P], dt [Bt,T,H], B/C [Bt,T,G,N], state [Bt,H,P,N]");
  const int64_t batch = x.size(0), length = x.size(1), heads = x.size(2), dim = x.size(3);
  const int64_t groups = B.size(2), size = B.size(3);
  ET_KERNEL_CHECK_MSG(ctx, groups > 0 && heads % groups == 0 && state.size(1) == heads && state.size(2) == dim &&
                      state.size(3) == size && A.numel() == heads && D.numel() == heads, InvalidArgument, ,
                      "selective_scan: inconsistent shapes");
  ET_KERNEL_CHECK_MSG(ctx, executorch::runtime::resize_tensor(y, x.sizes()) == Error::Ok &&
                      executorch::runtime::resize_tensor(final_state, state.sizes()) == Error::Ok,
                      InvalidArgument, , "selective_scan: cannot resize the outputs");

  const float* xs = x.const_data_ptr<float>();
  const float* dts = dt.const_data_ptr<float>();
  const float* as = A.const_data_ptr<float>();
  const float* bs = B.const_data_ptr<float>();
  const float* cs = C.const_data_ptr<float>();
  const float* ds = D.const_data_ptr<float>();
  float* ys = y.mutable_data_ptr<float>();
  float* s = final_state.mutable_data_ptr<float>();
  // The scan runs in place on final_state (memmove: the planner may hand the input and output the same buffer).
  std::memmove(s, state.const_data_ptr<float>(), sizeof(float) * static_cast<size_t>(state.numel()));
  const int64_t per_group = heads / groups;

  executorch::extension::parallel_for(0, batch * heads, 1, [&](int64_t begin, int64_t end) {
    for (int64_t bh = begin; bh < end; ++bh) {
      const int64_t b = bh / heads, h = bh % heads, g = h / per_group;
      float* sh = s + bh * dim * size;
      for (int64_t t = 0; t < length; ++t) {
        const int64_t bt = b * length + t;
        const float step = dts[bt * heads + h];
        const float decay = std::exp(step * as[h]);
        const float* bv = bs + (bt * groups + g) * size;
        const float* cv = cs + (bt * groups + g) * size;
        const float* xv = xs + (bt * heads + h) * dim;
        float* yv = ys + (bt * heads + h) * dim;
        for (int64_t p = 0; p < dim; ++p) {
          float* sp = sh + p * size;
          const float dx = step * xv[p];
          float out = 0.0f;
#pragma omp simd reduction(+ : out)
          for (int64_t n = 0; n < size; ++n) {
            sp[n] = sp[n] * decay + dx * bv[n];
            out += sp[n] * cv[n];
          }
          yv[p] = out + ds[h] * xv[p];
        }
      }
    }
  });
}

namespace {

constexpr int kInputs = 7;

void SelectiveScanBoxed(KernelRuntimeContext& ctx, Span<EValue*> stack) {
  ET_KERNEL_CHECK_MSG(ctx, stack.size() >= kInputs + 2, InvalidArgument, ,
                      "selective_scan.out: expected 7 inputs and 2 out tensors");
  selective_scan_out(ctx, stack[0]->toTensor(), stack[1]->toTensor(), stack[2]->toTensor(), stack[3]->toTensor(),
                     stack[4]->toTensor(), stack[5]->toTensor(), stack[6]->toTensor(), stack[kInputs]->toTensor(),
                     stack[kInputs + 1]->toTensor());
}

const auto registered = executorch::runtime::register_kernel(
    executorch::runtime::Kernel("edgebit::selective_scan.out", SelectiveScanBoxed));

}  // namespace

}  // namespace edgebit_executorch
