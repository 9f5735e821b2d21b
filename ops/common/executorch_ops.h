// ExecuTorch side of edgebit's kernel library (libedgebit_executorch_ops.so): what the ops/<op>/executorch_adapter.cpp
// share: tensor shapes as kernel Dims, and running a kernel's row ranges on ExecuTorch's thread pool (parallel_for,
// which the runner sizes from EDGEBIT_NUM_THREADS). Each adapter registers its out variant itself.
#pragma once

#include <executorch/extension/kernel_util/make_boxed_from_unboxed_functor.h>
#include <executorch/runtime/core/exec_aten/util/tensor_util.h>
#include <executorch/runtime/kernel/kernel_includes.h>
#include <executorch/runtime/kernel/thread_parallel_interface.h>

#include "common/kernel_common.h"

namespace edgebit_executorch {

using edgebit_kernels::Dims;
using edgebit_kernels::RowRange;
using executorch::aten::ScalarType;
using executorch::aten::Tensor;
using executorch::runtime::Error;
using executorch::runtime::KernelRuntimeContext;

inline Dims Shape(const Tensor& t) { return Dims(t.sizes().begin(), t.sizes().end()); }

inline bool AllFloat(std::initializer_list<const Tensor*> tensors) {
  for (const Tensor* t : tensors)
    if (t->scalar_type() != ScalarType::Float) return false;
  return true;
}

// Resizes `out` to `shape` (the planner sized it for the largest call; decode calls are smaller).
inline bool Resize(Tensor& out, const Dims& shape) {
  executorch::aten::SizesType sizes[executorch::runtime::kTensorDimensionLimit];
  if (shape.size() > executorch::runtime::kTensorDimensionLimit) return false;
  for (size_t d = 0; d < shape.size(); ++d) sizes[d] = static_cast<executorch::aten::SizesType>(shape[d]);
  return executorch::runtime::resize_tensor(out, {sizes, shape.size()}) == Error::Ok;
}

// The kernels' `parallel(total, grain, fn)` (kernel_common.h) on ExecuTorch's thread pool.
struct EtParallel {
  template <class Fn>
  void operator()(int64_t total, int64_t grain, Fn&& fn) const {
    executorch::extension::parallel_for(0, total, grain, [&](int64_t begin, int64_t end) { fn(RowRange{begin, end}); });
  }
};

}  // namespace edgebit_executorch

// Fails the call with ExecuTorch's InvalidArgument and `message` (a std::string) unless it is empty.
#define EDGEBIT_ET_CHECK_SHAPES(ctx, op, message, retval)                                               \
  do {                                                                                                  \
    const std::string edgebit_error_ = (message);                                                       \
    ET_KERNEL_CHECK_MSG(ctx, edgebit_error_.empty(), InvalidArgument, retval, "%s: %s", op,             \
                        edgebit_error_.c_str());                                                        \
  } while (0)
