// edgebit replacement for tvm/support/io.h (missing from the apache-tvm 0.27 wheel).
#ifndef TVM_SUPPORT_IO_H_
#define TVM_SUPPORT_IO_H_
#include <cstddef>
#include <cstdint>
namespace tvm {
namespace support {
// Primary template; specializations (serializer.h) set enabled = true and provide
// static void Write(Stream*, const T&) and static bool Read(Stream*, T*).
template <typename T, typename = void>
struct Serializer {
  static constexpr bool enabled = false;
};
// Abstract byte stream. Subclasses override the raw Read/Write and add
// `using Stream::Read; using Stream::Write;` to keep the typed overloads visible.
class Stream {
 public:
  virtual size_t Read(void* ptr, size_t size) = 0;
  virtual size_t Write(const void* ptr, size_t size) = 0;
  virtual ~Stream() = default;
  template <typename T>
  void Write(const T& data) {
    static_assert(Serializer<T>::enabled, "no Serializer<T>");
    Serializer<T>::Write(this, data);
  }
  template <typename T>
  bool Read(T* out) {
    static_assert(Serializer<T>::enabled, "no Serializer<T>");
    return Serializer<T>::Read(this, out);
  }
  template <typename T>
  void WriteArray(const T* data, size_t n) {
    for (size_t i = 0; i < n; ++i) Write<T>(data[i]);
  }
  template <typename T>
  bool ReadArray(T* data, size_t n) {
    for (size_t i = 0; i < n; ++i)
      if (!Read<T>(data + i)) return false;
    return true;
  }
};
}  // namespace support
}  // namespace tvm
#endif  // TVM_SUPPORT_IO_H_
