// TVM adapter of edgebit::ternary_linear (SPEC.md; the math is kernel.h): the model library's prefill path (more
// than one token) calls edgebit_ternary_linear through call_extern, so a prompt runs the C++ kernel's register-blocked
// GEMM; a decode step (one token) does too on AVX-512 VNNI (kernel.h's four-row GEMV), and stays on the TensorIR
// GEMV micro-kernel elsewhere (arm64's sdot loop has not been measured against it on a board).
#include "common/tvm_parallel.h"
#include "ternary_matmul/kernel.h"

extern "C" int edgebit_ternary_linear(const float* x, const uint8_t* w_packed, const float* w_scale, float* out,
                                      int64_t tokens, int64_t in_features, int64_t out_features, int64_t packed) {
  namespace kernel = edgebit_kernels::ternary_matmul;
  kernel::Run(kernel::Problem{x, w_packed, *w_scale, out, tokens, in_features, out_features, packed},
              edgebit_kernels::TvmParallel{});
  return 0;
}
