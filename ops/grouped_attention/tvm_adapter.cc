// TVM adapter of edgebit::grouped_attention (SPEC.md; the math is kernel.h): the model library's TensorIR calls
// edgebit_grouped_attention through call_extern with the data pointers and the shapes it has matched; this object
// is linked into model.so and runs on TVM's thread pool.
#include "common/tvm_parallel.h"
#include "grouped_attention/kernel.h"

extern "C" int edgebit_grouped_attention(const float* q, const float* prefix_k, const float* prefix_v,
                                         const float* new_k, const float* new_v, const int64_t* positions, float* out,
                                         int64_t heads, int64_t kv_heads, int64_t tokens, int64_t prefix,
                                         int64_t dim) {
  namespace kernel = edgebit_kernels::grouped_attention;
  kernel::Run(kernel::Problem{q, prefix_k, prefix_v, new_k, new_v, positions, out, heads, kv_heads, tokens, prefix,
                              dim},
              edgebit_kernels::TvmParallel{});
  return 0;
}
