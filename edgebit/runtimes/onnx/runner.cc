// edgebit-runner for ONNX Runtime: runs runtimes/onnx-*/ of a bundle without Python (commands: runner_driver.h).
//
// The directory holds model.onnx (the step graph: inputs tokens [1,T] int64, [position [1] int64,] states...;
// outputs logits [1,T,V], states...; "cache" states (float32 or float16) go in as the filled rows of the runner's buffers and come back
// as the new rows, see runner_driver.h), model.conf, and for the custom form lib/libedgebit_ort_ops.so (the
// "edgebit" domain), which is registered when present. ConstantFolding is disabled: it would unpack the packed
// ternary/binary weights into int8 initializers at session start (4-8x the memory).

#include <onnxruntime_cxx_api.h>

#include <sys/stat.h>

#include "runner_driver.h"

namespace {

bool FileExists(const std::string& path) {
  struct stat info;
  return stat(path.c_str(), &info) == 0 && S_ISREG(info.st_mode);
}

class OrtModel {
 public:
  OrtModel(const std::string& dir, const edgebit::RunnerConf& conf)
      : conf_(conf), caches_(conf), env_(ORT_LOGGING_LEVEL_WARNING, "edgebit") {
    Ort::SessionOptions options;
    options.SetIntraOpNumThreads(edgebit::ThreadCount());
    options.SetInterOpNumThreads(1);
    options.SetExecutionMode(ORT_SEQUENTIAL);
    options.AddConfigEntry("optimization.disable_specified_optimizers", "ConstantFolding");
    const std::string ops = dir + "/lib/libedgebit_ort_ops.so";
    if (FileExists(ops)) options.RegisterCustomOpsLibrary(ops.c_str());
    session_ = Ort::Session(env_, (dir + "/model.onnx").c_str(), options);

    Ort::AllocatorWithDefaultOptions allocator;
    for (size_t i = 0; i < session_.GetInputCount(); ++i)
      input_names_.push_back(session_.GetInputNameAllocated(i, allocator).get());
    for (size_t i = 0; i < session_.GetOutputCount(); ++i)
      output_names_.push_back(session_.GetOutputNameAllocated(i, allocator).get());
    const size_t states = conf_.state_shapes.size();
    const size_t leading = 1 + (conf_.takes_position ? 1 : 0) + (conf_.takes_logit_rows ? 1 : 0);
    if (input_names_.size() != leading + states || output_names_.size() != 1 + states)
      throw std::runtime_error("model.onnx has " + std::to_string(input_names_.size()) + " inputs and " +
                               std::to_string(output_names_.size()) + " outputs; model.conf expects " +
                               std::to_string(leading + states) + " and " + std::to_string(1 + states));
    for (auto& name : input_names_) input_ptrs_.push_back(name.c_str());
    for (auto& name : output_names_) output_ptrs_.push_back(name.c_str());
  }

  const float* Step(const int64_t* tokens, int64_t count, int64_t position, bool last_only, int64_t* vocab) {
    const int64_t token_shape[2] = {1, count}, position_shape[1] = {1};
    std::vector<int64_t> rows = edgebit::LogitRowsInput(count, last_only);
    const int64_t rows_shape[1] = {static_cast<int64_t>(rows.size())};
    std::vector<Ort::Value> inputs;
    inputs.push_back(Ort::Value::CreateTensor<int64_t>(memory_, const_cast<int64_t*>(tokens), count, token_shape, 2));
    if (conf_.takes_position)
      inputs.push_back(Ort::Value::CreateTensor<int64_t>(memory_, &position, 1, position_shape, 1));
    if (conf_.takes_logit_rows)
      inputs.push_back(Ort::Value::CreateTensor<int64_t>(memory_, rows.data(), rows.size(), rows_shape, 1));
    for (size_t i = 0; i < states_.size(); ++i) {
      if (!caches_.Has(i)) {
        inputs.push_back(std::move(states_[i]));
        continue;
      }
      std::vector<int64_t> shape = conf_.state_shapes[i];  // the filled rows of the cache, no copy
      shape[0] = position;
      inputs.push_back(Ort::Value::CreateTensor(
          memory_, caches_.Prefix(i), static_cast<size_t>(edgebit::NumElements(shape)) * conf_.ElementBytes(i),
          shape.data(), shape.size(),
          conf_.state_half[i] ? ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16 : ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT));
    }
    std::vector<Ort::Value> outputs = session_.Run(Ort::RunOptions{nullptr}, input_ptrs_.data(), inputs.data(),
                                                   inputs.size(), output_ptrs_.data(), output_ptrs_.size());
    for (size_t i = 0; i < states_.size(); ++i) {
      Ort::Value& out = outputs[i + 1];
      if (caches_.Has(i)) {
        auto info = out.GetTensorTypeAndShapeInfo();
        const std::vector<int64_t> shape = info.GetShape();
        caches_.Append(i, out.GetTensorRawData(), shape.empty() ? 0 : shape[0],
                       info.GetElementCount() * conf_.ElementBytes(i), position);
      } else {
        states_[i] = std::move(out);  // next step's input
      }
    }
    logits_ = std::move(outputs[0]);
    std::vector<int64_t> shape = logits_.GetTensorTypeAndShapeInfo().GetShape();
    if (shape.size() != 3) throw std::runtime_error("model.onnx: logits are not [1, R, V]");
    *vocab = shape[2];
    return edgebit::LastOnly(logits_.GetTensorData<float>(), shape[1], count, last_only, *vocab, conf_);
  }

  void ResetState() {  // cache states need none: rows past the position are never read
    states_.clear();
    Ort::AllocatorWithDefaultOptions allocator;
    for (size_t i = 0; i < conf_.state_shapes.size(); ++i) {
      const std::vector<int64_t> shape = caches_.Has(i) ? std::vector<int64_t>{1} : conf_.state_shapes[i];
      Ort::Value state = Ort::Value::CreateTensor<float>(allocator, shape.data(), shape.size());  // placeholder
      std::memset(state.GetTensorMutableData<float>(), 0, sizeof(float) * edgebit::NumElements(shape));
      states_.push_back(std::move(state));
    }
  }

 private:
  edgebit::RunnerConf conf_;
  edgebit::AppendCaches caches_;
  Ort::Env env_;
  Ort::Session session_{nullptr};
  Ort::MemoryInfo memory_ = Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);
  std::vector<std::string> input_names_, output_names_;
  std::vector<const char*> input_ptrs_, output_ptrs_;
  std::vector<Ort::Value> states_;
  Ort::Value logits_{nullptr};
};

}  // namespace

int main(int argc, char** argv) { return edgebit::RunnerMain<OrtModel>(argc, argv, "edgebit-runner (onnxruntime)"); }
