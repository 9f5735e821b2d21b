// TVM adapter of edgebit::q4_linear (SPEC.md; the math is kernel.h): the model library's TensorIR calls
// edgebit_q4_linear through call_extern with the buffers' data pointers and the shapes it has checked, and this
// object is linked into model.so. The same kernel as ONNX Runtime's and ExecuTorch's, on TVM's thread pool.
#include "common/tvm_parallel.h"
#include "q4_matmul/kernel.h"

extern "C" int edgebit_q4_linear(const float* x, const uint8_t* w_codes, const float* w_scale, float* out,
                                 int64_t tokens, int64_t in_features, int64_t out_features, int64_t padded,
                                 int64_t block) {
  namespace kernel = edgebit_kernels::q4_matmul;
  kernel::Run(kernel::Problem{x, w_codes, w_scale, out, tokens, in_features, out_features, padded, block},
              edgebit_kernels::TvmParallel{});
  return 0;
}
