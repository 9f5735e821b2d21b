// edgebit-runner: runs an edgebit TVM bundle on a device without Python.
//
//   edgebit-runner BUNDLE logits IDS.npy OUT.npy       int64 [B, T] -> float32 [B, T, V] (one prefill per row)
//   edgebit-runner BUNDLE generate IDS.npy N OUT.npy   greedy: prefill row 0, then N decode steps -> int64 [1, N]
//
// The bundle holds model.so (a Relax VM executable whose "main" is the model's step
// (tokens [1,T], [position [1],] states..., weights...) -> (logits [1,T,V], states...)), weights.params (TVM's
// parameter format; names sort into argument order) and model.conf: "inputs tokens [position]", "max_seq_len N"
// and one "state D0 D1 ..." line per recurrent state (BitNet: K and V caches; Bi-Mamba: conv and SSM states).
// Timings go to stdout as one JSON line.

#include <tvm/ffi/container/array.h>
#include <tvm/ffi/container/map.h>
#include <tvm/ffi/container/tensor.h>
#include <tvm/ffi/error.h>
#include <tvm/ffi/extra/module.h>
#include <tvm/ffi/function.h>
#include <tvm/ffi/string.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

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

const DLDataType kInt64{kDLInt, 64, 1};
const DLDataType kFloat32{kDLFloat, 32, 1};

// ---- .npy files (format version 1.0, little endian, C order) ----
struct Array {
  std::string descr;  // "<i8" or "<f4"
  std::vector<int64_t> shape;
  std::vector<char> data;
};

Array ReadNpy(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open " + path);
  char magic[8];
  in.read(magic, 8);
  if (!in || std::memcmp(magic, "\x93NUMPY", 6) != 0) throw std::runtime_error(path + ": not a .npy file");
  uint32_t header_len = 0;
  if (magic[6] == 1) {
    uint16_t len16;
    in.read(reinterpret_cast<char*>(&len16), 2);
    header_len = len16;
  } else {
    in.read(reinterpret_cast<char*>(&header_len), 4);
  }
  std::string header(header_len, ' ');
  in.read(header.data(), header_len);
  Array a;
  size_t d = header.find("'descr':");
  size_t q1 = header.find('\'', d + 8), q2 = header.find('\'', q1 + 1);
  a.descr = header.substr(q1 + 1, q2 - q1 - 1);
  if (header.find("'fortran_order': True") != std::string::npos) throw std::runtime_error(path + ": Fortran order");
  size_t s = header.find('(', header.find("'shape':")), e = header.find(')', s);
  std::stringstream dims(header.substr(s + 1, e - s - 1));
  for (std::string item; std::getline(dims, item, ',');)
    if (item.find_first_not_of(' ') != std::string::npos) a.shape.push_back(std::stoll(item));
  a.data.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  return a;
}

void WriteNpy(const std::string& path, const std::string& descr, const std::vector<int64_t>& shape,
              const void* data, size_t bytes) {
  std::string dims;
  for (int64_t v : shape) dims += std::to_string(v) + ", ";
  if (shape.size() > 1) dims.resize(dims.size() - 1);  // "(3, 4)" but "(3,)"
  std::string header = "{'descr': '" + descr + "', 'fortran_order': False, 'shape': (" + dims + "), }";
  size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header += '\n';
  std::ofstream out(path, std::ios::binary);
  uint16_t len = static_cast<uint16_t>(header.size());
  out.write("\x93NUMPY\x01\x00", 8);
  out.write(reinterpret_cast<const char*>(&len), 2);
  out << header;
  out.write(static_cast<const char*>(data), static_cast<std::streamsize>(bytes));
  if (!out) throw std::runtime_error("cannot write " + path);
}

// ---- the model ----
class Model {
 public:
  explicit Model(const std::string& bundle) : vm_(LoadVm(bundle + "/model.so")) {
    ReadConf(bundle + "/model.conf");
    vm_->GetFunction("vm_initialization").value()(static_cast<int>(kDLCPU), 0, 2 /* pooled allocator */);
    step_ = vm_->GetFunction("main").value();
    auto load = ffi::Function::GetGlobal("runtime.LoadParamsFromFile");
    if (!load) throw std::runtime_error("libtvm_runtime lacks runtime.LoadParamsFromFile");
    auto params = (*load)(bundle + "/weights.params").cast<ffi::Map<ffi::String, ffi::Tensor>>();
    std::vector<std::pair<std::string, ffi::Tensor>> sorted;
    for (const auto& kv : params) sorted.emplace_back(std::string(kv.first), kv.second);
    std::sort(sorted.begin(), sorted.end(), [](auto& a, auto& b) { return a.first < b.first; });
    for (auto& kv : sorted) weights_.push_back(kv.second);
  }

  // Run T tokens starting at `position`; the states are replaced by the step's outputs.
  ffi::Tensor Step(const int64_t* tokens, int64_t count, int64_t position) {
    ffi::Tensor ids = NewTensor({1, count}, kInt64);
    std::memcpy(ids.data_ptr(), tokens, count * sizeof(int64_t));
    ffi::Tensor pos = NewTensor({1}, kInt64);
    *static_cast<int64_t*>(pos.data_ptr()) = position;
    std::vector<ffi::AnyView> args{ids};
    if (takes_position_) args.push_back(pos);
    for (auto& s : states_) args.push_back(s);
    for (auto& w : weights_) args.push_back(w);
    ffi::Any result;
    step_.CallPacked(ffi::PackedArgs(args.data(), static_cast<int>(args.size())), &result);
    auto outputs = result.cast<ffi::Array<ffi::Tensor>>();
    for (size_t i = 0; i < states_.size(); ++i) states_[i] = outputs[i + 1];
    return outputs[0];
  }

  void ResetState() {
    states_.clear();
    for (const auto& shape : state_shapes_) states_.push_back(Zeros(shape));
  }

  int64_t max_seq_len() const { return max_seq_len_; }

 private:
  void ReadConf(const std::string& path) {
    std::ifstream in(path);
    if (!in) throw std::runtime_error("cannot open " + path);
    for (std::string line; std::getline(in, line);) {
      std::istringstream fields(line);
      std::string key;
      fields >> key;
      if (key == "inputs") {
        for (std::string name; fields >> name;) takes_position_ |= name == "position";
      } else if (key == "max_seq_len") {
        fields >> max_seq_len_;
      } else if (key == "state") {
        std::vector<int64_t> shape;
        for (int64_t d; fields >> d;) shape.push_back(d);
        state_shapes_.push_back(shape);
      }
    }
    if (max_seq_len_ <= 0) throw std::runtime_error(path + ": no max_seq_len");
  }

  static ffi::Module LoadVm(const std::string& library) {
    ffi::Module lib = ffi::Module::LoadFromFile(library);
    return lib->GetFunction("vm_load_executable").value()().cast<ffi::Module>();
  }

  static ffi::Tensor Zeros(const std::vector<int64_t>& shape) {
    ffi::Tensor t = NewTensor(shape, kFloat32);
    std::memset(t.data_ptr(), 0, ffi::GetDataSize(t));
    return t;
  }

  ffi::Module vm_;
  ffi::Function step_;
  std::vector<ffi::Tensor> weights_;
  std::vector<std::vector<int64_t>> state_shapes_;
  std::vector<ffi::Tensor> states_;
  bool takes_position_ = false;
  int64_t max_seq_len_ = 0;
};

double Seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

Array ReadIds(const std::string& path) {
  Array ids = ReadNpy(path);
  if (ids.descr != "<i8" || ids.shape.size() != 2) throw std::runtime_error(path + ": expected int64 [B, T]");
  return ids;
}

int Logits(Model& model, const std::string& in_path, const std::string& out_path) {
  Array ids = ReadIds(in_path);
  int64_t batch = ids.shape[0], length = ids.shape[1];
  if (length > model.max_seq_len()) throw std::runtime_error("sequence longer than the bundle's max_seq_len");
  std::vector<float> logits;
  int64_t vocab = 0;
  auto start = std::chrono::steady_clock::now();
  for (int64_t b = 0; b < batch; ++b) {
    model.ResetState();
    ffi::Tensor out = model.Step(reinterpret_cast<const int64_t*>(ids.data.data()) + b * length, length, 0);
    vocab = out.shape()[2];
    const float* p = static_cast<const float*>(out.data_ptr());
    logits.insert(logits.end(), p, p + length * vocab);
  }
  double seconds = Seconds(start);
  WriteNpy(out_path, "<f4", {batch, length, vocab}, logits.data(), logits.size() * sizeof(float));
  std::cout << "{\"prefill_tokens\": " << batch * length << ", \"prefill_seconds\": " << seconds << "}\n";
  return 0;
}

int64_t Argmax(const ffi::Tensor& logits) {
  int64_t vocab = logits.shape()[2], t = logits.shape()[1];
  const float* p = static_cast<const float*>(logits.data_ptr()) + (t - 1) * vocab;
  return std::max_element(p, p + vocab) - p;
}

int Generate(Model& model, const std::string& in_path, int64_t count, const std::string& out_path) {
  Array ids = ReadIds(in_path);
  int64_t length = ids.shape[1];
  if (length + count > model.max_seq_len()) throw std::runtime_error("prompt + new tokens exceed max_seq_len");
  model.ResetState();
  auto start = std::chrono::steady_clock::now();
  int64_t token = Argmax(model.Step(reinterpret_cast<const int64_t*>(ids.data.data()), length, 0));
  double prefill = Seconds(start);
  std::vector<int64_t> generated{token};
  start = std::chrono::steady_clock::now();
  for (int64_t i = 1; i < count; ++i) {
    token = Argmax(model.Step(&token, 1, length + i - 1));
    generated.push_back(token);
  }
  double decode = Seconds(start);
  WriteNpy(out_path, "<i8", {1, count}, generated.data(), generated.size() * sizeof(int64_t));
  std::cout << "{\"prefill_tokens\": " << length << ", \"prefill_seconds\": " << prefill
            << ", \"decode_tokens\": " << count - 1 << ", \"decode_seconds\": " << decode << "}\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string usage = "usage: edgebit-runner BUNDLE logits IDS.npy OUT.npy | BUNDLE generate IDS.npy N OUT.npy";
  if (argc < 5) {
    std::cerr << usage << "\n";
    return 2;
  }
  try {
    std::string bundle = argv[1], command = argv[2];
    Model model(bundle);
    if (command == "logits" && argc == 5) return Logits(model, argv[3], argv[4]);
    if (command == "generate" && argc == 6) return Generate(model, argv[3], std::atoll(argv[4]), argv[5]);
    std::cerr << usage << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "edgebit-runner: " << e.what() << "\n";
    return 1;
  }
}
