// edgebit replacement for src/support/bytes_io.h: in-memory streams.
#ifndef TVM_SUPPORT_BYTES_IO_H_
#define TVM_SUPPORT_BYTES_IO_H_
#include <tvm/ffi/error.h>
#include <tvm/ffi/string.h>
#include <tvm/support/io.h>

#include <algorithm>
#include <cstring>
#include <string>
namespace tvm {
namespace support {
class BytesInStream : public Stream {
 public:
  using Stream::Read;
  using Stream::Write;
  BytesInStream(const void* data, size_t size) : data_(static_cast<const char*>(data)), size_(size) {}
  explicit BytesInStream(const ffi::Bytes& b) : data_(b.data()), size_(b.size()) {}
  explicit BytesInStream(const std::string& s) : data_(s.data()), size_(s.size()) {}
  size_t Read(void* ptr, size_t n) override {
    n = std::min(n, size_ - pos_);
    if (n) std::memcpy(ptr, data_ + pos_, n);
    pos_ += n;
    return n;
  }
  size_t Write(const void*, size_t) override {
    TVM_FFI_THROW(InternalError) << "write to BytesInStream";
    return 0;
  }
 private:
  const char* data_;
  size_t size_, pos_ = 0;
};
class BytesOutStream : public Stream {
 public:
  using Stream::Read;
  using Stream::Write;
  explicit BytesOutStream(std::string* out) : out_(out) {}
  size_t Write(const void* ptr, size_t n) override {
    out_->append(static_cast<const char*>(ptr), n);
    return n;
  }
  size_t Read(void*, size_t) override {
    TVM_FFI_THROW(InternalError) << "read from BytesOutStream";
    return 0;
  }
 private:
  std::string* out_;
};
}  // namespace support
}  // namespace tvm
#endif
