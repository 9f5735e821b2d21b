// Entry point of libedgebit_ort_ops.so: ONNX Runtime calls RegisterCustomOps when an application registers the
// library (SessionOptions.register_custom_ops_library in Python, RegisterCustomOpsLibrary in C/C++). It adds the
// "edgebit" domain with TernaryMatMul, BinaryMatMul, SelectiveScan, Int8MatMul and Q4MatMul to the session options.

#include <mutex>

#include "common/ort_ops.h"

extern "C" __attribute__((visibility("default"))) OrtStatus* ORT_API_CALL
RegisterCustomOps(OrtSessionOptions* options, const OrtApiBase* api_base) {
  const OrtApi* api = api_base->GetApi(ORT_API_VERSION);
  if (api == nullptr) return nullptr;  // cannot even report: ORT older than the headers; sessions then lack the ops
  Ort::InitApi(api);
  // One domain for the whole process: ORT requires it to outlive every session that uses it.
  static OrtCustomOpDomain* domain = nullptr;
  static OrtStatus* failure = nullptr;
  static std::once_flag once;
  std::call_once(once, [&] {
    if ((failure = api->CreateCustomOpDomain(edgebit_ort::kDomain, &domain)) != nullptr) return;
    for (const OrtCustomOp* op : {edgebit_ort::TernaryMatMulOp(), edgebit_ort::BinaryMatMulOp(),
                                  edgebit_ort::SelectiveScanOp(), edgebit_ort::Int8MatMulOp(),
                                  edgebit_ort::Q4MatMulOp()})
      if ((failure = api->CustomOpDomain_Add(domain, op)) != nullptr) return;
  });
  if (failure != nullptr)
    return api->CreateStatus(api->GetErrorCode(failure), api->GetErrorMessage(failure));
  return api->AddCustomOpDomain(options, domain);
}
