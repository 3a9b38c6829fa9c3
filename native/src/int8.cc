#include "int8.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <vector>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "conv.h"
#include "pool.h"

namespace loom {
namespace {

enum Path { kBest = 0, kScalar = 1, kAvx2 = 2, kVnni = 3 };

int best_path() {
#if defined(__x86_64__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512bw")) return kVnni;
  if (__builtin_cpu_supports("avx2")) return kAvx2;
#endif
  return kScalar;
}
const int kBestPath = best_path();

// Rows of C each task computes: a multiple of every micro-tile's height (8 for VNNI, 6 for AVX2).
constexpr int64_t kTaskRows = 48;
// Column strips each task computes (32 columns a strip with VNNI, 16 with AVX2).
constexpr int64_t kTaskStrips = 4;

// Where the int32 sums go: a row segment c[i, j0 .. j0+w) at a time.
struct RawStore {
  int32_t* c;
  int64_t n;
  void operator()(int64_t i, int64_t j0, const int32_t* acc, int64_t w) const { std::memcpy(c + i * n + j0, acc, w * sizeof(int32_t)); }
};
// Dequantized, with the zero point's correction, bias and relu (int8.h).
struct DequantStore {
  float* y;
  int64_t n;
  const float* mult;   // s_a·s_w[j]
  const int32_t* corr; // z_a·Σ_p q_w[j, p]
  const float* bias;
  bool relu;
  void operator()(int64_t i, int64_t j0, const int32_t* acc, int64_t w) const {
    float* out = y + i * n + j0;
    for (int64_t j = 0; j < w; j++) {
      float v = (float)(acc[j] - corr[j0 + j]) * mult[j0 + j];
      if (bias) v += bias[j0 + j];
      out[j] = relu ? std::max(v, 0.f) : v;
    }
  }
};

// Runs fn(row0, rows, strip0, strips) over blocks of C, spread over the pool. Integer sums are exact, so the split
// never changes a result.
// A product of fewer multiply-adds than this runs on the calling thread: waking the pool's threads on a shared host
// cost ~0.3–1.5 ms here, a hundred times a 128×64×10 product (15 µs on one thread).
constexpr int64_t kSerialWork = int64_t(1) << 21;
// A product with fewer tasks than this many a thread gets shorter row blocks (multiples of the tile's height `mr`),
// down to one tile: MNIST's 128×5408·5408×64 is 3 blocks of 48 rows, which 2 threads share as 2 + 1.
constexpr int64_t kTasksPerThread = 4;
template <typename F>
void blocks(int64_t m, int64_t strips, int64_t work, int64_t mr, const F& fn) {
  const int64_t sb = (strips + kTaskStrips - 1) / kTaskStrips;
  int64_t rows = kTaskRows;
  if (work >= kSerialWork)
    while (rows > mr && (m + rows - 1) / rows * sb < kTasksPerThread * pool().size()) rows -= mr;
  const int64_t rb = (m + rows - 1) / rows;
  const auto task = [&](int t) {
    const int64_t r = t / sb, s = t % sb;
    fn(r * rows, std::min(rows, m - r * rows), s * kTaskStrips, std::min(kTaskStrips, strips - s * kTaskStrips));
  };
  if (work < kSerialWork) {
    for (int t = 0; t < (int)(rb * sb); t++) task(t);
  } else {
    pool().parallel_for((int)(rb * sb), task);
  }
}

// Packed weights (int8.h's int8_pack): n and k (int32 each, so a buffer packed for another shape can be refused),
// B's panels as the path's micro-kernel reads them, then Σ_p b[j, p] per row (int32, for the zero point's
// correction); a layer packs its weights once and every call reuses them.
//   scalar: b as it is, n×k bytes;  avx2: strips of 16 columns, k in pairs, int16;  vnni: strips of 32 columns, k in
//   groups of 4, int8. Padding (columns past n, depth past k) is zero, so it adds nothing to a sum.
struct Layout {
  int64_t nr, kstep, elem;  // columns a strip, depth a group, bytes an element
};
Layout layout(int path) {
  if (path == kVnni) return {32, 4, 1};
  if (path == kAvx2) return {16, 2, 2};
  return {1, 1, 1};
}
int64_t panel_bytes(int path, int64_t n, int64_t k) {
  const Layout l = layout(path);
  const int64_t strips = (n + l.nr - 1) / l.nr, kp = (k + l.kstep - 1) / l.kstep * l.kstep;
  return (strips * l.nr * kp * l.elem + 3) / 4 * 4;
}
constexpr int64_t kHeader = 8;
void pack(int path, int64_t n, int64_t k, const int8_t* b, int8_t* packed) {
  const int64_t bytes = panel_bytes(path, n, k);
  std::memset(packed, 0, bytes);
  if (path == kVnni) {
    const int64_t k4 = (k + 3) / 4 * 4;
    for (int64_t j = 0; j < n; j++) {
      int8_t* dst = packed + (j / 32) * 32 * k4 + ((j % 32) / 16) * 64 + (j % 16) * 4;
      for (int64_t p = 0; p < k; p++) dst[(p / 4) * 128 + p % 4] = b[j * k + p];
    }
  } else if (path == kAvx2) {
    const int64_t k2 = (k + 1) / 2 * 2;
    int16_t* bp = reinterpret_cast<int16_t*>(packed);
    for (int64_t j = 0; j < n; j++) {
      int16_t* dst = bp + (j / 16) * 16 * k2 + ((j % 16) / 8) * 16 + (j % 8) * 2;
      for (int64_t p = 0; p < k; p++) dst[(p / 2) * 32 + p % 2] = b[j * k + p];
    }
  } else {
    std::memcpy(packed, b, n * k);
  }
  for (int64_t j = 0; j < n; j++) {
    int32_t sum = 0;
    for (int64_t p = 0; p < k; p++) sum += b[j * k + p];
    std::memcpy(packed + bytes + 4 * j, &sum, 4);
  }
}

template <typename Store>
void gemm_scalar(int64_t m, int64_t n, int64_t k, const uint8_t* a, const int8_t* b, const Store& store) {
  constexpr int64_t NR = 16;
  blocks(m, (n + NR - 1) / NR, m * n * k, 1, [&](int64_t i0, int64_t h, int64_t s0, int64_t ns) {
    int32_t acc[NR];
    for (int64_t i = i0; i < i0 + h; i++)
      for (int64_t j0 = s0 * NR; j0 < std::min(n, (s0 + ns) * NR); j0 += NR) {
        const int64_t w = std::min(NR, n - j0);
        for (int64_t j = 0; j < w; j++) {
          int32_t s = 0;
          const uint8_t* ai = a + i * k;
          const int8_t* bj = b + (j0 + j) * k;
          for (int64_t p = 0; p < k; p++) s += (int32_t)ai[p] * (int32_t)bj[p];
          acc[j] = s;
        }
        store(i, j0, acc, w);
      }
  });
}

#if defined(__x86_64__)

// One MR×(32·S) tile: t[r·32S + 32q + j] = Σ_g dot4(rows[r][4g..4g+3], column j of group g in strip bs[q]). MR·S·2
// zmm accumulators: 8×1 for full row blocks; 4×2, 2×4 and 1×4 for the last rows of a block (a decoding step's
// handful of rows), so that a short block still has 8 or 16 independent vpdpbusd chains and computes no rows it
// does not need.
template <int MR, int S>
__attribute__((target("avx512f,avx512bw,avx512vnni"))) void vnni_tile(int64_t groups, const uint8_t* const* rows, const int8_t* const* bs,
                                                                       int32_t* t) {
  constexpr int NR = 32;
  __m512i c[MR][S][2];
  for (int r = 0; r < MR; r++)
    for (int q = 0; q < S; q++) c[r][q][0] = c[r][q][1] = _mm512_setzero_si512();
  for (int64_t g = 0; g < groups; g++) {
    __m512i b[S][2];
    for (int q = 0; q < S; q++) {
      b[q][0] = _mm512_loadu_si512(bs[q] + g * 128);
      b[q][1] = _mm512_loadu_si512(bs[q] + g * 128 + 64);
    }
#pragma GCC unroll 8
    for (int r = 0; r < MR; r++) {
      int32_t four;
      std::memcpy(&four, rows[r] + g * 4, 4);
      const __m512i av = _mm512_set1_epi32(four);
      for (int q = 0; q < S; q++) {
        c[r][q][0] = _mm512_dpbusd_epi32(c[r][q][0], av, b[q][0]);
        c[r][q][1] = _mm512_dpbusd_epi32(c[r][q][1], av, b[q][1]);
      }
    }
  }
  for (int r = 0; r < MR; r++)
    for (int q = 0; q < S; q++) {
      _mm512_storeu_si512(t + r * NR * S + q * NR, c[r][q][0]);
      _mm512_storeu_si512(t + r * NR * S + q * NR + 16, c[r][q][1]);
    }
}

// AVX-512 VNNI over packed B: A's rows (uint8, `lda` apart, readable to a multiple of 4) broadcast 4 bytes at a time;
// an 8×32 tile is 16 zmm accumulators, one vpdpbusd per 4 products × 16 columns. A block's last h < 8 rows take the
// narrower, wider tiles above (h ≥ 5: 8×1 with the last row repeated).
template <typename Store>
void gemm_vnni(int64_t m, int64_t n, int64_t k, const uint8_t* a, int64_t lda, const int8_t* bp, const Store& store) {
  constexpr int64_t MR = 8, NR = 32;
  const int64_t k4 = (k + 3) / 4 * 4, groups = k4 / 4, strips = (n + NR - 1) / NR;
  blocks(m, strips, m * n * k, MR, [&](int64_t i0, int64_t h0, int64_t s0, int64_t ns) {
    alignas(64) int32_t t[MR * NR];
    const int64_t full = h0 / MR * MR;
    const uint8_t* rows[MR];
    for (int64_t s = s0; s < s0 + ns; s++) {
      const int8_t* bs = bp + s * NR * k4;
      const int64_t j0 = s * NR, w = std::min(NR, n - j0);
      for (int64_t i = i0; i < i0 + full; i += MR) {
        for (int64_t r = 0; r < MR; r++) rows[r] = a + (i + r) * lda;
        vnni_tile<8, 1>(groups, rows, &bs, t);
        for (int64_t r = 0; r < MR; r++) store(i + r, j0, t + r * NR, w);
      }
    }
    const int64_t i = i0 + full, h = h0 - full;
    if (h == 0) return;
    for (int64_t r = 0; r < MR; r++) rows[r] = a + (i + std::min(r, h - 1)) * lda;  // rows past the edge repeat the last
    const int64_t sw = h >= 5 ? 1 : h >= 3 ? 2 : 4;  // strips a tile
    for (int64_t s = s0; s < s0 + ns; s += sw) {
      const int8_t* bs[4];
      for (int64_t q = 0; q < sw; q++) bs[q] = bp + std::min(s + q, s0 + ns - 1) * NR * k4;  // strips past the edge repeat the last
      if (h >= 5) {
        vnni_tile<8, 1>(groups, rows, bs, t);
      } else if (h >= 3) {
        vnni_tile<4, 2>(groups, rows, bs, t);
      } else if (h == 2) {
        vnni_tile<2, 4>(groups, rows, bs, t);
      } else {
        vnni_tile<1, 4>(groups, rows, bs, t);
      }
      for (int64_t q = 0; q < std::min(sw, s0 + ns - s); q++) {
        const int64_t j0 = (s + q) * NR, w = std::min(NR, n - j0);
        for (int64_t r = 0; r < h; r++) store(i + r, j0, t + r * NR * sw + q * NR, w);
      }
    }
  });
}

// One 6×16 tile: t[r·16 + j] = Σ_g madd(rows[r][2g..2g+1], packed column j of pair g).
__attribute__((target("avx2"))) void avx2_tile(int64_t pairs, const int16_t* const* rows, const int16_t* bs, int32_t* t) {
  constexpr int MR = 6, NR = 16;
  __m256i c[MR][2];
  for (int r = 0; r < MR; r++) c[r][0] = c[r][1] = _mm256_setzero_si256();
  for (int64_t g = 0; g < pairs; g++) {
    const __m256i b0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bs + g * 32));
    const __m256i b1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bs + g * 32 + 16));
#pragma GCC unroll 6
    for (int r = 0; r < MR; r++) {
      int32_t two;
      std::memcpy(&two, rows[r] + g * 2, 4);
      const __m256i av = _mm256_set1_epi32(two);
      c[r][0] = _mm256_add_epi32(c[r][0], _mm256_madd_epi16(av, b0));
      c[r][1] = _mm256_add_epi32(c[r][1], _mm256_madd_epi16(av, b1));
    }
  }
  for (int r = 0; r < MR; r++) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(t + r * NR), c[r][0]);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(t + r * NR + 8), c[r][1]);
  }
}

// AVX2, widening: A to int16 (zero-extended), B packed as int16 (sign-extended), pairs of k interleaved; vpmaddwd
// sums two products of at most 255·128 each into an int32 lane, which cannot saturate. A 6×16 tile is 12 ymm
// accumulators.
template <typename Store>
void gemm_avx2(int64_t m, int64_t n, int64_t k, const uint8_t* a, int64_t lda, const int8_t* packed, const Store& store) {
  constexpr int64_t MR = 6, NR = 16;
  const int64_t k2 = (k + 1) / 2 * 2, pairs = k2 / 2, strips = (n + NR - 1) / NR;
  std::vector<int16_t> ap(m * k2, 0);
  for (int64_t i = 0; i < m; i++)
    for (int64_t p = 0; p < k; p++) ap[i * k2 + p] = a[i * lda + p];
  const int16_t* bp = reinterpret_cast<const int16_t*>(packed);
  blocks(m, strips, m * n * k, MR, [&](int64_t i0, int64_t h0, int64_t s0, int64_t ns) {
    alignas(32) int32_t t[MR * NR];
    for (int64_t s = s0; s < s0 + ns; s++) {
      const int16_t* bs = bp + s * NR * k2;
      const int64_t j0 = s * NR, w = std::min(NR, n - j0);
      for (int64_t i = i0; i < i0 + h0; i += MR) {
        const int64_t h = std::min(MR, i0 + h0 - i);
        const int16_t* rows[MR];
        for (int64_t r = 0; r < MR; r++) rows[r] = &ap[(i + std::min(r, h - 1)) * k2];
        avx2_tile(pairs, rows, bs, t);
        for (int64_t r = 0; r < h; r++) store(i + r, j0, t + r * NR, w);
      }
    }
  });
}
#endif

// The product of A (uint8 rows `lda` apart; for VNNI, readable to k rounded up to 4) and packed B on `path`.
template <typename Store>
void run(int path, int64_t m, int64_t n, int64_t k, const uint8_t* a, int64_t lda, const int8_t* packed, const Store& store) {
#if defined(__x86_64__)
  if (path == kVnni) return gemm_vnni(m, n, k, a, lda, packed, store);
  if (path == kAvx2) return gemm_avx2(m, n, k, a, lda, packed, store);
#endif
  std::vector<uint8_t> dense;
  if (lda != k) {  // the scalar loop reads rows k apart
    dense.resize(m * k);
    for (int64_t i = 0; i < m; i++) std::memcpy(&dense[i * k], a + i * lda, k);
    a = dense.data();
  }
  gemm_scalar(m, n, k, a, packed, store);
}

// Rows of A as `path` reads them: k rounded up to 4 for VNNI (the padding is multiplied by B's zero padding).
int64_t row_stride(int path, int64_t k) { return path == kVnni ? (k + 3) / 4 * 4 : k; }

void dequant_product(int64_t m, int64_t n, int64_t k, const uint8_t* qa, int64_t lda, float scale, int32_t zero, const int8_t* packed,
                     const float* w_scale, const float* bias, bool relu, float* y) {
  std::vector<float> mult(n);
  std::vector<int32_t> corr(n, 0);
  for (int64_t j = 0; j < n; j++) mult[j] = scale * w_scale[j];
  const DequantStore store{y, n, mult.data(), corr.data(), bias, relu};
  if (k == 0) {  // a sum of no products: the bias (the packed weights hold nothing to read)
    const int32_t zeros[1] = {0};
    for (int64_t i = 0; i < m; i++)
      for (int64_t j = 0; j < n; j++) store(i, j, zeros, 1);
    return;
  }
  const int8_t* sums = packed + panel_bytes(kBestPath, n, k);
  for (int64_t j = 0; j < n; j++) {
    int32_t s;
    std::memcpy(&s, sums + 4 * j, 4);
    corr[j] = zero * s;
  }
  run(kBestPath, m, n, k, qa, lda, packed, store);
}

}  // namespace

int int8_path(int requested) {
  if (requested <= kBest || requested > kBestPath) return kBestPath;
  return requested;
}

const char* int8_path_name(int path) {
  switch (path) {
    case kVnni: return "avx512-vnni";
    case kAvx2: return "avx2";
    default: return "scalar";
  }
}

int64_t int8_packed_bytes(int64_t n, int64_t k) { return kHeader + panel_bytes(kBestPath, n, k) + 4 * n; }

void int8_pack(int64_t n, int64_t k, const int8_t* w, int8_t* packed) {
  const int32_t shape[2] = {(int32_t)n, (int32_t)k};
  std::memcpy(packed, shape, kHeader);
  pack(kBestPath, n, k, w, packed + kHeader);
}

void int8_packed_shape(const int8_t* packed, int64_t* n, int64_t* k) {
  int32_t shape[2];
  std::memcpy(shape, packed, kHeader);
  *n = shape[0];
  *k = shape[1];
}

int gemm_u8s8(int64_t m, int64_t n, int64_t k, const uint8_t* a, const int8_t* b, int32_t* c, int requested) {
  const int path = int8_path(requested);
  if (k == 0) {
    std::fill(c, c + m * n, 0);
    return path;
  }
  std::vector<int8_t> packed(panel_bytes(path, n, k) + 4 * n);
  pack(path, n, k, b, packed.data());
  const int64_t lda = row_stride(path, k);
  std::vector<uint8_t> padded;
  if (lda != k) {
    padded.assign(m * lda, 0);
    for (int64_t i = 0; i < m; i++) std::memcpy(&padded[i * lda], a + i * k, k);
    a = padded.data();
  }
  run(path, m, n, k, a, lda, packed.data(), RawStore{c, n});
  return path;
}

namespace {
#if defined(__x86_64__)
// quantize_u8's rule 16 floats at a time: the same IEEE division, a round half to even (vrndscaleps, exact on
// [-512, 512]), and clamps. A NaN leaves vmaxps as -512 (its second operand), so it too ends at 0.
__attribute__((target("avx512f,avx512bw"))) int64_t quantize_avx512(const float* x, int64_t count, float scale, int32_t zero, uint8_t* q) {
  const __m512 s = _mm512_set1_ps(scale), lo = _mm512_set1_ps(-512.f), hi = _mm512_set1_ps(512.f), z = _mm512_set1_ps((float)zero);
  const __m512 zero_f = _mm512_setzero_ps(), top = _mm512_set1_ps(255.f);
  int64_t i = 0;
  for (; i + 16 <= count; i += 16) {
    __m512 v = _mm512_div_ps(_mm512_loadu_ps(x + i), s);
    v = _mm512_min_ps(_mm512_max_ps(v, lo), hi);
    v = _mm512_add_ps(_mm512_roundscale_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC), z);
    v = _mm512_min_ps(_mm512_max_ps(v, zero_f), top);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q + i), _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(v)));
  }
  return i;
}
#endif
// Whether quantize_u8 may take the AVX-512 loop (the VNNI path's CPUs have AVX-512 F and BW).
const bool kQuantizeAvx512 = kBestPath == kVnni;
}  // namespace

void quantize_u8(const float* x, int64_t count, float scale, int32_t zero, uint8_t* q) {
  const float z = (float)zero;
  int64_t start = 0;
#if defined(__x86_64__)
  if (kQuantizeAvx512) start = quantize_avx512(x, count, scale, zero, q);
#endif
  for (int64_t i = start; i < count; i++) {
    // x / scale rounded half to even by the 1.5·2^23 trick (exact for |v| < 2^22; beyond ±512 the result saturates
    // anyway), as tfjs's round; branch-free so that the loop vectorises. NaN ends at 0 (v > 0 is false).
    float v = std::min(std::max(x[i] / scale, -512.f), 512.f);
    v = (v + 12582912.f) - 12582912.f + z;
    v = v > 0.f ? v : 0.f;
    v = v < 255.f ? v : 255.f;
    q[i] = (uint8_t)(int32_t)v;
  }
}

namespace {
// Elements a quantization task takes: below two of them the calling thread does it all (an elementwise rule, so
// the split never changes a value).
constexpr int64_t kQuantizeChunk = int64_t(1) << 15;

// quantize_u8 of count floats, spread over the pool in chunks when there are many.
void quantize_parallel(const float* x, int64_t count, float scale, int32_t zero, uint8_t* q) {
  const int64_t chunks = (count + kQuantizeChunk - 1) / kQuantizeChunk;
  if (chunks < 2) return quantize_u8(x, count, scale, zero, q);
  pool().parallel_for((int)chunks, [&](int c) {
    const int64_t i0 = c * kQuantizeChunk;
    quantize_u8(x + i0, std::min(kQuantizeChunk, count - i0), scale, zero, q + i0);
  });
}

// x quantized into rows `lda` apart (the padding left zero).
std::vector<uint8_t> quantize_rows(const float* x, int64_t m, int64_t k, int64_t lda, float scale, int32_t zero) {
  if (lda == k) {
    std::vector<uint8_t> q(m * lda);
    quantize_parallel(x, m * k, scale, zero, q.data());
    return q;
  }
  std::vector<uint8_t> q(m * lda, 0);
  const int64_t per = std::max<int64_t>(1, kQuantizeChunk / std::max<int64_t>(k, 1)), tasks = (m + per - 1) / per;
  const auto task = [&](int t) {
    for (int64_t i = t * per; i < std::min(m, (t + 1) * per); i++) quantize_u8(x + i * k, k, scale, zero, &q[i * lda]);
  };
  if (tasks < 2) {
    task(0);
  } else {
    pool().parallel_for((int)tasks, task);
  }
  return q;
}
}  // namespace

void int8_linear(int64_t m, int64_t n, int64_t k, const float* x, float scale, int32_t zero, const int8_t* packed, const float* w_scale,
                 const float* bias, bool relu, float* y) {
  const int64_t lda = row_stride(kBestPath, k);
  const std::vector<uint8_t> qa = quantize_rows(x, m, k, lda, scale, zero);
  dequant_product(m, n, k, qa.data(), lda, scale, zero, packed + kHeader, w_scale, bias, relu, y);
}

void int8_conv2d(const ConvShape& s, const float* x, float scale, int32_t zero, const int8_t* packed, const float* w_scale, const float* bias,
                 bool relu, float* y) {
  // im2col of the quantized input: one row of kh·kw·c values per output pixel (rows `lda` apart), padding read as
  // the zero point (which stands for 0.0), so that the product with w [co × kh·kw·c] is the convolution.
  std::vector<uint8_t> qx(s.n * s.h * s.w * s.c);
  quantize_parallel(x, (int64_t)qx.size(), scale, zero, qx.data());
  const int64_t k = s.kh * s.kw * s.c, rows = s.n * s.oh * s.ow, lda = row_stride(kBestPath, k);
  std::vector<uint8_t> cols(rows * lda, 0);
  pool().parallel_for((int)s.n, [&](int b) {
    for (int64_t oy = 0; oy < s.oh; oy++)
      for (int64_t ox = 0; ox < s.ow; ox++) {
        uint8_t* row = &cols[((b * s.oh + oy) * s.ow + ox) * lda];
        for (int64_t ky = 0; ky < s.kh; ky++)
          for (int64_t kx = 0; kx < s.kw; kx++) {
            const int64_t iy = oy * s.sh - s.pt + ky * s.dh, ix = ox * s.sw - s.pl + kx * s.dw;
            uint8_t* dst = row + (ky * s.kw + kx) * s.c;
            if (iy < 0 || iy >= s.h || ix < 0 || ix >= s.w)
              std::memset(dst, zero, s.c);
            else
              std::memcpy(dst, &qx[((b * s.h + iy) * s.w + ix) * s.c], s.c);
          }
      }
  });
  dequant_product(rows, s.co, k, cols.data(), lda, scale, zero, packed + kHeader, w_scale, bias, relu, y);
}

}  // namespace loom
