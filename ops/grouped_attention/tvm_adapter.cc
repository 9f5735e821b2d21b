// TVM adapter of edgebit::grouped_attention (SPEC.md; the math is kernel.h): the model library's TensorIR calls
// edgebit_grouped_attention (float32 cache) or edgebit_grouped_attention_f16 (float16 cache) through call_extern
// with the data pointers and the shapes it has matched; this object is linked into model.so and runs on TVM's
// thread pool.
#include "common/tvm_parallel.h"
#include "grouped_attention/kernel.h"

namespace {

template <class Element>
int RunAttention(const float* q, const void* prefix_k, const void* prefix_v, const void* new_k, const void* new_v,
                 const int64_t* positions, float* out, int64_t heads, int64_t kv_heads, int64_t tokens,
                 int64_t prefix, int64_t dim) {
  namespace kernel = edgebit_kernels::grouped_attention;
  auto rows = [](const void* data) { return static_cast<const Element*>(data); };
  kernel::Run(kernel::Problem<Element>{q, rows(prefix_k), rows(prefix_v), rows(new_k), rows(new_v), positions, out,
                                      heads, kv_heads, tokens, prefix, dim},
              edgebit_kernels::TvmParallel{});
  return 0;
}

}  // namespace

extern "C" int edgebit_grouped_attention(const float* q, const void* prefix_k, const void* prefix_v,
                                         const void* new_k, const void* new_v, const int64_t* positions, float* out,
                                         int64_t heads, int64_t kv_heads, int64_t tokens, int64_t prefix,
                                         int64_t dim) {
  return RunAttention<float>(q, prefix_k, prefix_v, new_k, new_v, positions, out, heads, kv_heads, tokens, prefix,
                             dim);
}

extern "C" int edgebit_grouped_attention_f16(const float* q, const void* prefix_k, const void* prefix_v,
                                             const void* new_k, const void* new_v, const int64_t* positions,
                                             float* out, int64_t heads, int64_t kv_heads, int64_t tokens,
                                             int64_t prefix, int64_t dim) {
  return RunAttention<edgebit_kernels::grouped_attention::Half>(q, prefix_k, prefix_v, new_k, new_v, positions, out, heads, kv_heads, tokens,
                                prefix, dim);
}
