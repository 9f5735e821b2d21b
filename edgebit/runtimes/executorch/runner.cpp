// edgebit's ExecuTorch device runner: the Module API runs model.pte's "forward" (the step graph of
// edgebit/models/step_graph.py, symbolic token count); runner_driver.h does the files and the commands. Two forms:
// BitNet's program keeps its KV caches inside (mutable buffers written in place, ExecuTorch's LLM-runner convention;
// model.conf lists no states), so a step passes tokens and position and gets logits; Bi-Mamba's takes and returns its
// conv + SSM states, which this runner carries between steps (one "state" line each in model.conf).
//
// Links only the ExecuTorch runtime libraries (no libtorch) and libedgebit_executorch_ops.so (the edgebit::
// kernels), all found in $ORIGIN/../lib. Threads: EDGEBIT_NUM_THREADS (default 1) sizes ExecuTorch's shared thread
// pool, which the XNNPACK delegate and the edgebit kernels both use.
#include <executorch/extension/module/module.h>
#include <executorch/extension/tensor/tensor.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "runner_driver.h"

// The wheel ships the thread pool library but not its header: the two entry points used here.
namespace executorch::extension::threadpool {
class ThreadPool {
 public:
  bool _unsafe_reset_threadpool(uint32_t num_threads);
  size_t get_thread_count() const;
};
ThreadPool* get_threadpool();
}  // namespace executorch::extension::threadpool

namespace {

using executorch::aten::ScalarType;
using executorch::aten::SizesType;
using executorch::extension::from_blob;
using executorch::extension::Module;
using executorch::runtime::EValue;
using executorch::runtime::Error;

const char* const kMethod = "forward";

std::vector<SizesType> Sizes(const std::vector<int64_t>& shape) {
  return std::vector<SizesType>(shape.begin(), shape.end());
}

void SetThreads() {
  const int threads = edgebit::ThreadCount();
  auto* pool = executorch::extension::threadpool::get_threadpool();
  if (pool != nullptr && pool->get_thread_count() != static_cast<size_t>(threads))
    pool->_unsafe_reset_threadpool(static_cast<uint32_t>(threads));
}

class Model {
 public:
  Model(const std::string& dir, const edgebit::RunnerConf& conf)
      : conf_(conf), module_(dir + "/model.pte", Module::LoadMode::Mmap) {
    SetThreads();  // before the method loads: XNNPACK takes the pool when its delegate initializes
    const Error error = module_.load_method(kMethod);
    if (error != Error::Ok)
      throw std::runtime_error("cannot load " + dir + "/model.pte (ExecuTorch error " +
                               std::to_string(static_cast<int>(error)) + ")");
    // model.conf must describe this program: tokens, the position if it takes one, one input per carried state.
    const auto meta = module_.method_meta(kMethod);
    const size_t expected =
        1 + (conf_.takes_position ? 1 : 0) + (conf_.takes_logit_rows ? 1 : 0) + conf_.state_shapes.size();
    if (meta.ok() && meta->num_inputs() != expected)
      throw edgebit::InputError(dir + "/model.conf describes " + std::to_string(expected) + " inputs but model.pte takes " +
                                std::to_string(meta->num_inputs()) + "; export the bundle again");
    for (const auto& shape : conf_.state_shapes) states_.emplace_back(edgebit::NumElements(shape), 0.0f);
  }

  // States inside the program need no reset: a new sequence starts at position 0 and reads only the slots it wrote.
  void ResetState() {
    for (auto& state : states_) std::fill(state.begin(), state.end(), 0.0f);
  }

  const float* Step(const int64_t* tokens, int64_t count, int64_t position, bool last_only, int64_t* vocab) {
    std::vector<int64_t> ids(tokens, tokens + count);
    int64_t start = position;
    std::vector<int64_t> rows = edgebit::LogitRowsInput(count, last_only);
    std::vector<executorch::extension::TensorPtr> keep;  // inputs stay alive through execute
    keep.push_back(from_blob(ids.data(), {1, static_cast<SizesType>(count)}, ScalarType::Long));
    if (conf_.takes_position) keep.push_back(from_blob(&start, {1}, ScalarType::Long));
    if (conf_.takes_logit_rows)
      keep.push_back(from_blob(rows.data(), {static_cast<SizesType>(rows.size())}, ScalarType::Long));
    for (size_t i = 0; i < states_.size(); ++i)
      keep.push_back(from_blob(states_[i].data(), Sizes(conf_.state_shapes[i]), ScalarType::Float));
    std::vector<EValue> inputs(keep.begin(), keep.end());
    auto result = module_.execute(kMethod, inputs);
    if (!result.ok())
      throw std::runtime_error("model.pte forward failed (ExecuTorch error " +
                               std::to_string(static_cast<int>(result.error())) + ")");
    const auto& outputs = *result;
    if (outputs.size() != 1 + states_.size()) throw std::runtime_error("model.pte returns an unexpected output count");
    if (!outputs[0].isTensor() || outputs[0].toTensor().dim() != 3)
      throw std::runtime_error("model.pte: logits are not [1, R, V]");
    const auto& logits = outputs[0].toTensor();
    *vocab = logits.size(logits.dim() - 1);
    const float* wanted =
        edgebit::LastOnly(logits.const_data_ptr<float>(), logits.size(1), count, last_only, *vocab, conf_);
    logits_.assign(wanted, wanted + (last_only ? 1 : count) * *vocab);  // the program's buffer is reused next step
    for (size_t i = 0; i < states_.size(); ++i) {
      const auto& state = outputs[1 + i].toTensor();
      if (static_cast<size_t>(state.numel()) != states_[i].size())
        throw std::runtime_error("model.pte returns a state of another size than model.conf says");
      std::memcpy(states_[i].data(), state.const_data_ptr<float>(), states_[i].size() * sizeof(float));
    }
    return logits_.data();
  }

 private:
  edgebit::RunnerConf conf_;
  Module module_;
  std::vector<std::vector<float>> states_;
  std::vector<float> logits_;
};

}  // namespace

int main(int argc, char** argv) { return edgebit::RunnerMain<Model>(argc, argv, "edgebit-runner (executorch)"); }
