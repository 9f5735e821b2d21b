// The device-runner driver shared by every runtime (TVM, ONNX Runtime, ExecuTorch): .npy files, model.conf,
// and the two commands. A runtime supplies a Model class:
//
//   explicit Model(const std::string& runtime_dir);   // loads the model file and model.conf from the directory
//   void ResetState();                                 // zero the recurrent state (KV caches / conv + SSM states)
//   const float* Step(const int64_t* tokens, int64_t count, int64_t position, int64_t* vocab);
//       // runs `count` tokens from `position`, carries the state, returns logits [count, vocab] (valid until the
//       // next Step)
//   int64_t max_seq_len() const;
//
// and its main() returns edgebit::RunnerMain<Model>(argc, argv, "edgebit-runner (RUNTIME)").
//
//   edgebit-runner DIR logits IDS.npy OUT.npy       int64 [B, T] -> float32 [B, T, V] (one prefill per row)
//   edgebit-runner DIR generate IDS.npy N OUT.npy   greedy: prefill row 0, then N-1 decode steps -> int64 [1, N]
//
// model.conf: "inputs tokens [position]", "max_seq_len N" and one "state D0 D1 ..." line per recurrent state.
// Timings go to stdout as one JSON line.
#pragma once

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

namespace edgebit {

// ---- .npy files (format version 1.0, little endian, C order) ----
struct Array {
  std::string descr;  // "<i8" or "<f4"
  std::vector<int64_t> shape;
  std::vector<char> data;
};

inline Array ReadNpy(const std::string& path) {
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

inline void WriteNpy(const std::string& path, const std::string& descr, const std::vector<int64_t>& shape,
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

// ---- model.conf ----
struct RunnerConf {
  bool takes_position = false;
  int64_t max_seq_len = 0;
  std::vector<std::vector<int64_t>> state_shapes;
};

inline RunnerConf ReadConf(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open " + path);
  RunnerConf conf;
  for (std::string line; std::getline(in, line);) {
    std::istringstream fields(line);
    std::string key;
    fields >> key;
    if (key == "inputs") {
      for (std::string name; fields >> name;) conf.takes_position |= name == "position";
    } else if (key == "max_seq_len") {
      fields >> conf.max_seq_len;
    } else if (key == "state") {
      std::vector<int64_t> shape;
      for (int64_t d; fields >> d;) shape.push_back(d);
      conf.state_shapes.push_back(shape);
    }
  }
  if (conf.max_seq_len <= 0) throw std::runtime_error(path + ": no max_seq_len");
  return conf;
}

inline int64_t NumElements(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

inline double Seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

inline Array ReadIds(const std::string& path) {
  Array ids = ReadNpy(path);
  if (ids.descr != "<i8" || ids.shape.size() != 2) throw std::runtime_error(path + ": expected int64 [B, T]");
  return ids;
}

template <class Model>
int Logits(Model& model, const std::string& in_path, const std::string& out_path) {
  Array ids = ReadIds(in_path);
  int64_t batch = ids.shape[0], length = ids.shape[1];
  if (length > model.max_seq_len()) throw std::runtime_error("sequence longer than the bundle's max_seq_len");
  std::vector<float> logits;
  int64_t vocab = 0;
  auto start = std::chrono::steady_clock::now();
  for (int64_t b = 0; b < batch; ++b) {
    model.ResetState();
    const float* p = model.Step(reinterpret_cast<const int64_t*>(ids.data.data()) + b * length, length, 0, &vocab);
    logits.insert(logits.end(), p, p + length * vocab);
  }
  double seconds = Seconds(start);
  WriteNpy(out_path, "<f4", {batch, length, vocab}, logits.data(), logits.size() * sizeof(float));
  std::cout << "{\"prefill_tokens\": " << batch * length << ", \"prefill_seconds\": " << seconds << "}\n";
  return 0;
}

// Greedy choice from the last row of a step's logits.
inline int64_t LastArgmax(const float* logits, int64_t count, int64_t vocab) {
  const float* p = logits + (count - 1) * vocab;
  return std::max_element(p, p + vocab) - p;
}

template <class Model>
int Generate(Model& model, const std::string& in_path, int64_t count, const std::string& out_path) {
  Array ids = ReadIds(in_path);
  int64_t length = ids.shape[1];
  if (length + count > model.max_seq_len()) throw std::runtime_error("prompt + new tokens exceed max_seq_len");
  model.ResetState();
  auto start = std::chrono::steady_clock::now();
  int64_t vocab = 0;
  const float* logits = model.Step(reinterpret_cast<const int64_t*>(ids.data.data()), length, 0, &vocab);
  int64_t token = LastArgmax(logits, length, vocab);  // (separate statements: Step sets vocab)
  double prefill = Seconds(start);
  std::vector<int64_t> generated{token};
  start = std::chrono::steady_clock::now();
  for (int64_t i = 1; i < count; ++i) {
    logits = model.Step(&token, 1, length + i - 1, &vocab);
    token = LastArgmax(logits, 1, vocab);
    generated.push_back(token);
  }
  double decode = Seconds(start);
  WriteNpy(out_path, "<i8", {1, count}, generated.data(), generated.size() * sizeof(int64_t));
  std::cout << "{\"prefill_tokens\": " << length << ", \"prefill_seconds\": " << prefill
            << ", \"decode_tokens\": " << count - 1 << ", \"decode_seconds\": " << decode << "}\n";
  return 0;
}

template <class Model>
int RunnerMain(int argc, char** argv, const std::string& name) {
  const std::string usage = "usage: " + name + " DIR logits IDS.npy OUT.npy | DIR generate IDS.npy N OUT.npy";
  if (argc < 5) {
    std::cerr << usage << "\n";
    return 2;
  }
  try {
    std::string dir = argv[1], command = argv[2];
    Model model(dir);
    if (command == "logits" && argc == 5) return Logits(model, argv[3], argv[4]);
    if (command == "generate" && argc == 6) return Generate(model, argv[3], std::atoll(argv[4]), argv[5]);
    std::cerr << usage << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << name << ": " << e.what() << "\n";
    return 1;
  }
}

}  // namespace edgebit
