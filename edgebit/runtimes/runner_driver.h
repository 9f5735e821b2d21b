// The device-runner driver shared by every runtime (TVM, ONNX Runtime, ExecuTorch): .npy files, model.conf,
// argument checks and the two commands. A runtime supplies a Model class:
//
//   Model(const std::string& runtime_dir, const RunnerConf& conf);  // loads the model file from the directory
//   void ResetState();                                 // zero the recurrent state (KV caches / conv + SSM states)
//   const float* Step(const int64_t* tokens, int64_t count, int64_t position, bool last_only, int64_t* vocab);
//       // runs `count` tokens from `position`, carries the state, returns logits [count, vocab], or [1, vocab] of
//       // the last token with `last_only` (valid until the next Step; LogitRowsInput / LastOnly below)
//
// and its main() returns edgebit::RunnerMain<Model>(argc, argv, "edgebit-runner (RUNTIME)").
//
//   edgebit-runner DIR logits IDS.npy OUT.npy       int64 [B, T] -> float32 [B, T, V] (each row prefilled in chunks
//       of kPrefillChunk tokens)
//   edgebit-runner DIR generate IDS.npy N OUT.npy [OPTIONS]
//       prefill the prompt [1, T] (in chunks of kPrefillChunk tokens), then up to N-1 decode steps -> int64 [1, n],
//       n <= N (stops after --eos)
//       OPTIONS: --temperature T (0: greedy, the default) --top-k K --top-p P --repetition-penalty R --seed S
//                --eos ID (stop when it is picked; not written) --stream (each token id on stdout as it comes)
//       Sampling follows edgebit/sampling.py step by step, so a seed picks the same tokens as on the host.
//
// model.conf: "inputs tokens [position] [logit_rows]", "max_seq_len N", "vocab_size V" and one line per recurrent
// state, in argument order: "state D0 D1 ..." (the step returns the whole next state, which replaces it) or
// "cache S D1 ..." (a buffer of S = max_seq_len rows the runner owns: the step takes its filled prefix [P, D1, ...], a
// view, and returns the T new rows, which the runner writes at row P; see AppendCaches). A state's dimensions may be
// led by its element type, "float16" or "float32" (the default): "cache float16 S D1 ...". A step that takes
// "logit_rows" (int64 [R], after the position) returns the logits of those R tokens only: generate asks for the last
// token's alone. Timings and the runner's peak resident memory go to stdout as one JSON line.
//
// Everything the runner is given is checked before the model is loaded: the .npy header against the file's size,
// its dtype and rank, token ids against the vocabulary, lengths against max_seq_len, N >= 1, each model.conf line.
// A bad input is one line on stderr and exit status 2 (InputError); a failure of the runtime itself is one line and
// exit status 1. Nothing may end in a signal: an app embeds this program.
#pragma once

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <limits>
#include <map>
#include <new>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>
#include <sys/resource.h>

namespace edgebit {

// What the runner was given is wrong (arguments, an input file, model.conf): exit status 2.
struct InputError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

constexpr int kInputErrorExit = 2;
constexpr int kRuntimeErrorExit = 1;
// Bounds that keep every size computation far from overflow; no model of this project comes near them.
constexpr int64_t kMaxDimension = int64_t{1} << 32;
constexpr int64_t kMaxElements = int64_t{1} << 40;
constexpr uint32_t kMaxNpyHeader = 1 << 16;

// `text` for an error message: at most 40 characters, anything unprintable as '?', so the message stays one line.
inline std::string Printable(const std::string& text) {
  std::string shown = text.substr(0, 40);
  for (char& c : shown)
    if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) > 0x7e) c = '?';
  return shown;
}

// A decimal integer in [low, high], the whole string and nothing else (no sign, spaces or suffix).
inline int64_t ParseInteger(const std::string& text, int64_t low, int64_t high, const std::string& what) {
  const std::string range = "[" + std::to_string(low) + ", " + std::to_string(high) + "]";
  if (text.empty() || text.find_first_not_of("0123456789") != std::string::npos)
    throw InputError(what + " must be an integer in " + range + ", got '" + Printable(text) + "'");
  int64_t value = 0;
  for (char digit : text) {
    value = value * 10 + (digit - '0');
    if (value > high) throw InputError(what + " must be in " + range + ", got " + Printable(text));
  }
  if (value < low) throw InputError(what + " must be in " + range + ", got " + Printable(text));
  return value;
}

// The product of `shape`, refusing negative dimensions and totals past kMaxElements.
inline int64_t NumElements(const std::vector<int64_t>& shape, const std::string& what = "shape") {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0 || d > kMaxDimension) throw InputError(what + ": dimension " + std::to_string(d) + " out of range");
    if (d != 0 && n > kMaxElements / d) throw InputError(what + ": more than 2^40 elements");
    n *= d;
  }
  return n;
}

// ---- .npy files (format versions 1-3, little endian, C order) ----
struct Array {
  std::string descr;  // "<i8" or "<f4"
  std::vector<int64_t> shape;
  std::vector<char> data;
};

// The header dictionary: {'descr': '<i8', 'fortran_order': False, 'shape': (2, 3), } with nothing else in it.
class NpyHeader {
 public:
  NpyHeader(const std::string& text, const std::string& path) : text_(text), path_(path) {}

  void Parse(Array* array) {
    bool have_descr = false, have_order = false, have_shape = false;
    Expect('{');
    while (Peek() != '}') {
      const std::string key = QuotedString();
      Expect(':');
      if (key == "descr" && !have_descr) {
        array->descr = QuotedString();
        have_descr = true;
      } else if (key == "fortran_order" && !have_order) {
        if (Word() != "False") Fail("only C-order arrays are supported (save with numpy.save, not Fortran order)");
        have_order = true;
      } else if (key == "shape" && !have_shape) {
        array->shape = Shape();
        have_shape = true;
      } else {
        Fail("unexpected or repeated key '" + Printable(key) + "' in the header");
      }
      if (Peek() == ',') ++at_;
    }
    ++at_;
    if (text_.find_first_not_of(" \n", at_) != std::string::npos) Fail("text after the header dictionary");
    if (!have_descr || !have_order || !have_shape) Fail("the header lacks descr, fortran_order or shape");
  }

 private:
  [[noreturn]] void Fail(const std::string& why) const { throw InputError(path_ + ": not a valid .npy file (" + why + ")"); }

  char Peek() {
    while (at_ < text_.size() && text_[at_] == ' ') ++at_;
    if (at_ >= text_.size()) Fail("the header ends early");
    return text_[at_];
  }

  void Expect(char c) {
    if (Peek() != c) Fail(std::string("expected '") + c + "' in the header");
    ++at_;
  }

  std::string QuotedString() {
    const char quote = Peek();
    if (quote != '\'' && quote != '"') Fail("expected a quoted string in the header");
    const size_t end = text_.find(quote, at_ + 1);
    if (end == std::string::npos) Fail("unterminated string in the header");
    std::string value = text_.substr(at_ + 1, end - at_ - 1);
    at_ = end + 1;
    return value;
  }

  std::string Word() {
    Peek();
    const size_t end = text_.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789", at_);
    std::string word = text_.substr(at_, end == std::string::npos ? std::string::npos : end - at_);
    at_ = end == std::string::npos ? text_.size() : end;
    return word;
  }

  std::vector<int64_t> Shape() {
    std::vector<int64_t> shape;
    Expect('(');
    while (Peek() != ')') {
      const std::string digits = Word();
      if (digits.empty() || shape.size() >= 8) Fail("the shape must be a tuple of at most 8 integers");
      shape.push_back(ParseInteger(digits, 0, kMaxDimension, path_ + ": a dimension of the .npy shape"));
      if (Peek() == ',') ++at_;
      else if (Peek() != ')') Fail("expected ',' or ')' in the shape");
    }
    ++at_;
    return shape;
  }

  const std::string& text_;
  const std::string& path_;
  size_t at_ = 0;
};

inline size_t ItemSize(const std::string& descr) {
  if (descr == "<i8" || descr == "<f8") return 8;
  if (descr == "<i4" || descr == "<f4") return 4;
  return 0;  // a type no runner reads; the caller names what it expected
}

inline Array ReadNpy(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) throw InputError("cannot open " + path + " (" + std::strerror(errno) + ")");
  const int64_t size = static_cast<int64_t>(in.tellg());
  in.seekg(0);
  char magic[8];
  if (size < 10 || !in.read(magic, 8) || std::memcmp(magic, "\x93NUMPY", 6) != 0)
    throw InputError(path + ": not a .npy file (save the array with numpy.save)");
  const int version = static_cast<unsigned char>(magic[6]);
  if (version < 1 || version > 3 || magic[7] != 0)
    throw InputError(path + ": unsupported .npy format version " + std::to_string(version));
  uint32_t header_len = 0;
  unsigned char length_bytes[4] = {0, 0, 0, 0};
  const int length_size = version == 1 ? 2 : 4;
  in.read(reinterpret_cast<char*>(length_bytes), length_size);
  for (int i = length_size - 1; i >= 0; --i) header_len = header_len << 8 | length_bytes[i];  // little endian
  const int64_t data_offset = 8 + length_size + int64_t{header_len};
  if (!in || header_len > kMaxNpyHeader || data_offset > size)
    throw InputError(path + ": not a valid .npy file (the header is longer than the file)");
  std::string header(header_len, ' ');
  in.read(header.data(), header_len);
  Array array;
  NpyHeader(header, path).Parse(&array);
  const size_t item = ItemSize(array.descr);
  if (item == 0) throw InputError(path + ": unsupported dtype '" + Printable(array.descr) + "'");
  const int64_t elements = NumElements(array.shape, path);
  const int64_t expected = size - data_offset;
  if (elements > expected / static_cast<int64_t>(item) || elements * static_cast<int64_t>(item) != expected)
    throw InputError(path + ": the header describes " + std::to_string(elements) + " elements of " +
                     std::to_string(item) + " bytes but the file holds " + std::to_string(expected) +
                     " bytes of data (truncated or altered file)");
  array.data.resize(static_cast<size_t>(expected));
  if (!in.read(array.data.data(), expected)) throw InputError(path + ": cannot read the data");
  return array;
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
  if (!out) throw InputError("cannot write " + path + " (" + std::strerror(errno) + ")");
  uint16_t len = static_cast<uint16_t>(header.size());
  out.write("\x93NUMPY\x01\x00", 8);
  out.write(reinterpret_cast<const char*>(&len), 2);
  out << header;
  out.write(static_cast<const char*>(data), static_cast<std::streamsize>(bytes));
  out.close();
  if (!out) throw InputError("cannot write " + path + " (disk full?)");
}

// ---- model.conf ----
struct RunnerConf {
  bool takes_position = false;
  bool takes_logit_rows = false;  // the step's "logit_rows" input: which tokens' logits it computes
  int64_t max_seq_len = 0;
  int64_t vocab_size = 0;
  std::vector<std::vector<int64_t>> state_shapes;
  std::vector<bool> state_appends;  // per state: a "cache" line (rows appended) rather than a "state" line
  std::vector<bool> state_half;     // per state: float16 elements rather than float32

  size_t ElementBytes(size_t state) const { return state_half[state] ? 2 : 4; }
};

inline RunnerConf ReadConf(const std::string& path) {
  std::ifstream in(path, std::ios::ate);
  if (!in) throw InputError("cannot open " + path + "; the bundle is incomplete, export it again");
  if (in.tellg() > (1 << 20)) throw InputError(path + ": larger than 1 MB, not a model.conf");
  in.seekg(0);
  RunnerConf conf;
  bool have_inputs = false;
  int number = 0;
  for (std::string line; std::getline(in, line);) {
    const std::string where = path + " line " + std::to_string(++number);
    if (number > 4096) throw InputError(path + ": more than 4096 lines");
    std::istringstream fields(line);
    std::string key;
    if (!(fields >> key) || key[0] == '#') continue;
    std::vector<std::string> values;
    for (std::string value; fields >> value;) values.push_back(value);
    if (key == "inputs" && !have_inputs) {
      size_t next = 1;  // the optional inputs, in their order
      auto optional = [&](const char* name) { return values.size() > next && values[next] == name && ++next > 0; };
      conf.takes_position = optional("position");
      conf.takes_logit_rows = optional("logit_rows");
      if (values.empty() || values[0] != "tokens" || values.size() != next)
        throw InputError(where + ": expected 'inputs tokens [position] [logit_rows]'");
      have_inputs = true;
    } else if ((key == "max_seq_len" && conf.max_seq_len == 0) || (key == "vocab_size" && conf.vocab_size == 0)) {
      if (values.size() != 1) throw InputError(where + ": expected '" + key + " N'");
      (key == "max_seq_len" ? conf.max_seq_len : conf.vocab_size) = ParseInteger(values[0], 1, 1 << 24, where + ": " + key);
    } else if (key == "state" || key == "cache") {
      const bool half = !values.empty() && values[0] == "float16";
      if (!values.empty() && (half || values[0] == "float32")) values.erase(values.begin());
      if (half && key != "cache") throw InputError(where + ": only a 'cache' may be float16");
      if (values.empty() || values.size() > 8 || conf.state_shapes.size() >= 1024)
        throw InputError(where + ": expected '" + key + " [float16|float32] D0 D1 ...' with 1 to 8 dimensions");
      std::vector<int64_t> shape;
      for (const auto& value : values) shape.push_back(ParseInteger(value, 1, 1 << 24, where + ": a state dimension"));
      if (NumElements(shape, where) > (int64_t{1} << 31)) throw InputError(where + ": state larger than 2^31 elements");
      conf.state_shapes.push_back(shape);
      conf.state_appends.push_back(key == "cache");
      conf.state_half.push_back(half);
    } else {
      throw InputError(where + ": unknown or repeated key '" + Printable(key) + "'");
    }
  }
  if (!have_inputs || conf.max_seq_len == 0 || conf.vocab_size == 0)
    throw InputError(path + ": needs 'inputs', 'max_seq_len' and 'vocab_size' lines; export the bundle again");
  for (size_t i = 0; i < conf.state_shapes.size(); ++i)
    if (conf.state_appends[i] && (conf.state_shapes[i][0] != conf.max_seq_len || !conf.takes_position))
      throw InputError(path + ": a 'cache' line needs max_seq_len rows and a position input; export the bundle again");
  return conf;
}

// The "cache" states of a step (see model.conf above): buffers of max_seq_len rows (float32 or float16 elements, as
// model.conf says), 64-byte aligned (compiled kernels may assume it), allocated once. A runtime passes Prefix(i) with the shape [position, ...] as the state
// input (the filled rows, no copy) and hands each returned block of new rows to Append, which checks its size and
// copies it in at the position. Rows past the position are never read, so a new sequence needs no reset.
class AppendCaches {
 public:
  explicit AppendCaches(const RunnerConf& conf) {
    for (size_t i = 0; i < conf.state_shapes.size(); ++i) {
      if (!conf.state_appends[i]) continue;
      const auto& shape = conf.state_shapes[i];
      const size_t row_bytes = static_cast<size_t>(NumElements(shape) / shape[0]) * conf.ElementBytes(i);
      const size_t bytes = row_bytes * static_cast<size_t>(shape[0]);
      void* data = nullptr;
      if (posix_memalign(&data, 64, bytes ? bytes : 64) != 0) throw std::bad_alloc();
      buffers_[i] = {static_cast<char*>(data), row_bytes, shape[0]};
    }
  }
  ~AppendCaches() {
    for (auto& entry : buffers_) free(entry.second.data);
  }
  AppendCaches(const AppendCaches&) = delete;
  AppendCaches& operator=(const AppendCaches&) = delete;

  bool Has(size_t i) const { return buffers_.count(i) != 0; }
  void* Prefix(size_t i) { return buffers_.at(i).data; }
  // `count` new rows of `bytes` bytes in all, written at row `position`.
  void Append(size_t i, const void* rows, int64_t count, size_t bytes, int64_t position) {
    const Buffer& b = buffers_.at(i);
    if (count < 0 || bytes != static_cast<size_t>(count) * b.row_bytes || position < 0 || position + count > b.rows)
      throw std::runtime_error("the model returned a cache block of the wrong size");
    std::memcpy(b.data + static_cast<size_t>(position) * b.row_bytes, rows, bytes);
  }

 private:
  struct Buffer {
    char* data;
    size_t row_bytes;
    int64_t rows;
  };
  std::map<size_t, Buffer> buffers_;
};

inline double Seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

// Token ids int64 [B, T] with B, T >= 1, T <= max_seq_len and every id in [0, vocab_size).
inline Array ReadIds(const std::string& path, const RunnerConf& conf) {
  Array ids = ReadNpy(path);
  if (ids.descr != "<i8" || ids.shape.size() != 2)
    throw InputError(path + ": expected int64 token ids [B, T], got " + Printable(ids.descr) + " with " +
                     std::to_string(ids.shape.size()) + " dimensions");
  if (ids.shape[0] < 1 || ids.shape[1] < 1) throw InputError(path + ": no tokens (an empty prompt or batch)");
  if (ids.shape[1] > conf.max_seq_len)
    throw InputError(path + ": " + std::to_string(ids.shape[1]) + " tokens exceed the bundle's max_seq_len " +
                     std::to_string(conf.max_seq_len) + "; export with a larger --max-seq-len");
  const int64_t* values = reinterpret_cast<const int64_t*>(ids.data.data());
  for (int64_t i = 0, n = ids.shape[0] * ids.shape[1]; i < n; ++i) {
    int64_t id;
    std::memcpy(&id, values + i, sizeof id);  // the buffer of a std::vector<char> need not be 8-byte aligned
    if (id < 0 || id >= conf.vocab_size)
      throw InputError(path + ": token id " + std::to_string(id) + " at position " + std::to_string(i) +
                       " is outside the vocabulary [0, " + std::to_string(conf.vocab_size) + ")");
  }
  return ids;
}

inline std::vector<int64_t> Tokens(const Array& ids, int64_t row) {
  const int64_t length = ids.shape[1];
  std::vector<int64_t> tokens(static_cast<size_t>(length));
  std::memcpy(tokens.data(), ids.data.data() + row * length * sizeof(int64_t), length * sizeof(int64_t));
  return tokens;
}

// The model's logits width must be what model.conf promised (the ids were checked against it).
inline void CheckVocab(int64_t vocab, const RunnerConf& conf) {
  if (vocab != conf.vocab_size)
    throw InputError("the model produces " + std::to_string(vocab) + " logits per token but model.conf says "
                     "vocab_size " + std::to_string(conf.vocab_size) + "; export the bundle again");
}

// ---- sampling (the same steps as edgebit/sampling.py) ----
struct SamplingOptions {
  double temperature = 0.0;
  int64_t top_k = 0;
  double top_p = 1.0;
  double repetition_penalty = 1.0;
  int64_t seed = 0;
  int64_t eos = -1;
  bool stream = false;
};

// A finite decimal number in [low, high], the whole string.
inline double ParseNumber(const std::string& text, double low, double high, const std::string& what) {
  char* end = nullptr;
  errno = 0;
  const double value = text.empty() ? 0.0 : std::strtod(text.c_str(), &end);
  if (text.empty() || end != text.c_str() + text.size() || errno != 0 || !(value >= low && value <= high))
    throw InputError(what + " must be a number in [" + std::to_string(low) + ", " + std::to_string(high) +
                     "], got '" + Printable(text) + "'");
  return value;
}

inline SamplingOptions ParseSamplingOptions(const std::vector<std::string>& args, const RunnerConf& conf) {
  SamplingOptions o;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& flag = args[i];
    if (flag == "--stream") {
      o.stream = true;
      continue;
    }
    if (i + 1 >= args.size()) throw InputError("option '" + Printable(flag) + "' needs a value (or is unknown)");
    const std::string& value = args[++i];
    if (flag == "--temperature") o.temperature = ParseNumber(value, 0.0, 100.0, flag);
    else if (flag == "--top-k") o.top_k = ParseInteger(value, 0, conf.vocab_size, flag);
    else if (flag == "--top-p") o.top_p = ParseNumber(value, 1e-9, 1.0, flag);
    else if (flag == "--repetition-penalty") o.repetition_penalty = ParseNumber(value, 1e-9, 100.0, flag);
    else if (flag == "--seed") o.seed = ParseInteger(value, 0, std::numeric_limits<int64_t>::max() / 10, flag);
    else if (flag == "--eos") o.eos = ParseInteger(value, 0, conf.vocab_size - 1, flag);
    else throw InputError("unknown option '" + Printable(flag) + "'");
  }
  return o;
}

class Sampler {
 public:
  explicit Sampler(const SamplingOptions& options) : o_(options), state_(static_cast<uint64_t>(options.seed)) {}

  // The next token from logits [vocab], given every token seen so far (prompt and generated).
  int64_t Pick(const float* logits, int64_t vocab, const std::vector<int64_t>& seen) {
    if (o_.temperature == 0.0 && o_.repetition_penalty == 1.0) return std::max_element(logits, logits + vocab) - logits;
    std::vector<double> x(logits, logits + vocab);
    if (o_.repetition_penalty != 1.0) {
      std::vector<char> done(static_cast<size_t>(vocab), 0);
      for (int64_t t : seen) {
        if (done[t]) continue;
        done[t] = 1;
        x[t] = x[t] > 0 ? x[t] / o_.repetition_penalty : x[t] * o_.repetition_penalty;
      }
    }
    if (o_.temperature == 0.0) return std::max_element(x.begin(), x.end()) - x.begin();
    for (double& v : x) v /= o_.temperature;
    std::vector<int64_t> order(static_cast<size_t>(vocab));
    for (int64_t i = 0; i < vocab; ++i) order[i] = i;
    const int64_t k = o_.top_k > 0 && o_.top_k < vocab ? o_.top_k : vocab;
    std::partial_sort(order.begin(), order.begin() + k, order.end(),
                      [&](int64_t a, int64_t b) { return x[a] > x[b] || (x[a] == x[b] && a < b); });
    std::vector<double> p(static_cast<size_t>(k)), running(static_cast<size_t>(k));
    double total = 0.0;
    for (int64_t i = 0; i < k; ++i) {
      p[i] = std::exp(x[order[i]] - x[order[0]]);
      running[i] = total += p[i];
    }
    int64_t kept = k;
    if (o_.top_p < 1.0) {
      double cumulative = 0.0;
      for (int64_t i = 0; i < k; ++i) {
        cumulative += p[i] / total;
        if (cumulative >= o_.top_p) {
          kept = i + 1;
          break;
        }
      }
    }
    const double u = Uniform() * running[kept - 1];
    for (int64_t i = 0; i < kept; ++i)
      if (u < running[i]) return order[i];
    return order[kept - 1];
  }

 private:
  uint64_t Next() {  // SplitMix64
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
  }
  double Uniform() { return static_cast<double>(Next() >> 11) * 0x1.0p-53; }

  SamplingOptions o_;
  uint64_t state_;
};

// The most memory this process has held resident (the runner's own getrusage): what a Pi or a phone must have free.
// The runner's own peak resident memory: VmHWM of /proc/self/status, the high-water mark of this program's address
// space. getrusage's ru_maxrss survives execve, so a runner started by a large process (a Python harness that
// vforks) would report that process's peak; it is the fallback where /proc is missing.
inline long long PeakResidentBytes() {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);)
    if (line.rfind("VmHWM:", 0) == 0) return std::atoll(line.c_str() + 6) * 1024;  // "VmHWM:   1234 kB"
  struct rusage usage {};
  if (getrusage(RUSAGE_SELF, &usage) != 0) return 0;
  return static_cast<long long>(usage.ru_maxrss) * 1024;  // Linux reports kilobytes
}

// generate prefills a prompt, and logits computes a prompt's logits, in steps of at most this many tokens (every
// step form continues from a position), so activations and logits ([chunk, V] floats: 33 MB at a 128K vocabulary)
// stay small whatever the prompt's length. edgebit.models.step_graph.TOKENS_PER_STEP is the same value: ExecuTorch
// programs are planned for steps of that many tokens.
constexpr int64_t kPrefillChunk = 64;

// The "logit_rows" input of a step over `count` tokens (model.conf): every token's index, or the last one's.
inline std::vector<int64_t> LogitRowsInput(int64_t count, bool last_only) {
  std::vector<int64_t> rows;
  for (int64_t i = last_only ? count - 1 : 0; i < count; ++i) rows.push_back(i);
  return rows;
}

// What Step returns from a program's logits of `rows` rows for `count` tokens: the last token's row with `last_only`
// (a program without "logit_rows" computed them all), after checking the program returned the rows it was asked for.
inline const float* LastOnly(const float* logits, int64_t rows, int64_t count, bool last_only, int64_t vocab,
                             const RunnerConf& conf) {
  const int64_t expected = last_only && conf.takes_logit_rows ? 1 : count;
  if (rows != expected)
    throw std::runtime_error("the model returns logits for " + std::to_string(rows) + " tokens, not " +
                             std::to_string(expected));
  return last_only ? logits + (rows - 1) * vocab : logits;
}

template <class Model>
int Logits(const std::string& dir, const RunnerConf& conf, const std::string& in_path, const std::string& out_path) {
  Array ids = ReadIds(in_path, conf);
  Model model(dir, conf);
  const int64_t batch = ids.shape[0], length = ids.shape[1];
  std::vector<float> logits;
  int64_t vocab = 0;
  auto start = std::chrono::steady_clock::now();
  for (int64_t b = 0; b < batch; ++b) {
    model.ResetState();
    const std::vector<int64_t> tokens = Tokens(ids, b);
    for (int64_t done = 0; done < length; done += kPrefillChunk) {  // as generate prefills
      const int64_t chunk = std::min(kPrefillChunk, length - done);
      const float* p = model.Step(tokens.data() + done, chunk, done, /*last_only=*/false, &vocab);
      CheckVocab(vocab, conf);
      logits.insert(logits.end(), p, p + chunk * vocab);
    }
  }
  double seconds = Seconds(start);
  WriteNpy(out_path, "<f4", {batch, length, vocab}, logits.data(), logits.size() * sizeof(float));
  std::cout << "{\"prefill_tokens\": " << batch * length << ", \"prefill_seconds\": " << seconds
            << ", \"peak_rss_bytes\": " << PeakResidentBytes() << "}\n";
  return 0;
}

template <class Model>
int Generate(const std::string& dir, const RunnerConf& conf, const std::string& in_path, const std::string& count_text,
             const std::string& out_path, const std::vector<std::string>& option_args) {
  const int64_t count = ParseInteger(count_text, 1, conf.max_seq_len, "N (the number of tokens to generate)");
  const SamplingOptions options = ParseSamplingOptions(option_args, conf);
  Array ids = ReadIds(in_path, conf);
  if (ids.shape[0] != 1) throw InputError(in_path + ": generate takes one prompt [1, T]");
  const int64_t length = ids.shape[1];
  if (length + count > conf.max_seq_len)
    throw InputError("prompt (" + std::to_string(length) + ") + new tokens (" + std::to_string(count) +
                     ") exceed the bundle's max_seq_len " + std::to_string(conf.max_seq_len));
  Model model(dir, conf);
  model.ResetState();
  Sampler sampler(options);
  std::vector<int64_t> seen = Tokens(ids, 0), generated;
  auto start = std::chrono::steady_clock::now();
  int64_t vocab = 0;
  const float* logits = nullptr;
  for (int64_t done = 0; done < length; done += kPrefillChunk) {
    const int64_t chunk = std::min(kPrefillChunk, length - done);
    logits = model.Step(seen.data() + done, chunk, done, /*last_only=*/true, &vocab);  // the last token's row
    CheckVocab(vocab, conf);
  }
  double prefill = 0.0;
  int64_t decoded = 0;
  auto decode_start = start;
  for (int64_t i = 0; i < count; ++i) {
    const int64_t token = sampler.Pick(logits, vocab, seen);
    if (i == 0) {
      prefill = Seconds(start);
      decode_start = std::chrono::steady_clock::now();
    }
    if (token == options.eos) break;
    generated.push_back(token);
    seen.push_back(token);
    if (options.stream) std::cout << "{\"token\": " << token << "}" << std::endl;
    if (i + 1 < count) {
      logits = model.Step(&token, 1, length + i, /*last_only=*/true, &vocab);
      ++decoded;
    }
  }
  const double decode = Seconds(decode_start);
  WriteNpy(out_path, "<i8", {1, static_cast<int64_t>(generated.size())}, generated.data(),
           generated.size() * sizeof(int64_t));
  std::cout << "{\"prefill_tokens\": " << length << ", \"prefill_seconds\": " << prefill
            << ", \"decode_tokens\": " << decoded << ", \"decode_seconds\": " << decode
            << ", \"peak_rss_bytes\": " << PeakResidentBytes() << "}\n";
  return 0;
}

// EDGEBIT_NUM_THREADS (default 1): the worker threads a runtime may use.
inline int ThreadCount() {
  const char* value = std::getenv("EDGEBIT_NUM_THREADS");
  if (value == nullptr || *value == '\0') return 1;
  return static_cast<int>(ParseInteger(value, 1, 1024, "EDGEBIT_NUM_THREADS"));
}

template <class Model>
int RunnerMain(int argc, char** argv, const std::string& name) {
  const std::string usage = "usage: " + name + " DIR logits IDS.npy OUT.npy | DIR generate IDS.npy N OUT.npy "
                            "[--temperature T] [--top-k K] [--top-p P] [--repetition-penalty R] [--seed S] [--eos ID] "
                            "[--stream]";
  const std::string command = argc > 2 ? argv[2] : "";
  if (!((command == "logits" && argc == 5) || (command == "generate" && argc >= 6))) {
    std::cerr << usage << "\n";
    return kInputErrorExit;
  }
  try {
    const std::string dir = argv[1];
    const RunnerConf conf = ReadConf(dir + "/model.conf");
    ThreadCount();  // a bad value is an input error before anything loads
    if (command == "logits") return Logits<Model>(dir, conf, argv[3], argv[4]);
    return Generate<Model>(dir, conf, argv[3], argv[4], argv[5], std::vector<std::string>(argv + 6, argv + argc));
  } catch (const InputError& e) {
    std::cerr << name << ": " << e.what() << "\n";
    return kInputErrorExit;
  } catch (const std::bad_alloc&) {
    std::cerr << name << ": out of memory\n";
    return kRuntimeErrorExit;
  } catch (const std::exception& e) {
    std::string message = e.what();
    std::replace(message.begin(), message.end(), '\n', ' ');  // one line, whatever the runtime's error says
    std::cerr << name << ": " << message << "\n";
    return kRuntimeErrorExit;
  } catch (...) {
    std::cerr << name << ": unknown error\n";
    return kRuntimeErrorExit;
  }
}

}  // namespace edgebit
