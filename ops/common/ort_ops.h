// Shared pieces of edgebit's ONNX Runtime custom-op library (domain "edgebit"): the op descriptors each
// ops/<op>/ort_kernel.cc defines, and the helpers they use to turn C++ errors into ORT statuses.
//
// Built with ORT_API_MANUAL_INIT: the library never links libonnxruntime; RegisterCustomOps receives the API table
// of whichever ORT loads it (C API >= ORT_API_VERSION of the headers, which newer runtimes keep providing).
#pragma once

#include <onnxruntime_cxx_api.h>

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace edgebit_ort {

inline constexpr const char* kDomain = "edgebit";

// The op descriptors (static objects, alive as long as the library is loaded).
const OrtCustomOp* TernaryMatMulOp();
const OrtCustomOp* BinaryMatMulOp();
const OrtCustomOp* SelectiveScanOp();

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

inline void Require(bool condition, const std::string& message) {
  if (!condition) throw std::invalid_argument(message);
}

inline std::string ShapeText(const std::vector<int64_t>& shape) {
  std::string text = "[";
  for (size_t i = 0; i < shape.size(); ++i) text += (i ? ", " : "") + std::to_string(shape[i]);
  return text + "]";
}

// Splits `total` items into tasks of `grain` and runs them on ORT's intra-op thread pool (serially with 1 thread).
template <class Fn>
void ParallelChunks(Ort::KernelContext& ctx, int64_t total, int64_t grain, Fn&& fn) {
  struct Job {
    Fn* fn;
    int64_t total, grain;
  } job{&fn, total, grain};
  int64_t tasks = (total + grain - 1) / grain;
  if (tasks <= 1) {
    fn(int64_t{0}, total);
    return;
  }
  ctx.ParallelFor(
      [](void* data, size_t task) {
        auto* j = static_cast<Job*>(data);
        int64_t begin = static_cast<int64_t>(task) * j->grain;
        (*j->fn)(begin, std::min(j->total, begin + j->grain));
      },
      static_cast<size_t>(tasks), 0, &job);
}

}  // namespace edgebit_ort
