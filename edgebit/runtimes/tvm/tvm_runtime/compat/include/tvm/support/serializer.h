// edgebit replacement for tvm/support/serializer.h (missing from the apache-tvm 0.27 wheel).
// Binary format (must match the compiler that wrote the executable): little-endian scalars,
// containers = uint64 count + elements, strings = uint64 length + bytes,
// DLDataType = u8 code, u8 bits, u16 lanes; DLDevice = i32 type, i32 id.
#ifndef TVM_SUPPORT_SERIALIZER_H_
#define TVM_SUPPORT_SERIALIZER_H_
#include <dlpack/dlpack.h>
#include <tvm/ffi/container/array.h>
#include <tvm/ffi/container/map.h>
#include <tvm/ffi/endian.h>
#include <tvm/ffi/string.h>
#include <tvm/support/io.h>

#include <string>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

namespace tvm {
namespace support {

template <typename T>
struct Serializer<T, std::enable_if_t<std::is_arithmetic_v<T>>> {
  static constexpr bool enabled = true;
  static void Write(Stream* s, const T& v) {
    T c = v;
    if constexpr (!TVM_FFI_IO_NO_ENDIAN_SWAP) ffi::ByteSwap(&c, sizeof(T), 1);
    s->Write(&c, sizeof(T));
  }
  static bool Read(Stream* s, T* v) {
    bool ok = s->Read(v, sizeof(T)) == sizeof(T);
    if constexpr (!TVM_FFI_IO_NO_ENDIAN_SWAP) ffi::ByteSwap(v, sizeof(T), 1);
    return ok;
  }
};

template <typename T>
struct Serializer<T, std::enable_if_t<std::is_enum_v<T>>> {
  static constexpr bool enabled = true;
  using U = std::underlying_type_t<T>;
  static void Write(Stream* s, const T& v) { Serializer<U>::Write(s, static_cast<U>(v)); }
  static bool Read(Stream* s, T* v) {
    U u;
    if (!Serializer<U>::Read(s, &u)) return false;
    *v = static_cast<T>(u);
    return true;
  }
};

template <>
struct Serializer<std::string> {
  static constexpr bool enabled = true;
  static void Write(Stream* s, const std::string& v) {
    Serializer<uint64_t>::Write(s, v.size());
    if (!v.empty()) s->Write(v.data(), v.size());
  }
  static bool Read(Stream* s, std::string* v) {
    uint64_t n;
    if (!Serializer<uint64_t>::Read(s, &n)) return false;
    v->resize(n);
    return n == 0 || s->Read(&(*v)[0], n) == n;
  }
};

template <typename T>
struct Serializer<std::vector<T>> {
  static constexpr bool enabled = true;
  static void Write(Stream* s, const std::vector<T>& v) {
    Serializer<uint64_t>::Write(s, v.size());
    for (const T& e : v) Serializer<T>::Write(s, e);
  }
  static bool Read(Stream* s, std::vector<T>* v) {
    uint64_t n;
    if (!Serializer<uint64_t>::Read(s, &n)) return false;
    v->resize(n);
    for (auto& e : *v)
      if (!Serializer<T>::Read(s, &e)) return false;
    return true;
  }
};

template <typename A, typename B>
struct Serializer<std::pair<A, B>> {
  static constexpr bool enabled = true;
  static void Write(Stream* s, const std::pair<A, B>& v) {
    Serializer<A>::Write(s, v.first);
    Serializer<B>::Write(s, v.second);
  }
  static bool Read(Stream* s, std::pair<A, B>* v) {
    return Serializer<A>::Read(s, &v->first) && Serializer<B>::Read(s, &v->second);
  }
};

template <typename K, typename V>
struct Serializer<std::unordered_map<K, V>> {
  static constexpr bool enabled = true;
  static void Write(Stream* s, const std::unordered_map<K, V>& v) {
    Serializer<std::vector<std::pair<K, V>>>::Write(s, {v.begin(), v.end()});
  }
  static bool Read(Stream* s, std::unordered_map<K, V>* v) {
    std::vector<std::pair<K, V>> vec;
    if (!Serializer<std::vector<std::pair<K, V>>>::Read(s, &vec)) return false;
    v->clear();
    v->insert(vec.begin(), vec.end());
    return true;
  }
};

template <>
struct Serializer<ffi::String> {
  static constexpr bool enabled = true;
  static void Write(Stream* s, const ffi::String& v) {
    Serializer<uint64_t>::Write(s, v.size());
    if (v.size()) s->Write(v.data(), v.size());
  }
  static bool Read(Stream* s, ffi::String* v) {
    std::string str;
    if (!Serializer<std::string>::Read(s, &str)) return false;
    *v = ffi::String(std::move(str));
    return true;
  }
};

template <typename T>
struct Serializer<ffi::Array<T>> {
  static constexpr bool enabled = true;
  static void Write(Stream* s, const ffi::Array<T>& v) {
    Serializer<uint64_t>::Write(s, v.size());
    for (size_t i = 0; i < v.size(); ++i) Serializer<T>::Write(s, v[i]);
  }
  static bool Read(Stream* s, ffi::Array<T>* v) {
    uint64_t n;
    if (!Serializer<uint64_t>::Read(s, &n)) return false;
    *v = ffi::Array<T>();
    for (uint64_t i = 0; i < n; ++i) {
      T e;
      if (!Serializer<T>::Read(s, &e)) return false;
      v->push_back(std::move(e));
    }
    return true;
  }
};

template <typename K, typename V>
struct Serializer<ffi::Map<K, V>> {
  static constexpr bool enabled = true;
  static void Write(Stream* s, const ffi::Map<K, V>& v) {
    Serializer<uint64_t>::Write(s, v.size());
    for (const auto& kv : v) {
      Serializer<K>::Write(s, kv.first);
      Serializer<V>::Write(s, kv.second);
    }
  }
  static bool Read(Stream* s, ffi::Map<K, V>* v) {
    uint64_t n;
    if (!Serializer<uint64_t>::Read(s, &n)) return false;
    *v = ffi::Map<K, V>();
    for (uint64_t i = 0; i < n; ++i) {
      K k;
      V e;
      if (!Serializer<K>::Read(s, &k) || !Serializer<V>::Read(s, &e)) return false;
      v->Set(std::move(k), std::move(e));
    }
    return true;
  }
};

template <>
struct Serializer<DLDataType> {
  static constexpr bool enabled = true;
  static void Write(Stream* s, const DLDataType& t) {
    Serializer<uint8_t>::Write(s, t.code);
    Serializer<uint8_t>::Write(s, t.bits);
    Serializer<uint16_t>::Write(s, t.lanes);
  }
  static bool Read(Stream* s, DLDataType* t) {
    return Serializer<uint8_t>::Read(s, &t->code) && Serializer<uint8_t>::Read(s, &t->bits) &&
           Serializer<uint16_t>::Read(s, &t->lanes);
  }
};

template <>
struct Serializer<DLDevice> {
  static constexpr bool enabled = true;
  static void Write(Stream* s, const DLDevice& d) {
    Serializer<int32_t>::Write(s, static_cast<int32_t>(d.device_type));
    Serializer<int32_t>::Write(s, d.device_id);
  }
  static bool Read(Stream* s, DLDevice* d) {
    int32_t t;
    if (!Serializer<int32_t>::Read(s, &t)) return false;
    d->device_type = static_cast<DLDeviceType>(t);
    return Serializer<int32_t>::Read(s, &d->device_id);
  }
};

}  // namespace support
}  // namespace tvm
#endif  // TVM_SUPPORT_SERIALIZER_H_
