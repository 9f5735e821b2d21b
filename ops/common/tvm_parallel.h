// The kernels' `parallel(total, grain, fn)` (kernel_common.h) on TVM's thread pool, for the C++ kernels a TVM model
// library links in (ops/<op>/tvm_adapter.cc, called from TensorIR through call_extern). The rows are cut into
// kChunksPerTask contiguous chunks per thread, in whole grains, and each of the TVM_NUM_THREADS tasks claims the next
// chunk until none is left: a thread still streams long runs of its own rows, and one that joins late (TVM's worker
// notices a launch some microseconds after the calling thread starts its part) takes fewer chunks instead of keeping
// the other waiting. With one fixed share each, the calling thread of a 2-thread 2B-4T decode step spent ~14 % of the
// step waiting for the worker's share (sched_yield in TVM's wait loop, measured with perf on a Zen 4 host).
//
// TVMBackendParallelLaunch is exported by libtvm_runtime.so (c_backend_api.h, the entry TVM's own parallel loops
// call); it is declared here so the adapters build without TVM's C++ headers, for every target.
#pragma once

#include <algorithm>
#include <atomic>
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
  static constexpr int64_t kChunksPerTask = 4;

  template <class Fn>
  void operator()(int64_t total, int64_t grain, Fn&& fn) const {
    struct Job {
      Fn* fn;
      int64_t total, grain;
      std::atomic<int64_t> next;
    } job{&fn, total, std::max<int64_t>(grain, 1), {0}};
    if (total <= job.grain) {
      fn(RowRange{0, total});
      return;
    }
    TVMBackendParallelLaunch(
        [](int, TVMParallelGroupEnv* env, void* data) -> int {
          auto* j = static_cast<Job*>(data);
          // every task computes the same chunk size: whole grains, kChunksPerTask chunks per task or more
          const int64_t grains = (j->total + j->grain - 1) / j->grain;
          const int64_t chunks = std::min<int64_t>(grains, kChunksPerTask * std::max<int32_t>(env->num_task, 1));
          const int64_t chunk = (grains + chunks - 1) / chunks * j->grain;
          for (;;) {
            const int64_t begin = j->next.fetch_add(chunk, std::memory_order_relaxed);
            if (begin >= j->total) return 0;
            (*j->fn)(RowRange{begin, std::min(j->total, begin + chunk)});
          }
        },
        &job, 0);
  }
};

}  // namespace edgebit_kernels
