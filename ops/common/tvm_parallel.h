// The kernels' `parallel(total, grain, fn)` (kernel_common.h) on TVM's thread pool, for the C++ kernels a TVM model
// library links in (ops/<op>/tvm_adapter.cc, called from TensorIR through call_extern). TVM_NUM_THREADS tasks each
// take one contiguous share of the rows, in whole grains: each thread streams its own part of the weights.
//
// TVMBackendParallelLaunch is exported by libtvm_runtime.so (c_backend_api.h, the entry TVM's own parallel loops
// call); it is declared here so the adapters build without TVM's C++ headers, for every target.
#pragma once

#include <algorithm>
#include <cstdint>

#include "common/kernel_common.h"

extern "C" {
typedef struct {
  void* sync_handle;
  int32_t num_task;
} TVMParallelGroupEnv;
typedef int (*FTVMParallelLambda)(int task_id, TVMParallelGroupEnv* penv, void* cdata);
int TVMBackendParallelLaunch(FTVMParallelLambda flambda, void* cdata, int num_task);
}

namespace edgebit_kernels {

struct TvmParallel {
  template <class Fn>
  void operator()(int64_t total, int64_t grain, Fn&& fn) const {
    struct Job {
      Fn* fn;
      int64_t total, grain;
    } job{&fn, total, std::max<int64_t>(grain, 1)};
    if (total <= job.grain) {
      fn(RowRange{0, total});
      return;
    }
    TVMBackendParallelLaunch(
        [](int task, TVMParallelGroupEnv* env, void* data) -> int {
          const auto* j = static_cast<const Job*>(data);
          const int64_t grains = (j->total + j->grain - 1) / j->grain;
          const int64_t begin = grains * task / env->num_task * j->grain;
          const int64_t end = std::min(j->total, grains * (task + 1) / env->num_task * j->grain);
          if (begin < end) (*j->fn)(RowRange{begin, end});
          return 0;
        },
        &job, 0);
  }
};

}  // namespace edgebit_kernels
