// edgebit-runner for the TVM runtime: runs runtimes/tvm/ of a bundle without Python (commands: runner_driver.h).
//
// The directory holds model.so (a Relax VM executable whose "main" is the model's step
// (tokens [1,T], [position [1],] [logit_rows [R],] states..., weights...) -> (logits [1,R,V], states...)), weights.params (TVM's
// parameter format; names sort into argument order) and model.conf. "cache" states (runner_driver.h; float32 or
// float16) go in as tensors over the filled rows of the runner's buffers and come back as the new rows.

#include <tvm/ffi/container/array.h>
#include <tvm/ffi/container/map.h>
#include <tvm/ffi/container/tensor.h>
#include <tvm/ffi/error.h>
#include <tvm/ffi/extra/module.h>
#include <tvm/ffi/function.h>
#include <tvm/ffi/string.h>

#include "runner_driver.h"

namespace ffi = tvm::ffi;

namespace {

struct HostAllocator {
  void AllocData(DLTensor* t) {
    size_t bytes = ffi::GetDataSize(*t);
    if (posix_memalign(&t->data, 64, bytes ? bytes : 64) != 0) throw std::bad_alloc();
  }
  void FreeData(DLTensor* t) { free(t->data); }
};

ffi::Tensor NewTensor(const std::vector<int64_t>& shape, DLDataType dtype) {
  return ffi::Tensor::FromNDAlloc(HostAllocator(), ffi::ShapeView(shape.data(), shape.size()), dtype,
                                  DLDevice{kDLCPU, 0});
}

// A tensor over memory someone else owns (a prefix of a cache buffer): nothing allocated, nothing freed.
struct BorrowedMemory {
  void* data;
  void AllocData(DLTensor* t) { t->data = data; }
  void FreeData(DLTensor*) {}
};

const DLDataType kInt64{kDLInt, 64, 1};
const DLDataType kFloat32{kDLFloat, 32, 1};
const DLDataType kFloat16{kDLFloat, 16, 1};

class TvmModel {
 public:
  TvmModel(const std::string& dir, const edgebit::RunnerConf& conf)
      : conf_(conf), caches_(conf), vm_(LoadVm(dir + "/model.so")) {
    vm_->GetFunction("vm_initialization").value()(static_cast<int>(kDLCPU), 0, 2 /* pooled allocator */);
    step_ = vm_->GetFunction("main").value();
    auto load = ffi::Function::GetGlobal("runtime.LoadParamsFromFile");
    if (!load) throw std::runtime_error("libtvm_runtime lacks runtime.LoadParamsFromFile");
    auto params = (*load)(dir + "/weights.params").cast<ffi::Map<ffi::String, ffi::Tensor>>();
    std::vector<std::pair<std::string, ffi::Tensor>> sorted;
    for (const auto& kv : params) sorted.emplace_back(std::string(kv.first), kv.second);
    std::sort(sorted.begin(), sorted.end(), [](auto& a, auto& b) { return a.first < b.first; });
    for (auto& kv : sorted) weights_.push_back(kv.second);
  }

  const float* Step(const int64_t* tokens, int64_t count, int64_t position, bool last_only, int64_t* vocab) {
    ffi::Tensor ids = NewTensor({1, count}, kInt64);
    std::memcpy(ids.data_ptr(), tokens, count * sizeof(int64_t));
    ffi::Tensor pos = NewTensor({1}, kInt64);
    *static_cast<int64_t*>(pos.data_ptr()) = position;
    const std::vector<int64_t> row_indices = edgebit::LogitRowsInput(count, last_only);
    ffi::Tensor rows = NewTensor({static_cast<int64_t>(row_indices.size())}, kInt64);
    std::memcpy(rows.data_ptr(), row_indices.data(), row_indices.size() * sizeof(int64_t));
    std::vector<ffi::Tensor> prefixes;  // cache states: views of the filled rows
    for (size_t i = 0; i < states_.size(); ++i) {
      if (!caches_.Has(i)) continue;
      std::vector<int64_t> shape = conf_.state_shapes[i];
      shape[0] = position;
      prefixes.push_back(ffi::Tensor::FromNDAlloc(BorrowedMemory{caches_.Prefix(i)},
                                                  ffi::ShapeView(shape.data(), shape.size()),
                                                  conf_.state_half[i] ? kFloat16 : kFloat32, DLDevice{kDLCPU, 0}));
    }
    std::vector<ffi::AnyView> args{ids};
    if (conf_.takes_position) args.push_back(pos);
    if (conf_.takes_logit_rows) args.push_back(rows);
    for (size_t i = 0, c = 0; i < states_.size(); ++i) args.push_back(caches_.Has(i) ? prefixes[c++] : states_[i]);
    for (auto& w : weights_) args.push_back(w);
    ffi::Any result;
    step_.CallPacked(ffi::PackedArgs(args.data(), static_cast<int>(args.size())), &result);
    auto outputs = result.cast<ffi::Array<ffi::Tensor>>();
    if (outputs.size() != 1 + states_.size()) throw std::runtime_error("model.so returns an unexpected output count");
    for (size_t i = 0; i < states_.size(); ++i) {
      ffi::Tensor out = outputs[i + 1];
      if (caches_.Has(i))
        caches_.Append(i, out.data_ptr(), out.ndim() ? out.shape()[0] : 0, ffi::GetDataSize(out), position);
      else
        states_[i] = out;
    }
    logits_ = outputs[0];
    if (logits_.ndim() != 3) throw std::runtime_error("model.so: logits are not [1, R, V]");
    *vocab = logits_.shape()[2];
    return edgebit::LastOnly(static_cast<const float*>(logits_.data_ptr()), logits_.shape()[1], count, last_only,
                             *vocab, conf_);
  }

  void ResetState() {  // cache states need none: rows past the position are never read
    states_.clear();
    for (size_t i = 0; i < conf_.state_shapes.size(); ++i) {
      const auto& shape = conf_.state_shapes[i];
      ffi::Tensor t = NewTensor(caches_.Has(i) ? std::vector<int64_t>{1} : shape, kFloat32);  // placeholder
      std::memset(t.data_ptr(), 0, ffi::GetDataSize(t));
      states_.push_back(t);
    }
  }

 private:
  static ffi::Module LoadVm(const std::string& library) {
    ffi::Module lib = ffi::Module::LoadFromFile(library);
    return lib->GetFunction("vm_load_executable").value()().cast<ffi::Module>();
  }

  edgebit::RunnerConf conf_;
  edgebit::AppendCaches caches_;
  ffi::Module vm_;
  ffi::Function step_;
  std::vector<ffi::Tensor> weights_;
  std::vector<ffi::Tensor> states_;
  ffi::Tensor logits_;
};

}  // namespace

int main(int argc, char** argv) { return edgebit::RunnerMain<TvmModel>(argc, argv, "edgebit-runner (tvm)"); }
