// ONNX Runtime side of edgebit's custom-op library (libedgebit_ort_ops.so, domain "edgebit"): the op descriptors
// each ops/<op>/ort_adapter.cc defines (registered by ort_register.cc), and what the adapters share: turning C++
// errors into ORT statuses, shape checks, and running a kernel's row ranges on ORT's intra-op thread pool.
//
// Built with ORT_API_MANUAL_INIT: the library never links libonnxruntime; RegisterCustomOps receives the API table
// of whichever ORT loads it (C API >= ORT_API_VERSION of the headers, which newer runtimes keep providing).
#pragma once

#include <onnxruntime_cxx_api.h>

#include <stdexcept>

#include "common/kernel_common.h"

namespace edgebit_ort {

using edgebit_kernels::Dims;
using edgebit_kernels::RowRange;

inline constexpr const char* kDomain = "edgebit";

// The op descriptors (static objects, alive as long as the library is loaded).
const OrtCustomOp* TernaryMatMulOp();
const OrtCustomOp* BinaryMatMulOp();
const OrtCustomOp* SelectiveScanOp();
const OrtCustomOp* Int8MatMulOp();
const OrtCustomOp* Q4MatMulOp();

// Runs `body`, converting any exception into an OrtStatus (nullptr on success); exceptions must not cross the C ABI.
template <class Body>
OrtStatusPtr Guarded(const char* op, Body&& body) {
  try {
    body();
    return nullptr;
  } catch (const std::exception& e) {
    return Ort::GetApi().CreateStatus(ORT_INVALID_ARGUMENT, (std::string(op) + ": " + e.what()).c_str());
  }
}

// A kernel's ShapeError (empty when the shapes fit) as an exception, which Guarded turns into a status.
inline void RequireShapes(const std::string& error) {
  if (!error.empty()) throw std::invalid_argument(error);
}

inline Dims Shape(const Ort::ConstValue& value) { return value.GetTensorTypeAndShapeInfo().GetShape(); }
inline int64_t Count(const Ort::ConstValue& value) {
  return static_cast<int64_t>(value.GetTensorTypeAndShapeInfo().GetElementCount());
}

// The kernels' `parallel(total, grain, fn)` (kernel_common.h) on ORT's intra-op thread pool (serial with 1 thread).
struct OrtParallel {
  Ort::KernelContext& ctx;

  template <class Fn>
  void operator()(int64_t total, int64_t grain, Fn&& fn) const {
    struct Job {
      Fn* fn;
      int64_t total, grain;
    } job{&fn, total, grain};
    const int64_t tasks = (total + grain - 1) / grain;
    if (tasks <= 1) {
      fn(RowRange{0, total});
      return;
    }
    ctx.ParallelFor(
        [](void* data, size_t task) {
          auto* j = static_cast<Job*>(data);
          const int64_t begin = static_cast<int64_t>(task) * j->grain;
          (*j->fn)(RowRange{begin, std::min(j->total, begin + j->grain)});
        },
        static_cast<size_t>(tasks), 0, &job);
  }
};

// The descriptor boilerplate every op shares: float inputs except the listed uint8 one, float outputs, and
// kernels created from the `in_features` attribute when the op has one.
template <class Op, class Kernel, size_t kInputs, size_t kOutputs, int kUint8Input = -1>
struct FloatOp : Ort::CustomOpBase<Op, Kernel, true> {
  size_t GetInputTypeCount() const { return kInputs; }
  ONNXTensorElementDataType GetInputType(size_t index) const {
    return static_cast<int>(index) == kUint8Input ? ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8
                                                  : ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
  }
  size_t GetOutputTypeCount() const { return kOutputs; }
  ONNXTensorElementDataType GetOutputType(size_t) const { return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT; }
};

// A kernel holding the `in_features` attribute (checked against the inputs' shapes on every call).
template <class Kernel>
OrtStatusPtr CreateWithInFeatures(const char* op, const OrtKernelInfo* info, void** kernel) {
  return Guarded(op, [&] {
    const int64_t k = Ort::ConstKernelInfo(info).GetAttribute<int64_t>("in_features");
    if (k <= 0) throw std::invalid_argument("in_features must be positive, got " + std::to_string(k));
    *kernel = new Kernel{k};
  });
}

}  // namespace edgebit_ort
