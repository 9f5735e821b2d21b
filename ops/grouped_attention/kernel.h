// edgebit::grouped_attention (SPEC.md in this folder): causal grouped-query attention of T new tokens over a
// runner-owned KV cache, read in place: the filled prefix [P, Hkv, D] and the new rows [T, Hkv, D] are two tensors
// and no concatenation is made.
//
// One task per (token, chunk of slots): the chunk's rows are read into the core's cache front to back (or were asked
// for while the task before it was computed: Lookahead), then the query heads of each KV head go through them
// together (each key and value row widened once for all of them, partial sums in registers), and the chunks' partial
// softmaxes are merged per head. Dot products and the weighted sums of values are vectorized for every target (AVX2 /
// AVX-512, NEON).
#pragma once

#include <limits>
#include <type_traits>

#include "common/kernel_common.h"

#if defined(__F16C__)
#include <immintrin.h>
#endif

namespace edgebit_kernels::grouped_attention {

template <class Element>
struct Problem {
  const float* q;                            // [H, T, D]
  const Element* prefix_k;                   // [P, Hkv, D]
  const Element* prefix_v;                   // [P, Hkv, D]
  const Element* new_k;                      // [T, Hkv, D]
  const Element* new_v;                      // [T, Hkv, D]
  const int64_t* positions;                  // [T]
  float* out;                                // [T, H * D]
  int64_t heads, kv_heads, tokens, prefix, dim;
};

// Eight floats in the compiler's generic vector type (GCC / Clang): AVX / AVX-512 registers on x86-64, two NEON
// registers on arm64. Plain loops do not vectorize a float dot product without -ffast-math (its sum would be
// reordered); this one says the order: 8 lanes, two accumulators, then a fixed tree.
typedef float Float8 __attribute__((vector_size(32)));

// A float16 cache element: GCC 12's C++ has _Float16 on x86-64 and only the storage type __fp16 on arm64.
#if defined(__aarch64__)
typedef __fp16 Half;
#else
typedef _Float16 Half;
#endif
typedef Half Half8 __attribute__((vector_size(16)));

inline Float8 Load8(const float* p) {
  Float8 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// Eight float16 values widened: F16C's vcvtph2ps on x86-64 (GCC 12 converts a _Float16 vector one lane at a time,
// which made a decode step at depth 2048 half as fast as with a float32 cache), fcvtl on arm64.
inline Float8 Load8(const Half* p) {
#if defined(__F16C__)
  const __m256 wide = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  Float8 v;
  std::memcpy(&v, &wide, sizeof v);
  return v;
#else
  Half8 v;
  std::memcpy(&v, p, sizeof v);
  return __builtin_convertvector(v, Float8);
#endif
}

inline float HorizontalSum(Float8 v) {
  return ((v[0] + v[1]) + (v[2] + v[3])) + ((v[4] + v[5]) + (v[6] + v[7]));
}

template <class Element>
inline float Dot(const float* a, const Element* b, int64_t n) {
  Float8 even = {}, odd = {};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    even += Load8(a + i) * Load8(b + i);
    odd += Load8(a + i + 8) * Load8(b + i + 8);
  }
  if (i + 8 <= n) {
    even += Load8(a + i) * Load8(b + i);
    i += 8;
  }
  float total = HorizontalSum(even + odd);
  for (; i < n; ++i) total += a[i] * static_cast<float>(b[i]);
  return total;
}

// e^x for eight x <= 0 (scores minus their maximum): x = k ln2 + r with |r| <= ln2 / 2, e^r by its Taylor series to
// r^6 (relative error < 2e-7), 2^k written into the exponent bits. Below -87 the result is 0 as e^x underflows.
// std::exp one lane at a time was a third of a decode step's attention at depth.
inline Float8 Exp8(Float8 x) {
  typedef int32_t Int8 __attribute__((vector_size(32)));
  const Float8 lowest = Float8{} - 87.0f;
  const Int8 underflow = x < lowest;
  x = underflow ? lowest : x;
  const Float8 shifter = Float8{} + 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  const Float8 k = (x * 1.44269504f + shifter) - shifter;
  const Float8 r = (x - k * 0.693145752f) - k * 1.42860677e-6f;  // ln 2 in two parts
  Float8 e = Float8{} + (1.0f / 720);
  e = e * r + (1.0f / 120);
  e = e * r + (1.0f / 24);
  e = e * r + (1.0f / 6);
  e = e * r + 0.5f;
  e = e * r + 1.0f;
  e = e * r + 1.0f;
  const Int8 bits = (__builtin_convertvector(k, Int8) + 127) << 23;
  Float8 scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return underflow ? Float8{} : e * scale;
}

// The largest of row[0:n], n >= 1, eight lanes at a time (std::max_element compares one float at a time).
inline float Max(const float* row, int64_t n) {
  Float8 top = Float8{} - INFINITY;
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const Float8 v = Load8(row + i);
    top = v > top ? v : top;
  }
  float best = std::max(std::max(std::max(top[0], top[1]), std::max(top[2], top[3])),
                        std::max(std::max(top[4], top[5]), std::max(top[6], top[7])));
  for (; i < n; ++i) best = std::max(best, row[i]);
  return best;
}

// row[0:n] = e^(row - top); returns their sum.
inline float ExpShifted(float* row, int64_t n, float top) {
  Float8 total = {};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const Float8 e = Exp8(Load8(row + i) - top);
    std::memcpy(row + i, &e, sizeof e);
    total += e;
  }
  float sum = HorizontalSum(total);
  for (; i < n; ++i) sum += (row[i] = std::exp(row[i] - top));
  return sum;
}

// out[0:n] += p * v[0:n]
template <class Element>
inline void AddScaled(float* out, float p, const Element* v, int64_t n) {
  int64_t i = 0;
  const Float8 scale = Float8{} + p;
  for (; i + 8 <= n; i += 8) {
    const Float8 sum = Load8(out + i) + scale * Load8(v + i);
    std::memcpy(out + i, &sum, sizeof sum);
  }
  for (; i < n; ++i) out[i] += p * static_cast<float>(v[i]);
}

// The [Hkv, D] rows of slot s: the prefix's row s, or new row s - P.
template <class Element>
inline const Element* SlotRows(const Element* prefix, const Element* fresh, const Problem<Element>& p, int64_t s) {
  return s < p.prefix ? prefix + s * p.kv_heads * p.dim : fresh + (s - p.prefix) * p.kv_heads * p.dim;
}

// Slots per task. A task takes every KV head of its slots, so it streams one contiguous block of the cache
// ([slots, Hkv, D] rows), and a decode step (T = 1) over a long cache still has P / slots tasks for the threads
// (flash-decoding): each chunk keeps its own softmax maximum and sum per head, merged at the end. A chunk's keys and
// values are sized to stay in a core's cache between BringIntoCache and the passes (about 256 KB: a Cortex-A76's L2;
// 96 slots of the BitNet 2B-4T shape in float16), in whole blocks of 8 slots, 32 to 256 slots.
inline int64_t SlotsPerChunk(int64_t kv_heads, int64_t dim, int64_t element_bytes) {
  const int64_t slot_bytes = 2 * kv_heads * dim * element_bytes;  // a key row and a value row
  return std::min<int64_t>(256, std::max<int64_t>(32, (256 * 1024 / slot_bytes) / 8 * 8));
}

// The next chunk's key and value rows (two contiguous regions of the cache), asked for a few lines at a time while
// this chunk is computed, so that memory and arithmetic overlap: without it a chunk is read (BringIntoCache) and
// then computed, one after the other. The lines go to L2 (__builtin_prefetch's locality 2: prefetcht1 on x86-64,
// PLDL2KEEP on arm64), and the next task reads them there in its passes instead of sweeping them in first. Decode at
// depth 2048, 30 layers of the 2B-4T shape's float16 caches from memory (157 MB), Zen 4: 1 thread 18.5-20.0 ->
// 14.9-16.5 ms, 2 threads 11.6-14.5 -> 10.1-12.5 ms, the same outputs (with the vectorized Max below).
class Lookahead {
 public:
  static constexpr int64_t kLine = 64;

  Lookahead() = default;
  template <class Element>
  Lookahead(const Problem<Element>& p, int64_t begin, int64_t n) {
    const int64_t row_bytes = p.kv_heads * p.dim * static_cast<int64_t>(sizeof(Element));
    n = std::min(begin + n, p.prefix) - begin;  // the prefix's rows only: new rows are few and hot
    if (n <= 0) return;
    for (int r = 0; r < 2; ++r) {
      at_[r] = reinterpret_cast<const char*>(r == 0 ? p.prefix_k : p.prefix_v) + begin * row_bytes;
      end_[r] = at_[r] + n * row_bytes;
    }
  }

  void Ask(int64_t lines) {
    for (int r = 0; r < 2 && lines > 0; ++r)
      for (; at_[r] < end_[r] && lines > 0; at_[r] += kLine, --lines) __builtin_prefetch(at_[r], 0, 2);
  }

 private:
  const char* at_[2] = {nullptr, nullptr};
  const char* end_[2] = {nullptr, nullptr};
};

// One chunk's share of a token: for each query head, max score, sum of exp(score - max) and the sum of
// exp(score - max) * value.
struct Partials {
  std::vector<float> top, sum, acc;  // [tasks * H], [tasks * H], [tasks * H * D]
};

// The eight lane sums of eight vectors: result[i] = sum of v[i]'s lanes (a transposing tree of shuffles and adds,
// 7 adds for 8 sums where one horizontal sum each would take 24).
inline Float8 LaneSums(const Float8 (&v)[8]) {
  Float8 pairs[4], quads[2];
  for (int i = 0; i < 4; ++i)  // [a01 b01 a23 b23 a45 b45 a67 b67] of a = v[2i], b = v[2i + 1]
    pairs[i] = __builtin_shufflevector(v[2 * i], v[2 * i + 1], 0, 8, 2, 10, 4, 12, 6, 14) +
               __builtin_shufflevector(v[2 * i], v[2 * i + 1], 1, 9, 3, 11, 5, 13, 7, 15);
  for (int i = 0; i < 2; ++i)  // [a0-3 b0-3 c0-3 d0-3 a4-7 b4-7 c4-7 d4-7]
    quads[i] = __builtin_shufflevector(pairs[2 * i], pairs[2 * i + 1], 0, 1, 8, 9, 4, 5, 12, 13) +
               __builtin_shufflevector(pairs[2 * i], pairs[2 * i + 1], 2, 3, 10, 11, 6, 7, 14, 15);
  return __builtin_shufflevector(quads[0], quads[1], 0, 1, 2, 3, 8, 9, 10, 11) +
         __builtin_shufflevector(quads[0], quads[1], 4, 5, 6, 7, 12, 13, 14, 15);
}

// Independent accumulators (Float8 each) the passes below keep in registers: 8 keep two FMA pipes with a 4-cycle
// latency busy, and fit the 16 vector registers of AVX2 or arm64 (a Float8 is two NEON registers). With AVX-512's 32
// registers, 16: each key row widened feeds twice the FMAs. Depth 2048, 30 layers of the 2B-4T shape's float16 caches
// from memory, Zen 4, paired runs: 2 threads 9.6 -> 9.1 and 9.4 -> 8.9 ms, 1 thread 15.3 -> 13.8 and 14.7 -> 14.9 ms.
// Hot in cache, the passes then run at ~60 % of the FMA peak at the nominal clock.
#if defined(__AVX512VL__)
constexpr int kAccumulators = 16;
#else
constexpr int kAccumulators = 8;
#endif

// Scores of the query heads [h0, h0 + NH), which share KV head g, for token t over slots [begin, begin + n):
// scores[h * n + s]. Each key row is widened once for the NH heads that read it, and NH heads x kAccumulators / NH
// slots are summed side by side.
template <int NH, class Element>
void ScoreHeads(const Problem<Element>& p, int64_t t, int64_t h0, int64_t g, int64_t begin, int64_t n,
                float scale, float* scores, Lookahead& ahead) {
  constexpr int S = kAccumulators / NH;
  const float* q[NH];
  for (int i = 0; i < NH; ++i) q[i] = p.q + ((h0 + i) * p.tokens + t) * p.dim;
  const int64_t vector_dim = p.dim / 8 * 8;
  int64_t s = 0;
  for (; s + S <= n; s += S) {
    // a slot's key and value rows are 2 * Hkv * D * sizeof(Element) bytes (40 lines for 2B-4T in float16); the score
    // passes ask for 4 lines a slot and KV head, the value passes 1 a slot, KV head and column block: together
    // about the next chunk, spread over this one's passes (Run asks for whatever is left before using it)
    ahead.Ask(4 * S);
    const Element* k[S];
    for (int j = 0; j < S; ++j) k[j] = SlotRows(p.prefix_k, p.new_k, p, begin + s + j) + g * p.dim;
    Float8 acc[kAccumulators] = {};
    for (int64_t d = 0; d < vector_dim; d += 8) {
      Float8 key[S];
      for (int j = 0; j < S; ++j) key[j] = Load8(k[j] + d);
      for (int i = 0; i < NH; ++i) {
        const Float8 query = Load8(q[i] + d);
        for (int j = 0; j < S; ++j) acc[i * S + j] += query * key[j];
      }
    }
    Float8 sums[kAccumulators / 8];
    for (int b = 0; b < kAccumulators / 8; ++b) sums[b] = LaneSums(reinterpret_cast<const Float8(&)[8]>(acc[8 * b]));
    for (int i = 0; i < NH; ++i)
      for (int j = 0; j < S; ++j) {
        float total = sums[(i * S + j) / 8][(i * S + j) % 8];
        for (int64_t d = vector_dim; d < p.dim; ++d) total += q[i][d] * static_cast<float>(k[j][d]);
        scores[(h0 + i) * n + s + j] = total * scale;
      }
  }
  for (; s < n; ++s) {
    const Element* key = SlotRows(p.prefix_k, p.new_k, p, begin + s) + g * p.dim;
    for (int i = 0; i < NH; ++i) scores[(h0 + i) * n + s] = Dot(q[i], key, p.dim) * scale;
  }
}

// acc[h * D + d] = sum_s scores[h * n + s] * V[begin + s, g, d] for the heads [h0, h0 + NH): columns of W vectors
// (kAccumulators / NH) stay in registers across all n slots, so each value row is widened once per column for the
// NH heads and no partial sum goes through memory.
template <int NH, class Element>
void WeighValues(const Problem<Element>& p, int64_t h0, int64_t g, int64_t begin, int64_t n, const float* scores,
                 float* acc, Lookahead& ahead) {
  constexpr int W = kAccumulators / NH;
  int64_t d = 0;
  auto columns = [&](auto width) {
    constexpr int kW = decltype(width)::value;
    for (; d + 8 * kW <= p.dim; d += 8 * kW) {
      Float8 sum[NH][kW] = {};
      for (int64_t s = 0; s < n; ++s) {
        ahead.Ask(1);
        const Element* v = SlotRows(p.prefix_v, p.new_v, p, begin + s) + g * p.dim + d;
        Float8 value[kW];
        for (int w = 0; w < kW; ++w) value[w] = Load8(v + 8 * w);
        for (int i = 0; i < NH; ++i) {
          const Float8 weight = Float8{} + scores[(h0 + i) * n + s];
          for (int w = 0; w < kW; ++w) sum[i][w] += weight * value[w];
        }
      }
      for (int i = 0; i < NH; ++i)
        for (int w = 0; w < kW; ++w) std::memcpy(acc + (h0 + i) * p.dim + d + 8 * w, &sum[i][w], sizeof(Float8));
    }
  };
  columns(std::integral_constant<int, W>{});
  columns(std::integral_constant<int, 1>{});
  for (; d < p.dim; ++d)
    for (int i = 0; i < NH; ++i) {
      float total = 0.0f;
      for (int64_t s = 0; s < n; ++s)
        total += scores[(h0 + i) * n + s] * static_cast<float>(SlotRows(p.prefix_v, p.new_v, p, begin + s)[g * p.dim + d]);
      acc[(h0 + i) * p.dim + d] = total;
    }
}

// Reads the chunk's key and value rows front to back once before the passes over them, so the passes find them in
// the core's cache: the passes go KV head by KV head, which reads each slot's rows in Hkv strided pieces that the
// hardware prefetchers do not follow from memory, while one contiguous sweep they do (a decode step at depth 2048
// took 1.4x as long without it; software prefetches of the chunk's own rows ahead of its passes did not help, those
// of the next chunk do: Lookahead). Returns a value that
// depends on every line read, so the reads are not optimized away.
template <class Element>
int32_t BringIntoCache(const Problem<Element>& p, int64_t begin, int64_t n) {
  typedef int32_t Int8 __attribute__((vector_size(32)));
  const int64_t row_bytes = p.kv_heads * p.dim * static_cast<int64_t>(sizeof(Element));
  Int8 seen = {};
  for (int64_t s = 0; s < n; ++s)
    for (const Element* rows : {SlotRows(p.prefix_k, p.new_k, p, begin + s), SlotRows(p.prefix_v, p.new_v, p, begin + s)})
      for (int64_t b = 0; b + 32 <= row_bytes; b += 64) {
        Int8 line;
        std::memcpy(&line, reinterpret_cast<const char*>(rows) + b, sizeof line);
        seen += line;
      }
  return seen[0];
}

// The heads of one KV head in blocks of 4, 2 and 1 (the block sizes ScoreHeads and WeighValues are built for).
template <class Fn>
void ForHeadBlocks(int64_t group, int64_t g, Fn&& fn) {
  int64_t h = g * group;
  const int64_t end = h + group;
  for (; h + 4 <= end; h += 4) fn(std::integral_constant<int, 4>{}, h);
  for (; h + 2 <= end; h += 2) fn(std::integral_constant<int, 2>{}, h);
  for (; h < end; ++h) fn(std::integral_constant<int, 1>{}, h);
}

template <class Element, class Parallel>
void Run(const Problem<Element>& p, Parallel&& parallel) {
  const int64_t group = p.heads / p.kv_heads, slots = p.prefix + p.tokens;
  const int64_t chunk = SlotsPerChunk(p.kv_heads, p.dim, sizeof(Element));
  const int64_t chunks = (slots + chunk - 1) / chunk;
  const float scale = 1.0f / std::sqrt(static_cast<float>(p.dim));
  const int64_t tasks = p.tokens * chunks;
  Partials part{std::vector<float>(static_cast<size_t>(tasks * p.heads)),
                std::vector<float>(static_cast<size_t>(tasks * p.heads)),
                std::vector<float>(static_cast<size_t>(tasks * p.heads * p.dim))};
  auto visible = [&](int64_t t) { return std::min(std::max<int64_t>(p.positions[t] + 1, 1), slots); };
  // task = t * chunks + c: token t, slots [c * chunk, ...) up to what t sees, every head
  parallel(tasks, 1, [&](RowRange range) {
    std::vector<float> scores(static_cast<size_t>(p.heads * chunk));
    int32_t touched = 0;
    Lookahead ahead;               // the rows of the range's next task, asked for while this task is computed
    int64_t looked_ahead_at = -1;  // that task
    for (int64_t task = range.begin; task < range.end; ++task) {
      const int64_t t = task / chunks, c = task % chunks;
      const int64_t begin = c * chunk, end = std::min(begin + chunk, visible(t)), n = end - begin;
      float* top = part.top.data() + task * p.heads;
      float* sum = part.sum.data() + task * p.heads;
      float* acc = part.acc.data() + task * p.heads * p.dim;
      if (n <= 0) {
        std::fill_n(acc, p.heads * p.dim, 0.0f);
        std::fill_n(top, p.heads, -INFINITY);
        std::fill_n(sum, p.heads, 0.0f);
        continue;
      }
      if (looked_ahead_at == task)
        ahead.Ask(std::numeric_limits<int64_t>::max());  // what the previous task's passes did not ask for yet
      else
        touched += BringIntoCache(p, begin, n);
      const bool next_is_next_chunk = task + 1 < range.end && (task + 1) / chunks == t;
      ahead = next_is_next_chunk ? Lookahead(p, end, std::min(end + chunk, visible(t)) - end) : Lookahead();
      looked_ahead_at = next_is_next_chunk ? task + 1 : -1;
      for (int64_t g = 0; g < p.kv_heads; ++g)
        ForHeadBlocks(group, g, [&](auto heads, int64_t h0) {
          ScoreHeads<decltype(heads)::value>(p, t, h0, g, begin, n, scale, scores.data(), ahead);
        });
      for (int64_t h = 0; h < p.heads; ++h) {
        float* row = scores.data() + h * n;
        top[h] = Max(row, n);
        sum[h] = ExpShifted(row, n, top[h]);
      }
      for (int64_t g = 0; g < p.kv_heads; ++g)
        ForHeadBlocks(group, g, [&](auto heads, int64_t h0) {
          WeighValues<decltype(heads)::value>(p, h0, g, begin, n, scores.data(), acc, ahead);
        });
    }
    __asm__ volatile("" : : "r"(touched));  // keeps BringIntoCache's reads
  });
  // merge the chunks of each (token, head): out = sum_c e^(top_c - top) acc_c / sum_c e^(top_c - top) sum_c
  parallel(p.tokens * p.heads, 1, [&](RowRange range) {
    for (int64_t pair = range.begin; pair < range.end; ++pair) {
      const int64_t t = pair / p.heads, h = pair % p.heads;
      float top = -INFINITY;
      for (int64_t c = 0; c < chunks; ++c) top = std::max(top, part.top[(t * chunks + c) * p.heads + h]);
      float* out = p.out + pair * p.dim;  // [T, H * D]: row t, head h
      std::fill_n(out, p.dim, 0.0f);
      float total = 0.0f;
      for (int64_t c = 0; c < chunks; ++c) {
        const int64_t at = (t * chunks + c) * p.heads + h;
        if (part.sum[at] == 0.0f) continue;
        const float weight = std::exp(part.top[at] - top);
        total += weight * part.sum[at];
        AddScaled<float>(out, weight, part.acc.data() + at * p.dim, p.dim);
      }
      for (int64_t d = 0; d < p.dim; ++d) out[d] /= total;
    }
  });
}

}  // namespace edgebit_kernels::grouped_attention
