#include "bf16.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <vector>
#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#endif
#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include "elementwise.h"
#include "gemm.h"
#include "pool.h"

namespace loom {
namespace {

enum Mode { kFp32 = 0, kBest = 1, kPortable = 2, kAvx512Bf16 = 3, kAmx = 4, kAmxEmulated = 5 };

bool has_avx512_bf16() {  // asked once
#if defined(__x86_64__)
  static const bool has = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
  }();
  return has;
#else
  return false;
#endif
}
// The packed kernel runs where the CPU has avx512_bf16 and the float kernel is AVX-512 (LOOM_SIMD=avx2 or scalar,
// which cap the float kernel, cap this one too: a comparison run on such a setting uses the portable path).
// Decided on first use (simd_level() is another file's static, initialized in an order C++ does not fix).
bool avx512_bf16_here() {
  static const bool here = has_avx512_bf16() && !std::strcmp(simd_level(), "avx512");
  return here;
}

// AMX (Sapphire Rapids and later Xeons): the CPU has the tiles and their bf16 products (CPUID leaf 7: EDX bit 24
// AMX-TILE, bit 22 AMX-BF16), the float kernel is AVX-512 (LOOM_SIMD caps this path as it does avx512_bf16), and
// Linux grants this process the tiles' 8 KiB of register state (arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA),
// Linux 5.16 and later; the permission is the process's, for every thread). Asked once, on first use.
bool amx_here() {
#if defined(__x86_64__) && defined(__linux__)
  static const bool here = [] {
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return false;
    if (!(edx & (1u << 24)) || !(edx & (1u << 22)) || std::strcmp(simd_level(), "avx512") != 0) return false;
    constexpr long kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
    return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
  }();
  return here;
#else
  return false;
#endif
}

// What a run's bf16 uses: AMX where it runs, else the packed vdpbf16ps kernel where that runs, else the portable
// path. LOOM_BF16=portable asks for the portable path, LOOM_BF16=avx512_bf16 for vdpbf16ps on an AMX host (to compare).
int best_mode() {
  static const int best = [] {
    const char* e = std::getenv("LOOM_BF16");
    if (e && !std::strcmp(e, "portable")) return (int)kPortable;
    if (amx_here() && !(e && !std::strcmp(e, "avx512_bf16"))) return (int)kAmx;
    return avx512_bf16_here() ? (int)kAvx512Bf16 : (int)kPortable;
  }();
  return best;
}

std::atomic<int> mode{kFp32};

// ---------------------------------------------------------------------------------------------------------------
// Portable: both operands rounded into copies (as stored: a transposed operand stays transposed), then the fp32 GEMM.

thread_local std::vector<float> roundA, roundB;

Matrix rounded(const Matrix& x, int64_t rows, int64_t cols, std::vector<float>& buf) {
  const int64_t r = x.trans ? cols : rows, c = x.trans ? rows : cols;  // the stored block
  buf.resize((size_t)(r * c));
  for (int64_t i = 0; i < r; i++) {
    const float* src = x.data + i * x.ld;
    float* dst = buf.data() + i * c;
    for (int64_t j = 0; j < c; j++) dst[j] = bf16_round(src[j]);
  }
  return {buf.data(), c, x.trans};
}

void gemm_portable(int64_t m, int64_t n, int64_t k, const Matrix& a, const Matrix& b, float* c, int64_t ldc, float beta, const float* bias,
                   bool relu, bool parallel, float* b_col_sums) {
  if (b_col_sums) sum3(b.data, b_col_sums, 1, k, n);  // of B's own values: a bias gradient is not a product
  const Matrix ra = rounded(a, m, k, roundA), rb = rounded(b, k, n, roundB);
  sgemm_f32(m, n, k, ra, rb, c, ldc, beta, bias, relu, parallel, nullptr);
}

// ---------------------------------------------------------------------------------------------------------------
// avx512_bf16: B packed once per call into strips of 32 columns, depth in pairs (one 32-bit lane = the bf16 of
// depths p and p+1 of one column, as vdpbf16ps reads them), panels of KC depths; each task packs its block of A
// (14 rows a strip, a pair of depths per 32-bit word) per panel and runs the 14×32 kernel over its strips. Per
// panel, each element of C is one chain of vdpbf16ps from zero in depth order, then stored (first panel, beta 0) or
// added to C: the same sums whichever thread computes a tile, so results do not depend on the thread count.

constexpr int64_t MR = 14, NR = 32, KC = 256, MC = MR * 8;  // KC even: only the last panel has an odd depth

inline uint32_t pair(float lo, float hi) { return (uint32_t)bf16_bits(lo) | ((uint32_t)bf16_bits(hi) << 16); }

// Words of bf16 pairs (depth p in the low half, p + 1 in the high half), the packers' unit. Two sources: `count`
// consecutive floats (a row of A, or a column of a transposed B: depths in order), as (count + 1) / 2 words, a
// missing last depth zero; or two rows r0, r1 of `w` floats (depths p and p + 1 across w columns, r1 null past the
// last depth), as w words. With avx512_bf16, 32 floats a vcvtne2ps2bf16 (the scalar rounding's bits exactly, as
// bf16.test.ts checks; packing element by element was half of a bf16 MNIST training step, perf), else bf16_bits.
void pairs_scalar(const float* src, int64_t count, uint32_t* dst) {
  for (int64_t q = 0; 2 * q < count; q++) dst[q] = pair(src[2 * q], 2 * q + 1 < count ? src[2 * q + 1] : 0.f);
}
void rows_scalar(const float* r0, const float* r1, int64_t w, uint32_t* dst) {
  for (int64_t j = 0; j < w; j++) dst[j] = pair(r0[j], r1 ? r1[j] : 0.f);
}
#if defined(__x86_64__)
__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"))) void pairs_avx512(const float* src, int64_t count, uint32_t* dst) {
  int64_t i = 0;
  for (; i + 32 <= count; i += 32)  // the low half of the result from the second operand: depths in order
    _mm512_storeu_si512(dst + i / 2, (__m512i)_mm512_cvtne2ps_pbh(_mm512_loadu_ps(src + i + 16), _mm512_loadu_ps(src + i)));
  if (i < count) {
    const int64_t left = count - i;  // 1..31 floats: masked loads read zeros past them
    const __mmask16 lo = (__mmask16)((1u << std::min<int64_t>(left, 16)) - 1), hi = (__mmask16)(left > 16 ? (1u << (left - 16)) - 1 : 0);
    const __m512i v = (__m512i)_mm512_cvtne2ps_pbh(_mm512_maskz_loadu_ps(hi, src + i + 16), _mm512_maskz_loadu_ps(lo, src + i));
    _mm512_mask_storeu_epi32(dst + i / 2, (__mmask16)((1u << ((left + 1) / 2)) - 1), v);
  }
}
__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"))) void rows_avx512(const float* r0, const float* r1, int64_t w, uint32_t* dst) {
  // cvtne2ps2bf16(r1, r0) holds r0's 16 values then r1's; the permutation interleaves them into 16 pairs.
  const __m512i order = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1,
                                         16, 0);
  for (int64_t j = 0; j < w; j += 16) {
    const __mmask16 m = (__mmask16)(w - j >= 16 ? 0xffff : (1u << (w - j)) - 1);
    const __m512 a = _mm512_maskz_loadu_ps(m, r0 + j), b = r1 ? _mm512_maskz_loadu_ps(m, r1 + j) : _mm512_setzero_ps();
    _mm512_mask_storeu_epi32(dst + j, m, _mm512_permutexvar_epi16(order, (__m512i)_mm512_cvtne2ps_pbh(b, a)));
  }
}
#endif
void to_pairs(const float* src, int64_t count, uint32_t* dst) {
#if defined(__x86_64__)
  if (has_avx512_bf16()) return pairs_avx512(src, count, dst);
#endif
  pairs_scalar(src, count, dst);
}
void rows_to_pairs(const float* r0, const float* r1, int64_t w, uint32_t* dst) {
#if defined(__x86_64__)
  if (has_avx512_bf16()) return rows_avx512(r0, r1, w, dst);
#endif
  rows_scalar(r0, r1, w, dst);
}

// Depths k0 .. k0+kc of `w` vectors x0.. of a stored matrix as pairs × `width` words (word q·width + x: depths 2q and
// 2q + 1 of vector x), zero past w and past kc. The depths run along the stored rows' direction or across it:
// `depth_rows` when depth p of vector x is data[p·ld + x] (an untransposed B, a transposed A), else data[x·ld + p].
void pack_pairs(const float* data, int64_t ld, bool depth_rows, int64_t k0, int64_t kc, int64_t x0, int64_t w, int64_t width, uint32_t* dst) {
  const int64_t pairs = (kc + 1) / 2;
  if (depth_rows) {  // depths p, p + 1 are two stored rows
    for (int64_t q = 0; q < pairs; q++) {
      const float* r0 = data + (k0 + 2 * q) * ld + x0;
      uint32_t* d = dst + q * width;
      rows_to_pairs(r0, 2 * q + 1 < kc ? r0 + ld : nullptr, w, d);
      for (int64_t x = w; x < width; x++) d[x] = 0;
    }
    return;
  }
  uint32_t vector[KC / 2];  // one vector's depths in order
  for (int64_t x = 0; x < width; x++) {
    if (x < w) to_pairs(data + (x0 + x) * ld + k0, kc, vector);
    for (int64_t q = 0; q < pairs; q++) dst[q * width + x] = x < w ? vector[q] : 0;
  }
}
// op(B)[k0 .. k0+kc, j0 .. j0+w) as one strip: `rows` (at least the depth's pairs) × 32 words, zero past w columns
// and past kc depths.
void pack_b_strip(const Matrix& b, int64_t k0, int64_t kc, int64_t j0, int64_t w, uint32_t* dst, int64_t rows = -1) {
  const int64_t pairs = (kc + 1) / 2;
  if (rows > pairs) std::memset(dst + pairs * NR, 0, (size_t)((rows - pairs) * NR) * 4);
  pack_pairs(b.data, b.ld, !b.trans, k0, kc, j0, w, NR, dst);
}
// op(A)[i0 .. i0+h, k0 .. k0+kc) as one strip: pairs × 14 words, zero past h rows and past kc depths.
void pack_a_strip(const Matrix& a, int64_t i0, int64_t h, int64_t k0, int64_t kc, uint32_t* dst) {
  pack_pairs(a.data, a.ld, a.trans, k0, kc, i0, h, MR, dst);
}

thread_local PackBuffer<uint32_t> packedB, packedA;

// fn(0 .. tasks) over the pool when `threads`, else in order on this thread.
void run_tasks(bool threads, int64_t tasks, const std::function<void(int)>& fn) {
  if (threads)
    pool().parallel_for((int)tasks, fn);
  else
    for (int t = 0; t < (int)tasks; t++) fn(t);
}

// op(B)[k × n] packed for the bf16 kernels (in this thread's packedB), every panel of KC depths as strips of NR
// columns: panel p starts at word p·(KC/2)·NR·strips, strip s of it at + s·rows(p)·NR, where rows(p) is at least
// the panel's pairs of depths (the strips zero-padded past them).
template <class Rows>
const uint32_t* pack_b_panels(const Matrix& b, int64_t k, int64_t n, bool threads, Rows rows) {
  const int64_t strips = (n + NR - 1) / NR, panels = (k + KC - 1) / KC;
  uint32_t* bp = packedB.get((size_t)(panels * (KC / 2) * NR * strips));
  run_tasks(threads, panels * strips, [&](int t) {
    const int64_t p = t / strips, s = t % strips, k0 = p * KC;
    pack_b_strip(b, k0, std::min(KC, k - k0), s * NR, std::min(NR, n - s * NR), bp + p * (KC / 2) * NR * strips + s * rows(p) * NR, rows(p));
  });
  return bp;
}

// The tasks of a bf16 product: each a block of `block` rows of C (its A packed once per panel) times a run of strips;
// with few row blocks the strips are split into runs too, for enough tasks to balance the threads.
struct Tasks {
  int64_t m, strips, block, per_run, runs, count;
  Tasks(int64_t m_, int64_t strips_, int64_t block_, bool threads) : m(m_), strips(strips_), block(block_) {
    const int64_t row_blocks = (m + block - 1) / block;
    const int64_t split = threads ? std::min(strips, (8 * pool().size() + row_blocks - 1) / row_blocks) : 1;
    per_run = (strips + split - 1) / split;
    runs = (strips + per_run - 1) / per_run;
    count = row_blocks * runs;
  }
  struct Task {
    int64_t i0, rows, s0, s1;  // rows i0 .. i0 + rows, strips s0 .. s1
  };
  Task at(int64_t t) const {
    const int64_t i0 = t / runs * block, s0 = t % runs * per_run;
    return {i0, std::min(block, m - i0), s0, std::min(strips, s0 + per_run)};
  }
};

#if defined(__x86_64__)
// C[h×w] (=|+=) Σ_q A-pairs[q] · B-pairs[q]: 28 zmm accumulators, 2 of B, 1 broadcast of A.
__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"))) void kernel_bf16(int64_t pairs, const uint32_t* a, const uint32_t* b, float* c,
                                                                               int64_t ldc, int64_t h, int64_t w, bool accumulate) {
  for (int64_t i = 0; i < h; i++) __builtin_prefetch(c + i * ldc, 1), __builtin_prefetch(c + i * ldc + NR - 1, 1);
  __m512 r[MR][2];
#pragma GCC unroll 14
  for (int i = 0; i < MR; i++) r[i][0] = _mm512_setzero_ps(), r[i][1] = _mm512_setzero_ps();
  for (int64_t q = 0; q < pairs; q++, a += MR, b += NR) {
    const __m512bh b0 = (__m512bh)_mm512_load_si512(b), b1 = (__m512bh)_mm512_load_si512(b + 16);
#pragma GCC unroll 14
    for (int i = 0; i < MR; i++) {
      const __m512bh ai = (__m512bh)_mm512_set1_epi32((int)a[i]);
      r[i][0] = _mm512_dpbf16_ps(r[i][0], ai, b0);
      r[i][1] = _mm512_dpbf16_ps(r[i][1], ai, b1);
    }
  }
  if (h == MR && w == NR) {
#pragma GCC unroll 14
    for (int i = 0; i < MR; i++) {
      float* ci = c + i * ldc;
      _mm512_storeu_ps(ci, accumulate ? _mm512_add_ps(_mm512_loadu_ps(ci), r[i][0]) : r[i][0]);
      _mm512_storeu_ps(ci + 16, accumulate ? _mm512_add_ps(_mm512_loadu_ps(ci + 16), r[i][1]) : r[i][1]);
    }
    return;
  }
  alignas(64) float t[MR * NR];  // a partial tile at the right or bottom edge of C
  for (int i = 0; i < MR; i++) _mm512_store_ps(t + i * NR, r[i][0]), _mm512_store_ps(t + i * NR + 16, r[i][1]);
  for (int64_t i = 0; i < h; i++)
    for (int64_t j = 0; j < w; j++) c[i * ldc + j] = accumulate ? c[i * ldc + j] + t[i * NR + j] : t[i * NR + j];
}
#endif

void gemm_avx512_bf16(int64_t m, int64_t n, int64_t k, const Matrix& a, const Matrix& b, float* c, int64_t ldc, float beta, const float* bias,
                      bool relu, bool parallel, float* b_col_sums) {
#if defined(__x86_64__)
  if (b_col_sums) sum3(b.data, b_col_sums, 1, k, n);  // of B's own values: a bias gradient is not a product
  const int64_t strips = (n + NR - 1) / NR, panels = (k + KC - 1) / KC;
  const auto pairs_of = [&](int64_t panel) { return (std::min(KC, k - panel * KC) + 1) / 2; };
  const bool threads = parallel && pool().size() > 1 && (double)m * n * k >= (1 << 18);
  const uint32_t* bp = pack_b_panels(b, k, n, threads, pairs_of);
  const Tasks tasks(m, strips, MC, threads);
  run_tasks(threads, tasks.count, [&](int t) {
    const auto [i0, mc, s0, s1] = tasks.at(t);
    uint32_t* ap = packedA.get((size_t)(MC * KC / 2));
    for (int64_t p = 0; p < panels; p++) {
      const int64_t k0 = p * KC, kc = std::min(KC, k - k0), pairs = pairs_of(p);
      const bool accumulate = p > 0 || beta != 0.f;
      for (int64_t ir = 0; ir < mc; ir += MR) pack_a_strip(a, i0 + ir, std::min(MR, mc - ir), k0, kc, ap + ir / MR * pairs * MR);
      const uint32_t* panel = bp + p * (KC / 2) * NR * strips;
      for (int64_t s = s0; s < s1; s++)
        for (int64_t ir = 0; ir < mc; ir += MR)
          kernel_bf16(pairs, ap + ir / MR * pairs * MR, panel + s * pairs * NR, c + (i0 + ir) * ldc + s * NR, ldc, std::min(MR, mc - ir),
                      std::min(NR, n - s * NR), accumulate);
    }
    const int64_t j0 = s0 * NR;
    epilogue(c + i0 * ldc + j0, ldc, mc, std::min(n, s1 * NR) - j0, bias ? bias + j0 : nullptr, relu);
  });
#else
  gemm_portable(m, n, k, a, b, c, ldc, beta, bias, relu, parallel, b_col_sums);
#endif
}

// ---------------------------------------------------------------------------------------------------------------
// AMX (Sapphire Rapids and later Xeons): tdpbf16ps on tile registers (Intel SDM vol. 2, TDPBF16PS; Intel
// Architecture Instruction Set Extensions Programming Reference, ch. 3). One instruction multiplies a tile of A
// (16 rows × 16 pairs of depths) by a tile of B (16 pairs × 16 columns, each 32-bit word a pair of depths of one
// column: vdpbf16ps's layout, so B is packed as for that kernel, its depth padded to whole tiles) into a 16×16 fp32
// tile of C. A call computes a 32×32 block of C in tiles 0-3 from A's two 16-row halves (tiles 4, 5) and B's two
// 16-column halves (6, 7), 32 depths a step. Per panel, each element of C is one chain from zero, in depth order
// (a pair of products at a time, as vdpbf16ps), then stored or added to C: the same sums whichever thread computes
// a block. A is packed as 32-row strips, each row its panel's depth as pairs (padded with zeros to whole tiles).
//
// The same loop runs on an emulation of the tiles (mode 5, "amx, emulated": plain C++ following the SDM's
// pseudo-code, two fp32 additions per pair, denormal sums flushed to zero), so the packing and the tiles' strides
// are tested on every machine; the instructions themselves only run, and are only tested, on a CPU with AMX.
constexpr int64_t AMR = 32, AMC = AMR * 4;  // rows of C a call computes; rows of A a task packs per panel

// op(A)[i0 .. i0+h, k0 .. k0+kc) as one 32-row strip: row i is `rows` words (pairs of depths), zero past h rows,
// past kc depths and past the depth's pairs.
void pack_a_amx(const Matrix& a, int64_t i0, int64_t h, int64_t k0, int64_t kc, int64_t rows, uint32_t* dst) {
  const int64_t pairs = (kc + 1) / 2;
  if (!a.trans) {  // a row's depths in order: its words as they lie
    for (int64_t i = 0; i < AMR; i++) {
      uint32_t* d = dst + i * rows;
      if (i < h) to_pairs(a.data + (i0 + i) * a.ld + k0, kc, d);
      std::memset(d + (i < h ? pairs : 0), 0, (size_t)(rows - (i < h ? pairs : 0)) * 4);
    }
    return;
  }
  uint32_t words[AMR];  // pair q of rows i0.. (two rows of the stored A), one word a row
  for (int64_t q = 0; q < pairs; q++) {
    const float* r0 = a.data + (k0 + 2 * q) * a.ld + i0;
    rows_to_pairs(r0, 2 * q + 1 < kc ? r0 + a.ld : nullptr, h, words);
    for (int64_t i = 0; i < AMR; i++) dst[i * rows + q] = i < h ? words[i] : 0;
  }
  for (int64_t i = 0; i < AMR; i++) std::memset(dst + i * rows + pairs, 0, (size_t)(rows - pairs) * 4);
}

// The 32×32 block of C into t (rows NR floats apart) from `steps` steps of 32 depths: A's strip at a (rows lda words
// apart), B's strip at b (NR words a pair). ZERO, LOAD, DP and STORE are the tile operations, real or emulated.
#define LOOM_AMX_BLOCK(ZERO, LOAD, DP, STORE)                                                           \
  ZERO(0);                                                                                              \
  ZERO(1);                                                                                              \
  ZERO(2);                                                                                              \
  ZERO(3);                                                                                              \
  for (int64_t s = 0; s < steps; s++) {                                                                 \
    LOAD(4, a + s * 16, lda * 4);                                                                       \
    LOAD(5, a + 16 * lda + s * 16, lda * 4);                                                            \
    LOAD(6, b + s * 16 * NR, NR * 4);                                                                   \
    LOAD(7, b + s * 16 * NR + 16, NR * 4);                                                              \
    DP(0, 4, 6);                                                                                        \
    DP(1, 4, 7);                                                                                        \
    DP(2, 5, 6);                                                                                        \
    DP(3, 5, 7);                                                                                        \
  }                                                                                                     \
  STORE(0, t, NR * 4);                                                                                  \
  STORE(1, t + 16, NR * 4);                                                                             \
  STORE(2, t + 16 * NR, NR * 4);                                                                        \
  STORE(3, t + 16 * NR + 16, NR * 4);

// The tile configuration (ldtilecfg's 64 bytes, palette 1): tiles 0-7 all 16 rows of 64 bytes.
struct alignas(64) TileConfig {
  uint8_t palette = 1, start_row = 0, reserved[14] = {};
  uint16_t colsb[16] = {64, 64, 64, 64, 64, 64, 64, 64};
  uint8_t rows[16] = {16, 16, 16, 16, 16, 16, 16, 16};
};
static_assert(sizeof(TileConfig) == 64, "ldtilecfg reads 64 bytes");

#if defined(__x86_64__)
// GCC's tile intrinsics are asm statements that tell the compiler nothing about memory: the barriers keep the
// packing's stores before the loads and the reads of t after the stores.
#define LOOM_TZ(i) _tile_zero(i)
#define LOOM_TL(i, p, stride) _tile_loadd(i, p, stride)
#define LOOM_TD(c, x, y) _tile_dpbf16ps(c, x, y)
#define LOOM_TS(i, p, stride) _tile_stored(i, p, stride)
__attribute__((target("amx-tile,amx-bf16"))) void amx_begin() {
  static const TileConfig config;
  _tile_loadconfig(&config);
}
__attribute__((target("amx-tile,amx-bf16"))) void amx_end() { _tile_release(); }
__attribute__((target("amx-tile,amx-bf16"))) void amx_block(int64_t steps, const uint32_t* a, int64_t lda, const uint32_t* b, float* t) {
  __asm__ volatile("" ::: "memory");
  LOOM_AMX_BLOCK(LOOM_TZ, LOOM_TL, LOOM_TD, LOOM_TS)
  __asm__ volatile("" ::: "memory");
}
#undef LOOM_TZ
#undef LOOM_TL
#undef LOOM_TD
#undef LOOM_TS
#endif

// The tiles in memory, operated on as the SDM's pseudo-code says (TILEZERO, TILELOADD, TILESTORED, TDPBF16PS with
// palette 1's 16 × 64-byte tiles): for each row m of C and each pair k, C[m][n] += A[m][2k]·B[k][2n], then
// += A[m][2k+1]·B[k][2n+1], each product exact in fp32 and each sum rounded to nearest, denormal sums to zero.
struct EmulatedTiles {
  alignas(64) uint8_t tile[8][16][64];
  void zero(int i) { std::memset(tile[i], 0, sizeof tile[i]); }
  void load(int i, const void* p, int64_t stride) {
    for (int r = 0; r < 16; r++) std::memcpy(tile[i][r], static_cast<const uint8_t*>(p) + r * stride, 64);
  }
  void store(int i, void* p, int64_t stride) {
    for (int r = 0; r < 16; r++) std::memcpy(static_cast<uint8_t*>(p) + r * stride, tile[i][r], 64);
  }
  static float bf16(const uint8_t* row, int index) {
    uint16_t h;
    std::memcpy(&h, row + 2 * index, 2);
    const uint32_t u = (uint32_t)h << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  }
  static float ftz(float x) { return std::fabs(x) < 1.17549435e-38f ? std::copysign(0.f, x) : x; }
  void dp(int c, int x, int y) {
    for (int m = 0; m < 16; m++)
      for (int n = 0; n < 16; n++) {
        float acc;
        std::memcpy(&acc, tile[c][m] + 4 * n, 4);
        for (int k = 0; k < 16; k++) {
          acc = ftz(acc + bf16(tile[x][m], 2 * k) * bf16(tile[y][k], 2 * n));
          acc = ftz(acc + bf16(tile[x][m], 2 * k + 1) * bf16(tile[y][k], 2 * n + 1));
        }
        std::memcpy(tile[c][m] + 4 * n, &acc, 4);
      }
  }
};
thread_local EmulatedTiles emulated_tiles;
void amx_block_emulated(int64_t steps, const uint32_t* a, int64_t lda, const uint32_t* b, float* t) {
  EmulatedTiles& e = emulated_tiles;
#define LOOM_TZ(i) e.zero(i)
#define LOOM_TL(i, p, stride) e.load(i, p, stride)
#define LOOM_TD(c, x, y) e.dp(c, x, y)
#define LOOM_TS(i, p, stride) e.store(i, p, stride)
  LOOM_AMX_BLOCK(LOOM_TZ, LOOM_TL, LOOM_TD, LOOM_TS)
#undef LOOM_TZ
#undef LOOM_TL
#undef LOOM_TD
#undef LOOM_TS
}
#undef LOOM_AMX_BLOCK

// As gemm_avx512_bf16, with 32-row strips of A and the blocks on AMX (or its emulation; mode 4 is only ever set
// where amx_here(), so elsewhere this runs emulated).
void gemm_amx(bool emulated, int64_t m, int64_t n, int64_t k, const Matrix& a, const Matrix& b, float* c, int64_t ldc, float beta, const float* bias,
              bool relu, bool parallel, float* b_col_sums) {
  if (b_col_sums) sum3(b.data, b_col_sums, 1, k, n);  // of B's own values: a bias gradient is not a product
  const int64_t strips = (n + NR - 1) / NR, panels = (k + KC - 1) / KC;
  // A panel's pairs of depths, padded to whole tiles of 16 (KC / 2 = 128 pairs: only the last panel is padded).
  const auto rows_of = [&](int64_t panel) { return ((std::min(KC, k - panel * KC) + 1) / 2 + 15) / 16 * 16; };
  const bool threads = parallel && pool().size() > 1 && (double)m * n * k >= (1 << 18);
  const uint32_t* bp = pack_b_panels(b, k, n, threads, rows_of);
  const Tasks tasks(m, strips, AMC, threads);
  run_tasks(threads, tasks.count, [&](int t) {
    const auto [i0, mc, s0, s1] = tasks.at(t);
    uint32_t* ap = packedA.get((size_t)(AMC * KC / 2));
#if defined(__x86_64__)
    if (!emulated) amx_begin();
#endif
    alignas(64) float tile[AMR * NR];
    for (int64_t p = 0; p < panels; p++) {
      const int64_t k0 = p * KC, kc = std::min(KC, k - k0), rows = rows_of(p);
      const bool accumulate = p > 0 || beta != 0.f;
      for (int64_t ir = 0; ir < mc; ir += AMR) pack_a_amx(a, i0 + ir, std::min(AMR, mc - ir), k0, kc, rows, ap + ir * rows);
      const uint32_t* panel = bp + p * (KC / 2) * NR * strips;
      for (int64_t s = s0; s < s1; s++)
        for (int64_t ir = 0; ir < mc; ir += AMR) {
#if defined(__x86_64__)
          if (!emulated)
            amx_block(rows / 16, ap + ir * rows, rows, panel + s * rows * NR, tile);
          else
#endif
            amx_block_emulated(rows / 16, ap + ir * rows, rows, panel + s * rows * NR, tile);
          const int64_t h = std::min(AMR, mc - ir), w = std::min(NR, n - s * NR);
          float* cb = c + (i0 + ir) * ldc + s * NR;
          for (int64_t i = 0; i < h; i++)
            for (int64_t j = 0; j < w; j++) cb[i * ldc + j] = accumulate ? cb[i * ldc + j] + tile[i * NR + j] : tile[i * NR + j];
        }
    }
#if defined(__x86_64__)
    if (!emulated) amx_end();
#endif
    const int64_t j0 = s0 * NR;
    epilogue(c + i0 * ldc + j0, ldc, mc, std::min(n, s1 * NR) - j0, bias ? bias + j0 : nullptr, relu);
  });
}

}  // namespace

int set_gemm_precision(int requested) {
  int m = requested;
  if (m == kBest) m = best_mode();
  if (m == kAmx && !amx_here()) m = kAvx512Bf16;
  if (m == kAvx512Bf16 && !avx512_bf16_here()) m = kPortable;
  mode.store(m);
  return m;
}
int gemm_precision() { return mode.load(std::memory_order_relaxed); }
const char* precision_name(int m) {
  switch (m) {
    case kFp32: return "fp32";
    case kPortable: return "bf16 (portable)";
    case kAvx512Bf16: return "bf16 (avx512_bf16)";
    case kAmx: return "bf16 (amx)";
    case kAmxEmulated: return "bf16 (amx, emulated)";
    default: return "unknown";
  }
}
const char* best_bf16_path() {
  const int m = best_mode();
  return m == kAmx ? "amx" : m == kAvx512Bf16 ? "avx512_bf16" : "portable";
}

bool sgemm_bf16(int64_t m, int64_t n, int64_t k, const Matrix& a, const Matrix& b, float* c, int64_t ldc, float beta, const float* bias,
                bool relu, bool parallel, float* b_col_sums) {
  const int m_ = gemm_precision();
  if (m_ == kFp32 || m <= 0 || n <= 0 || k <= 0) return false;  // nothing to round: the fp32 path
  if (m_ == kAvx512Bf16)
    gemm_avx512_bf16(m, n, k, a, b, c, ldc, beta, bias, relu, parallel, b_col_sums);
  else if (m_ == kAmx || m_ == kAmxEmulated)
    gemm_amx(m_ == kAmxEmulated, m, n, k, a, b, c, ldc, beta, bias, relu, parallel, b_col_sums);
  else
    gemm_portable(m, n, k, a, b, c, ldc, beta, bias, relu, parallel, b_col_sums);
  return true;
}

#if defined(__x86_64__)
__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"))) static void round_vector(const float* x, float* y, int64_t count) {
  int64_t i = 0;
  for (; i + 32 <= count; i += 32) {
    // vcvtne2ps2bf16: the second operand's 16 values go to the low half, the first's to the high half.
    alignas(64) uint16_t h[32];
    _mm512_store_si512(h, (__m512i)_mm512_cvtne2ps_pbh(_mm512_loadu_ps(x + i + 16), _mm512_loadu_ps(x + i)));
    for (int j = 0; j < 32; j++) {
      const uint32_t u = (uint32_t)h[j] << 16;
      std::memcpy(y + i + j, &u, 4);
    }
  }
  for (; i < count; i++) y[i] = bf16_round(x[i]);
}
#endif

int bf16_round_array(const float* x, float* y, int64_t count, int path) {
  const bool vector = path == 2 || (path == 0 && has_avx512_bf16());
#if defined(__x86_64__)
  if (vector && has_avx512_bf16()) {
    round_vector(x, y, count);
    return 2;
  }
#else
  (void)vector;
#endif
  for (int64_t i = 0; i < count; i++) y[i] = bf16_round(x[i]);
  return 1;
}

}  // namespace loom
