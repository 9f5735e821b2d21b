// TVM adapter of edgebit::binary_linear (SPEC.md; the math is kernel.h): the model library's TensorIR calls
// edgebit_binary_linear through call_extern with the buffers' data pointers and the shapes it has checked, and this
// object is linked into model.so. The same kernel as ONNX Runtime's and ExecuTorch's, on TVM's thread pool.
#include "common/tvm_parallel.h"
#include "binary_matmul/kernel.h"

extern "C" int edgebit_binary_linear(const float* x, const uint8_t* w_signs, const float* alpha, const float* beta,
                                     float* out, int64_t tokens, int64_t in_features, int64_t out_features,
                                     int64_t kq) {
  namespace kernel = edgebit_kernels::binary_matmul;
  kernel::Run(kernel::Problem{x, w_signs, alpha, beta, out, tokens, in_features, out_features, kq},
              edgebit_kernels::TvmParallel{});
  return 0;
}
