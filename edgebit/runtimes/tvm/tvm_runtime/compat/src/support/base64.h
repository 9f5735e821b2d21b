// edgebit replacement for src/support/base64.h: stubs. Only tensor.cc's __data_to_json__ /
// __data_from_json__ (tensor <-> JSON text, never used by the Relax VM) need them.
#ifndef TVM_SUPPORT_BASE64_H_
#define TVM_SUPPORT_BASE64_H_
#include <tvm/ffi/error.h>
#include <tvm/support/io.h>
namespace tvm {
namespace support {
class Base64InStream : public Stream {
 public:
  using Stream::Read;
  using Stream::Write;
  explicit Base64InStream(Stream*) {}
  void InitPosition() { TVM_FFI_THROW(RuntimeError) << "base64 not built into this runtime"; }
  size_t Read(void*, size_t) override { return 0; }
  size_t Write(const void*, size_t) override { return 0; }
};
class Base64OutStream : public Stream {
 public:
  using Stream::Read;
  using Stream::Write;
  explicit Base64OutStream(Stream*) {}
  void Finish() {}
  size_t Read(void*, size_t) override { return 0; }
  size_t Write(const void*, size_t) override {
    TVM_FFI_THROW(RuntimeError) << "base64 not built into this runtime";
    return 0;
  }
};
}  // namespace support
}  // namespace tvm
#endif
