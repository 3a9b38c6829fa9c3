#include "gemm.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <unistd.h>
#include <vector>
#if defined(__x86_64__)
#include <immintrin.h>
#elif defined(__aarch64__)
#include <arm_neon.h>
#endif

#include "bf16.h"
#include "elementwise.h"
#include "pool.h"
#include "vec.h"



namespace loom {
namespace {

// One micro-kernel per instruction set, all from the same template (GCC vector extensions): the AVX-512 and
// AVX2 instantiations differ only in vector width and tile shape, so the AVX2 one, which the tests exercise on
// machines without AVX-512, also checks the logic of the other.
//   avx512: 12×32 tile = 24 zmm accumulators + 2 for B + 1 broadcast (of 32 registers), kc 384 (see choose())
//   avx2:    6×16 tile = 12 ymm accumulators + 2 for B + 1 broadcast (of 16 registers)
//   neon:    8×12 tile = 24 q-register accumulators + 3 for B + 2 for A (of 32), by lane (fmla v.4s, v.4s, v.s[l])
//   scalar:  4×8 tile in plain C++ (whatever the compiler's baseline vectorises)
#if defined(__aarch64__)
constexpr int64_t NC = 2016;  // columns of B packed at once (a multiple of every NR: 12 and 8 here; KC·NC·4 bytes, in L2/L3)
#else
constexpr int64_t NC = 2048;  // columns of B packed at once (a multiple of every NR; KC·NC·4 bytes, in L2/L3)
#endif

using Kernel = void (*)(int64_t kc, const float* a, const float* b, int64_t ldb, float* c, int64_t ldc, int64_t h, int64_t w, bool accumulate);
// A full MR-row tile reading an untransposed A in place (rows `lda` floats apart): x86-64's kernels only (Isa::kernel_a).
using KernelA = void (*)(int64_t kc, const float* a, int64_t lda, const float* b, int64_t ldb, float* c, int64_t ldc, int64_t w,
                         bool accumulate);

// C[h×w] (=|+=) A-strip[kc×MR]ᵀ · B-strip[kc×NR], A packed (MR floats per k), B's rows `ldb` floats apart:
// ldb = NR for a packed strip, or B's own row stride when a small product reads B in place. NR = NV·W.
// kPrefetchB (the AVX-512 tile): while B is read in place, each depth also prefetches the same row of the strip
// two strips to the right. B's rows are then a page or more apart, one row per depth, which the hardware
// prefetchers do not follow: the 20 × 1300 · 1300 × 2600 product of an LSTM step ran 2.8x faster (1 thread, Zen 4).
template <int MR, int NV, int W, bool kPrefetchB = false, bool kAInPlace = false>
__attribute__((always_inline)) inline void micro(int64_t kc, const float* a, const float* b, int64_t ldb, float* c, int64_t ldc, int64_t h,
                                                 int64_t w, bool accumulate, int64_t lda = 0) {
  typedef float V __attribute__((vector_size(W * 4)));                 // aligned: packed B
  typedef float VU __attribute__((vector_size(W * 4), aligned(4)));    // unaligned: rows of C, B read in place
  constexpr int NR = NV * W;
  for (int64_t i = 0; i < h; i++) {  // C's tile is needed at the end: start fetching it now
    __builtin_prefetch(c + i * ldc, 1);
    __builtin_prefetch(c + i * ldc + NR - 1, 1);
  }
  V r[MR][NV];
#pragma GCC unroll 32
  for (int i = 0; i < MR; i++)
#pragma GCC unroll 4
    for (int j = 0; j < NV; j++) r[i][j] = V{};
  auto step = [&](const float* ap, const float* bp) __attribute__((always_inline)) {
    V bv[NV];
#pragma GCC unroll 4
    for (int j = 0; j < NV; j++) bv[j] = *reinterpret_cast<const VU*>(bp + j * W);
#pragma GCC unroll 32
    for (int i = 0; i < MR; i++)
#pragma GCC unroll 4
      for (int j = 0; j < NV; j++) r[i][j] += ap[kAInPlace ? i * lda : i] * bv[j];  // one FMA (-ffp-contract=fast) with a broadcast load
  };
  constexpr int64_t AS = kAInPlace ? 1 : MR;  // A's step along the depth
  if (kPrefetchB && ldb != NR) {
    for (int64_t p = 0; p < kc; p++, a += AS, b += ldb) {
      __builtin_prefetch(b + 2 * NR);  // never faults, past B's last column included
      __builtin_prefetch(b + 2 * NR + NR / 2);
      step(a, b);
    }
  } else {
    for (int64_t p = 0; p < kc; p++, a += AS, b += ldb) step(a, b);
  }
  if (h == MR && w == NR) {
#pragma GCC unroll 32
    for (int i = 0; i < MR; i++)
#pragma GCC unroll 4
      for (int j = 0; j < NV; j++) {
        VU* ci = reinterpret_cast<VU*>(c + i * ldc + j * W);
        *ci = accumulate ? *ci + r[i][j] : r[i][j];
      }
    return;
  }
  alignas(64) float t[MR * NR];  // partial tile at the right or bottom edge of C
  for (int i = 0; i < MR; i++)
    for (int j = 0; j < NV; j++) *reinterpret_cast<V*>(t + i * NR + j * W) = r[i][j];
  for (int64_t i = 0; i < h; i++)
    for (int64_t j = 0; j < w; j++) c[i * ldc + j] = accumulate ? c[i * ldc + j] + t[i * NR + j] : t[i * NR + j];
}

#if defined(__x86_64__)
__attribute__((target("avx512f,fma"))) void kernel_avx512(int64_t kc, const float* a, const float* b, int64_t ldb, float* c, int64_t ldc,
                                                          int64_t h, int64_t w, bool acc) {
  micro<12, 2, 16, true>(kc, a, b, ldb, c, ldc, h, w, acc);
}
__attribute__((target("avx2,fma"))) void kernel_avx2(int64_t kc, const float* a, const float* b, int64_t ldb, float* c, int64_t ldc, int64_t h,
                                                    int64_t w, bool acc) {
  micro<6, 2, 8>(kc, a, b, ldb, c, ldc, h, w, acc);
}
// The same tiles reading an untransposed A in place (its rows `lda` floats apart) instead of from a packed strip.
__attribute__((target("avx512f,fma"))) void kernel_avx512_a(int64_t kc, const float* a, int64_t lda, const float* b, int64_t ldb, float* c,
                                                            int64_t ldc, int64_t w, bool acc) {
  micro<12, 2, 16, true, true>(kc, a, b, ldb, c, ldc, 12, w, acc, lda);
}
__attribute__((target("avx2,fma"))) void kernel_avx2_a(int64_t kc, const float* a, int64_t lda, const float* b, int64_t ldb, float* c,
                                                      int64_t ldc, int64_t w, bool acc) {
  micro<6, 2, 8, false, true>(kc, a, b, ldb, c, ldc, 6, w, acc, lda);
}
// The AVX-512 tile shape built for AVX2 (GCC splits each 16-wide vector in two): LOOM_SIMD=avx512-on-avx2 runs the
// AVX-512 blocking (12×32 tiles, kc 384, its packers and prefetches) on machines without AVX-512, so the tests
// cover it there too.
__attribute__((target("avx2,fma"))) void kernel_avx512_on_avx2(int64_t kc, const float* a, const float* b, int64_t ldb, float* c,
                                                              int64_t ldc, int64_t h, int64_t w, bool acc) {
  micro<12, 2, 16, true>(kc, a, b, ldb, c, ldc, h, w, acc);
}
#endif
#if defined(__aarch64__)
// The AArch64 micro-kernel with NEON intrinsics: each depth loads the 8 packed floats of A into two q registers and
// the 12 floats of B into three, and multiplies each B vector by one lane of A (fmla by element), so A needs no
// broadcasts. Every element of C is the same in-order chain of fused multiply-adds as in micro() above.
void kernel_neon(int64_t kc, const float* a, const float* b, int64_t ldb, float* c, int64_t ldc, int64_t h, int64_t w, bool accumulate) {
  constexpr int MR = 8, NR = 12;
  for (int64_t i = 0; i < h; i++) {  // C's tile is needed at the end: start fetching it now
    __builtin_prefetch(c + i * ldc, 1);
    __builtin_prefetch(c + i * ldc + NR - 1, 1);
  }
  // 24 named accumulators (an array of them is kept on the stack by GCC 12, a load and store per FMA).
#define LOOM_ACC(i) float32x4_t r##i##0 = vdupq_n_f32(0.f), r##i##1 = r##i##0, r##i##2 = r##i##0;
  LOOM_ACC(0) LOOM_ACC(1) LOOM_ACC(2) LOOM_ACC(3) LOOM_ACC(4) LOOM_ACC(5) LOOM_ACC(6) LOOM_ACC(7)
#undef LOOM_ACC
  for (int64_t p = 0; p < kc; p++, a += MR, b += ldb) {
    const float32x4_t a0 = vld1q_f32(a), a1 = vld1q_f32(a + 4);
    const float32x4_t b0 = vld1q_f32(b), b1 = vld1q_f32(b + 4), b2 = vld1q_f32(b + 8);
#define LOOM_ROW(i, av, l)                     \
  r##i##0 = vfmaq_laneq_f32(r##i##0, b0, av, l); \
  r##i##1 = vfmaq_laneq_f32(r##i##1, b1, av, l); \
  r##i##2 = vfmaq_laneq_f32(r##i##2, b2, av, l);
    LOOM_ROW(0, a0, 0) LOOM_ROW(1, a0, 1) LOOM_ROW(2, a0, 2) LOOM_ROW(3, a0, 3)
    LOOM_ROW(4, a1, 0) LOOM_ROW(5, a1, 1) LOOM_ROW(6, a1, 2) LOOM_ROW(7, a1, 3)
#undef LOOM_ROW
  }
  alignas(16) float t[MR * NR];
#define LOOM_STORE(i) vst1q_f32(t + i * NR, r##i##0), vst1q_f32(t + i * NR + 4, r##i##1), vst1q_f32(t + i * NR + 8, r##i##2);
  LOOM_STORE(0) LOOM_STORE(1) LOOM_STORE(2) LOOM_STORE(3) LOOM_STORE(4) LOOM_STORE(5) LOOM_STORE(6) LOOM_STORE(7)
#undef LOOM_STORE
  if (h == MR && w == NR) {
#pragma GCC unroll 8
    for (int i = 0; i < MR; i++)
#pragma GCC unroll 3
      for (int j = 0; j < NR; j += 4) {
        float* ci = c + i * ldc + j;
        const float32x4_t v = vld1q_f32(t + i * NR + j);
        vst1q_f32(ci, accumulate ? vaddq_f32(vld1q_f32(ci), v) : v);
      }
    return;
  }
  for (int64_t i = 0; i < h; i++)  // partial tile at the right or bottom edge of C
    for (int64_t j = 0; j < w; j++) c[i * ldc + j] = accumulate ? c[i * ldc + j] + t[i * NR + j] : t[i * NR + j];
}
#endif
void kernel_scalar(int64_t kc, const float* a, const float* b, int64_t ldb, float* c, int64_t ldc, int64_t h, int64_t w, bool acc) {
  micro<4, 2, 4>(kc, a, b, ldb, c, ldc, h, w, acc);
}

struct Isa {
  const char* name;
  Kernel kernel;
  int64_t mr, nr;  // the micro-tile
  int64_t kc;      // depth of a packed panel: the kc×nr strip of B (reused across a block of A) and an mr×kc strip of A fit in L1
  int64_t mc;      // rows of A packed at once (a multiple of mr; mc·kc·4 bytes stay in L2)
  double fixed_below;  // with several threads, products of fewer multiply-adds take the fixed split (see sgemm_f32)
  bool balanced_k_groups;  // the k-split's group count is chosen for the shortest longest thread (split_k_groups)
  int64_t k_split_max;     // the largest result (m·n) a deep product is split along k for; larger ones split C
  KernelA kernel_a = nullptr;  // the tile reading A in place (sgemm_serial), where there is one
};

// Chosen once at load: the widest instruction set this CPU has; LOOM_SIMD=avx2|scalar caps it (tests, comparisons).
// On AArch64, NEON (Advanced SIMD) is part of the base architecture: always there, LOOM_SIMD=scalar aside.
Isa choose() {
  const char* cap = std::getenv("LOOM_SIMD");
#if defined(__x86_64__)
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  // AVX-512 (1 thread, Zen 4, GFLOP/s per CPU-second): kc 384, as C is read and written once per 384 depths (with
  // the 14×32 tile and scalar packers, kc 128 ran 81-86 GFLOP/s at n = 512-2048, 256 ran 91-95, 384 94-100; 512
  // and 768 no better on the papers' products), mc 56-336 within noise. The 12×32 tile runs as fast as 14×32 on
  // large products (both ~114 in cache, 97 % of the FMA peak) and pads less: m = 20 (an LSTM's batch) is 24 rows
  // of 12 against 28 of 14 (77 → 90), m = 128 11 strips against 10 of which one holds 2 rows (89 → 95).
  // Products below 2^31 multiply-adds take the fixed split, and a deep product is split along k only for a result
  // of at most 2^17 elements (sgemm_f32).
  if (cap && avx2 && !std::strcmp(cap, "avx512-on-avx2"))
    return {"avx512-on-avx2", kernel_avx512_on_avx2, 12, 32, 384, 12 * 10, double(int64_t(1) << 31), true, int64_t(1) << 17};
  const bool scalar_only = cap && !std::strcmp(cap, "scalar"), no512 = scalar_only || (cap && !std::strcmp(cap, "avx2"));
  if (!no512 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma"))
    return {"avx512", kernel_avx512, 12, 32, 384, 12 * 10, double(int64_t(1) << 31), true, int64_t(1) << 17, kernel_avx512_a};
  if (!scalar_only && avx2) return {"avx2", kernel_avx2, 6, 16, 256, 6 * 16, 0, true, int64_t(1) << 20, kernel_avx2_a};
#elif defined(__aarch64__)
  if (!(cap && !std::strcmp(cap, "scalar"))) return {"neon", kernel_neon, 8, 12, 256, 8 * 16, 0, false, int64_t(1) << 20};
#else
  (void)cap;
#endif
  return {"scalar", kernel_scalar, 4, 8, 256, 4 * 24, 0, false, int64_t(1) << 20};
}
const Isa isa = choose();

using Buffer = PackBuffer<float>;
thread_local Buffer packA, packB;

// C[m×n] (=|+=) op(A)[rows, k0 : k0+kc] · B[kc×n] for m ≤ kFewRows rows of A and B untransposed (rows `ldb` apart):
// the product of decoding one token at a time, a matrix-vector product bound by reading B once. The micro-kernel
// walks NR-wide strips down B's columns, one row stride (a page or more for a wide layer) per step, which defeats
// the hardware prefetchers; this reads each row of B in order instead, into sums of CH columns kept in L1. The
// arithmetic is the micro-kernel's, bit for bit: each element of C is one chain of multiply-adds in depth order,
// starting from zero for this depth block, then stored or added to C.
constexpr int64_t kFewRows = 4;
// Each row of B is prefetched kFewRowsAhead rows before it is read. The hardware prefetchers alone kept one thread
// at ~35 GB/s on a decoding step's products (GPT's 6 blocks, 42 MB of fp32 weights a token, 2-core AMD Zen 5):
// 1.23 ms a token. Prefetched 4, 8 or 16 rows ahead: 41-43 GB/s (8 best; 42-47 in later runs), ~1.0 ms. Two threads
// each reading half of every row (the split by columns) ran 22 GB/s without the prefetch and 35-56 with it, from
// run to run: no steady gain over one, so these products stay on the calling thread (sgemm_f32).
constexpr int64_t kFewRowsAhead = 8;
// B at most kNarrow columns wide, a whole number of vectors (the MNIST CNN's 5408 × 64 dense layer at batch 1): the
// sums of one row of A stay in registers (up to 4 zmm, 8 ymm, 16 xmm) through the whole depth block, one row of B
// after the other. The wide path below keeps its sums in L1 and pays a loop's setup per row of B: ~6.5 ns a row of
// 64 floats (20.6 µs for a 2704 × 64 B in L2 from JavaScript, ~3 µs of it the call; 1 thread, Zen 5). The chains
// are the same: each element of C one multiply-add per depth in order, from zero. Only whole vectors: a partly
// filled one, built element by element, left GCC a multiply and an add in different blocks, which it did not fuse
// (AArch64), while the tiled kernel fuses every multiply-add; the widths it would take stay on the wide path.
constexpr int64_t kNarrow = 64;
template <int L>
__attribute__((always_inline)) inline void few_rows_narrow(int64_t m, int64_t n, int64_t kc, const Matrix& a, int64_t k0, const float* b,
                                                           int64_t ldb, float* c, int64_t ldc, bool accumulate) {
  typedef typename Vec<L>::f V;
  constexpr int NV = kNarrow / L;
  const int nv = (int)(n / L);  // n is a multiple of L, at most kNarrow
  // Every index into the sums is a constant once the loops over v are unrolled, so the sums live in registers (a
  // run-time index put them on the stack, each multiply-add a load and a store).
  const int64_t sa = a.trans ? a.ld : 1;  // A's stride along the depth
  for (int64_t i = 0; i < m; i++) {
    const float* ap = a.data + (a.trans ? k0 * a.ld + i : i * a.ld + k0);
    V acc[NV] = {};
    for (int64_t p = 0; p < kc; p++) {
      const float* __restrict bp = b + p * ldb;
      __builtin_prefetch(bp + kFewRowsAhead * ldb);  // never faults
      const float ai = ap[p * sa];
#pragma GCC unroll 16
      for (int v = 0; v < NV; v++)
        if (v < nv) acc[v] += ai * load_full<L>(bp + v * L);
    }
    float* ci = c + i * ldc;
#pragma GCC unroll 16
    for (int v = 0; v < NV; v++) {
      if (v >= nv) continue;
      V out = acc[v];
      if (accumulate) out += load_full<L>(ci + v * L);
      std::memcpy(ci + v * L, &out, sizeof out);
    }
  }
}
template <int64_t CH>
__attribute__((always_inline)) inline void few_rows_impl(int64_t m, int64_t n, int64_t kc, const Matrix& a, int64_t k0, const float* b, int64_t ldb,
                                                         float* c, int64_t ldc, bool accumulate) {
  // The sums take kFewRows·CH floats whatever m is: m rows of (kFewRows / m)·CH columns. A wider chunk reads more
  // of each row of B at once: one row of A (decoding at batch 1) reads a 1152- or 1536-wide B in one pass, each
  // row after the last (the hardware prefetchers follow it), instead of 2 KiB of each row then a jump to the next.
  alignas(64) float t[kFewRows * CH];
  const int64_t ch = (kFewRows / std::max<int64_t>(m, 1)) * CH;
  for (int64_t j0 = 0; j0 < n; j0 += ch) {
    const int64_t w = std::min(ch, n - j0);
    for (int64_t i = 0; i < m; i++)
      for (int64_t j = 0; j < w; j++) t[i * ch + j] = 0.f;
    for (int64_t p = 0; p < kc; p++) {
      const float* __restrict bp = b + p * ldb + j0;
      for (int64_t j = 0; j < w; j += 16) __builtin_prefetch(bp + kFewRowsAhead * ldb + j);  // never faults, past B's end included
      for (int64_t i = 0; i < m; i++) {
        const float ai = at(a, i, k0 + p);
        float* __restrict ti = t + i * ch;
        for (int64_t j = 0; j < w; j++) ti[j] += ai * bp[j];  // one FMA where the kernel has them (-ffp-contract=fast)
      }
    }
    for (int64_t i = 0; i < m; i++)
      for (int64_t j = 0; j < w; j++) c[i * ldc + j0 + j] = accumulate ? c[i * ldc + j0 + j] + t[i * ch + j] : t[i * ch + j];
  }
}
// C[m×n] (=|+=) op(A)[m×k] · op(B)[k×n] for a tiny product (m·n·k ≤ kSmall: the heads of attention over a decoding
// cache, [1 × dk]·[dk × keys] thousands of times a step), computed straight from A and B: the tiled path's packing
// and its 12×32 tile, mostly padding at these sizes, cost ~20x the product. Bit for bit the tiled path's arithmetic:
// per depth block of `kc` (isa.kc), each element of C is one chain of multiply-adds in depth order from zero, then
// stored or added to C; eight independent chains at a time.
constexpr double kSmall = 32768;
__attribute__((always_inline)) inline void small_impl(int64_t m, int64_t n, int64_t k, int64_t kc_max, const Matrix& a, const Matrix& b, float* c,
                                                      int64_t ldc, float beta) {
  // Up to J = 64 columns at a time (four zmm of independent chains) along B's rows. A transposed B (attention's
  // q kᵀ) read by 4 or more rows of A is first copied into `bt` in row order, so the inner loop runs along
  // contiguous memory; with fewer rows each element is read once anyway, in place. Only where the values are read
  // from changes, not the chains (a beam search's 4,096 heads of 1×12·12×64 a step: ~2x faster).
  constexpr int J = 64;
  alignas(64) float bt[J * 64];  // a transposed block, kc ≤ 64 deep (deeper ones read B in place)
  for (int64_t j0 = 0; j0 < n; j0 += J) {
    const int64_t w = std::min<int64_t>(J, n - j0);
    for (int64_t pc = 0; pc < k; pc += kc_max) {
      const int64_t kc = std::min(kc_max, k - pc);
      const bool staged = b.trans && kc <= 64 && m >= 4;  // one row of A reads each element of B once: no gain
      if (staged)
        for (int64_t jj = 0; jj < w; jj++) {
          const float* col = b.data + (j0 + jj) * b.ld + pc;
          for (int64_t p = 0; p < kc; p++) bt[p * J + jj] = col[p];
        }
      for (int64_t i = 0; i < m; i++) {
        float* ci = c + i * ldc + j0;
        float acc[J] = {};
        for (int64_t p = pc; p < pc + kc; p++) {
          const float ai = at(a, i, p);
          if (staged) {
            const float* __restrict bp = bt + (p - pc) * J;
            for (int64_t jj = 0; jj < w; jj++) acc[jj] += ai * bp[jj];
          } else if (!b.trans) {
            const float* __restrict bp = b.data + p * b.ld + j0;
            for (int64_t jj = 0; jj < w; jj++) acc[jj] += ai * bp[jj];
          } else {
            for (int64_t jj = 0; jj < w; jj++) acc[jj] += ai * at(b, p, j0 + jj);
          }
        }
        const bool accumulate = pc > 0 || beta != 0.f;
        for (int64_t jj = 0; jj < w; jj++) ci[jj] = accumulate ? ci[jj] + acc[jj] : acc[jj];
      }
    }
  }
}
using FewRows = void (*)(int64_t m, int64_t n, int64_t kc, const Matrix& a, int64_t k0, const float* b, int64_t ldb, float* c, int64_t ldc,
                         bool accumulate);
using Small = void (*)(int64_t m, int64_t n, int64_t k, int64_t kc_max, const Matrix& a, const Matrix& b, float* c, int64_t ldc, float beta);
// Each compiled for the kernel's instruction set: FMA or not must match the kernel's for equal results.
#define LOOM_DIRECT_PATHS(suffix, target, L)                                                                                               \
  target void few_rows_##suffix(int64_t m, int64_t n, int64_t kc, const Matrix& a, int64_t k0, const float* b, int64_t ldb, float* c,     \
                                int64_t ldc, bool acc) {                                                                                   \
    if (n <= kNarrow && n % L == 0)                                                                                                        \
      few_rows_narrow<L>(m, n, kc, a, k0, b, ldb, c, ldc, acc);                                                                            \
    else                                                                                                                                   \
      few_rows_impl<512>(m, n, kc, a, k0, b, ldb, c, ldc, acc);                                                                            \
  }                                                                                                                                        \
  target void small_##suffix(int64_t m, int64_t n, int64_t k, int64_t kc_max, const Matrix& a, const Matrix& b, float* c, int64_t ldc,    \
                             float beta) {                                                                                                 \
    small_impl(m, n, k, kc_max, a, b, c, ldc, beta);                                                                                       \
  }
#if defined(__x86_64__)
LOOM_DIRECT_PATHS(avx512, __attribute__((target("avx512f,fma"))), 16)
LOOM_DIRECT_PATHS(avx2, __attribute__((target("avx2,fma"))), 8)
#endif
// Scalar (x86-64's baseline has no FMA, as kernel_scalar) and NEON (fused by the compiler, as kernel_neon).
LOOM_DIRECT_PATHS(base, , 4)
#undef LOOM_DIRECT_PATHS

#if defined(__x86_64__)
// Packing with AVX2 for the 6×16 tiles. The scalar loops below move one float at a time; when C is narrow each
// packed element of A is reused only n/16 times, and packing A took ~25 % of a 2048×1024×256 product (perf).
// Transposing 8×8 blocks in registers makes it a small fraction of that.
__attribute__((target("avx2,fma"))) inline void transpose8(__m256 x[8]) {
  __m256 t[8], u[8];
  for (int i = 0; i < 8; i += 2) t[i] = _mm256_unpacklo_ps(x[i], x[i + 1]), t[i + 1] = _mm256_unpackhi_ps(x[i], x[i + 1]);
  for (int i = 0; i < 8; i += 4) {
    u[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44), u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
    u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44), u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
  }
  for (int i = 0; i < 4; i++) x[i] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x20), x[i + 4] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x31);
}
// x[q] lane l = x[l] lane q before: a 16 × 16 block of floats transposed in registers.
__attribute__((target("avx512f"))) inline void transpose16(__m512 x[16]) {
  __m512 t[16];
  for (int i = 0; i < 16; i += 2) t[i] = _mm512_unpacklo_ps(x[i], x[i + 1]), t[i + 1] = _mm512_unpackhi_ps(x[i], x[i + 1]);
  for (int i = 0; i < 16; i += 4) {
    const __m512d a = _mm512_castps_pd(t[i]), b = _mm512_castps_pd(t[i + 1]), c = _mm512_castps_pd(t[i + 2]), d = _mm512_castps_pd(t[i + 3]);
    x[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c)), x[i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
    x[i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d)), x[i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
  }
  for (int i = 0; i < 16; i += 8)
    for (int j = 0; j < 4; j++)
      t[i + j] = _mm512_shuffle_f32x4(x[i + j], x[i + j + 4], 0x88), t[i + j + 4] = _mm512_shuffle_f32x4(x[i + j], x[i + j + 4], 0xdd);
  for (int i = 0; i < 8; i++) x[i] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88), x[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0xdd);
}

// The first w floats at p, the rest zero; nothing past them is read.
__attribute__((target("avx512f"))) inline __m512 load_first16(const float* p, int w) { return _mm512_maskz_loadu_ps((__mmask16)((1u << w) - 1), p); }
__attribute__((target("avx2"))) inline __m256 load_first8(const float* p, int w) {
  return _mm256_maskload_ps(p, _mm256_cmpgt_epi32(_mm256_set1_epi32(w), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)));
}

// small_impl for 1-3 rows of A against a transposed B (attention's q·kᵀ over a decoding cache: one query against
// up to ~300 keys of d_k floats, each key a row of the stored B). small_impl reads such a B element by element,
// one row stride apart, and multiplies one element at a time (GPT's cached attention at 257 keys: 276 µs a token
// that way, 241 this way, six blocks).
// Here W keys at a time (16 for AVX-512, 8 for AVX2) are loaded W depths at a time as rows, transposed in
// registers, and each of the W transposed vectors (one depth, W keys) is one multiply-add into the keys' sums: the
// same chains as small_impl's, in depth order from zero per depth block of kc_max, so the same bits. The keys past
// the last full group go to small_impl.
#define LOOM_SMALL_BT(suffix, target, V, W, ZERO, LOAD, LOADN, FMA, SET1, STORE, LOADC, ADD, TRANSPOSE)                                       \
  target void small_bt_##suffix(int64_t m, int64_t n, int64_t k, int64_t kc_max, const Matrix& a, const Matrix& b, float* c, int64_t ldc, \
                                float beta) {                                                                                            \
    const int64_t full = n / W * W, sa = a.trans ? a.ld : 1;                                                                             \
    for (int64_t j0 = 0; j0 < full; j0 += W)                                                                                             \
      for (int64_t pc = 0; pc < k; pc += kc_max) {                                                                                       \
        const int64_t kc = std::min(kc_max, k - pc);                                                                                     \
        V acc[3] = {ZERO, ZERO, ZERO};                                                                                                   \
        for (int64_t p0 = pc; p0 < pc + kc; p0 += W) {                                                                                   \
          const int w = (int)std::min<int64_t>(W, pc + kc - p0);                                                                         \
          V x[W];                                                                                                                        \
          for (int l = 0; l < W; l++) x[l] = w == W ? LOAD(b.data + (j0 + l) * b.ld + p0) : LOADN(b.data + (j0 + l) * b.ld + p0, w);    \
          TRANSPOSE(x);                                                                                                                  \
          for (int q = 0; q < w; q++)                                                                                                    \
            for (int i = 0; i < 3; i++)                                                                                                  \
              if (i < m) acc[i] = FMA(SET1(a.data[(a.trans ? i : i * a.ld) + (p0 + q) * sa]), x[q], acc[i]);                             \
        }                                                                                                                                \
        for (int i = 0; i < 3; i++)                                                                                                      \
          if (i < m) STORE(c + i * ldc + j0, pc > 0 || beta != 0.f ? ADD(LOADC(c + i * ldc + j0), acc[i]) : acc[i]);                     \
      }                                                                                                                                  \
    if (full < n) small_##suffix(m, n - full, k, kc_max, a, {b.data + full * b.ld, b.ld, true}, c + full, ldc, beta);                    \
  }
LOOM_SMALL_BT(avx512, __attribute__((target("avx512f,fma"))), __m512, 16, _mm512_setzero_ps(), _mm512_loadu_ps,
              load_first16, _mm512_fmadd_ps, _mm512_set1_ps,
              _mm512_storeu_ps, _mm512_loadu_ps, _mm512_add_ps, transpose16)
LOOM_SMALL_BT(avx2, __attribute__((target("avx2,fma"))), __m256, 8, _mm256_setzero_ps(), _mm256_loadu_ps,
              load_first8, _mm256_fmadd_ps, _mm256_set1_ps, _mm256_storeu_ps, _mm256_loadu_ps, _mm256_add_ps, transpose8)
#undef LOOM_SMALL_BT
// small_impl, or small_bt for few rows of A against a transposed B at least one key group wide.
#define LOOM_SMALL_SELECT(suffix, W)                                                                                                     \
  void small_select_##suffix(int64_t m, int64_t n, int64_t k, int64_t kc_max, const Matrix& a, const Matrix& b, float* c, int64_t ldc,   \
                             float beta) {                                                                                               \
    if (b.trans && m <= 3 && n >= W)                                                                                                     \
      small_bt_##suffix(m, n, k, kc_max, a, b, c, ldc, beta);                                                                            \
    else                                                                                                                                 \
      small_##suffix(m, n, k, kc_max, a, b, c, ldc, beta);                                                                               \
  }
LOOM_SMALL_SELECT(avx512, 16)
LOOM_SMALL_SELECT(avx2, 8)
#undef LOOM_SMALL_SELECT
#endif

struct DirectPaths {
  FewRows few_rows;
  Small small;
};
DirectPaths direct_paths_for(const char* name) {
#if defined(__x86_64__)
  if (!std::strcmp(name, "avx512")) return {few_rows_avx512, small_select_avx512};
  if (!std::strcmp(name, "avx2") || !std::strcmp(name, "avx512-on-avx2")) return {few_rows_avx2, small_select_avx2};
#endif
  return {few_rows_base, small_base};
}
const DirectPaths direct = direct_paths_for(isa.name);

#if defined(__x86_64__)

// One full 6-row strip of op(A) (rows i0.., depth k0..k0+kc) into dst[p*6 + i]. The 8-float stores overlap the
// next slot by two floats, which the next store (or the caller's slack) absorbs.
__attribute__((target("avx2,fma"))) void pack_a6_avx2(const Matrix& a, int64_t i0, int64_t k0, int64_t kc, float* dst) {
  if (a.trans) {  // the strip's 6 floats of each depth are contiguous
    const float* src = a.data + k0 * a.ld + i0;
    for (int64_t p = 0; p < kc; p++, src += a.ld) {
      _mm_storeu_ps(dst + p * 6, _mm_loadu_ps(src));
      _mm_store_sd(reinterpret_cast<double*>(dst + p * 6 + 4), _mm_load_sd(reinterpret_cast<const double*>(src + 4)));
    }
    return;
  }
  const float* r = a.data + i0 * a.ld + k0;
  int64_t p = 0;
  for (; p + 8 <= kc; p += 8) {
    __m256 x[8];
    for (int i = 0; i < 6; i++) x[i] = _mm256_loadu_ps(r + i * a.ld + p);
    x[6] = x[7] = _mm256_setzero_ps();
    transpose8(x);
    for (int j = 0; j < 8; j++) _mm256_storeu_ps(dst + (p + j) * 6, x[j]);
  }
  for (; p < kc; p++)
    for (int i = 0; i < 6; i++) dst[p * 6 + i] = r[i * a.ld + p];
}

// One full 16-column strip of op(B) into dst[p*16 + j]: two vector copies per depth (a 64-byte memcpy call per
// depth cost ~10 % of a 256×2048×1024 product), or, for a transposed B (columns j0.. of op(B) are rows of the
// stored matrix), two 8×8 transposes per 8 depths.
__attribute__((target("avx2,fma"))) void pack_b16_avx2(const Matrix& b, int64_t k0, int64_t kc, int64_t j0, float* dst) {
  if (!b.trans) {
    const float* src = b.data + k0 * b.ld + j0;
    for (int64_t p = 0; p < kc; p++, src += b.ld) {
      _mm256_store_ps(dst + p * 16, _mm256_loadu_ps(src));
      _mm256_store_ps(dst + p * 16 + 8, _mm256_loadu_ps(src + 8));
    }
    return;
  }
  const float* r = b.data + j0 * b.ld + k0;
  int64_t p = 0;
  for (; p + 8 <= kc; p += 8)
    for (int h = 0; h < 2; h++) {
      __m256 x[8];
      for (int j = 0; j < 8; j++) x[j] = _mm256_loadu_ps(r + (h * 8 + j) * b.ld + p);
      transpose8(x);
      for (int q = 0; q < 8; q++) _mm256_store_ps(dst + (p + q) * 16 + h * 8, x[q]);
    }
  for (; p < kc; p++)
    for (int j = 0; j < 16; j++) dst[p * 16 + j] = r[j * b.ld + p];
}
#endif

#if defined(__x86_64__)
// Packing for the 12×32 tiles of both AVX-512 entries (avx512 and avx512-on-avx2: packing only moves floats, so
// AVX2 serves both). The scalar loops of pack_a/pack_b took ~6 % of a 1024³ product and more of the MNIST
// products (1 thread, Zen 4). One full 12-row strip of op(A) into dst[p*12 + i]: for an untransposed A two 8×8
// transposes per 8 depths (rows 0-7; rows 8-11 and four zero rows); the second store of each depth overlaps the
// next depth's slot by four floats, which that depth's first store (or the caller's slack) overwrites. An
// untransposed A's last strip of a block (h < 12 rows: 128 = 10·12 + 8) goes the same way with zero rows.
__attribute__((target("avx2,fma"))) void pack_a12_avx2(const Matrix& a, int64_t i0, int64_t k0, int64_t kc, float* dst, int64_t h = 12) {
  if (a.trans) {  // (full strips only)  // the strip's 12 floats of each depth are contiguous: two overlapping 8-float copies
    const float* src = a.data + k0 * a.ld + i0;
    for (int64_t p = 0; p < kc; p++, src += a.ld) {
      const __m256 lo = _mm256_loadu_ps(src), hi = _mm256_loadu_ps(src + 4);
      _mm256_storeu_ps(dst + p * 12, lo);
      _mm256_storeu_ps(dst + p * 12 + 4, hi);
    }
    return;
  }
  const float* r = a.data + i0 * a.ld + k0;
  int64_t p = 0;
  for (; p + 8 <= kc; p += 8) {
    __m256 x[8], y[8];
    for (int i = 0; i < 8; i++) x[i] = i < h ? _mm256_loadu_ps(r + i * a.ld + p) : _mm256_setzero_ps();
    for (int i = 0; i < 8; i++) y[i] = i < 4 && 8 + i < h ? _mm256_loadu_ps(r + (8 + i) * a.ld + p) : _mm256_setzero_ps();
    transpose8(x);
    transpose8(y);
    for (int j = 0; j < 8; j++) {
      _mm256_storeu_ps(dst + (p + j) * 12, x[j]);
      _mm256_storeu_ps(dst + (p + j) * 12 + 8, y[j]);
    }
  }
  for (; p < kc; p++)
    for (int i = 0; i < 12; i++) dst[p * 12 + i] = i < h ? r[i * a.ld + p] : 0.f;
}

// One full 32-column strip of op(B) into dst[p*32 + j] (dst 32-byte aligned): four vector copies per depth, or,
// for a transposed B, four 8×8 transposes per 8 depths.
__attribute__((target("avx2,fma"))) void pack_b32_avx2(const Matrix& b, int64_t k0, int64_t kc, int64_t j0, float* dst) {
  if (!b.trans) {
    const float* src = b.data + k0 * b.ld + j0;
    for (int64_t p = 0; p < kc; p++, src += b.ld)
      for (int q = 0; q < 4; q++) _mm256_store_ps(dst + p * 32 + q * 8, _mm256_loadu_ps(src + q * 8));
    return;
  }
  const float* r = b.data + j0 * b.ld + k0;
  const int64_t k8 = kc / 8 * 8;
  for (int h = 0; h < 4; h++)  // 8 rows of the stored B at a time, each read in order (8 streams, not 32)
    for (int64_t p = 0; p < k8; p += 8) {
      __m256 x[8];
      for (int j = 0; j < 8; j++) x[j] = _mm256_loadu_ps(r + (h * 8 + j) * b.ld + p);
      transpose8(x);
      for (int q = 0; q < 8; q++) _mm256_store_ps(dst + (p + q) * 32 + h * 8, x[q]);
    }
  for (int64_t p = k8; p < kc; p++)
    for (int j = 0; j < 32; j++) dst[p * 32 + j] = r[j * b.ld + p];
}
#endif

#if defined(__aarch64__)
// Packing for the 8×12 NEON tiles: a full 8-row strip of an untransposed A by 4×4 transposes in registers (the
// scalar loop's stores are 32 bytes apart), and a full 12-column strip of an untransposed B by three vector copies
// per depth (rather than a memcpy call).
void pack_a8_neon(const Matrix& a, int64_t i0, int64_t k0, int64_t kc, float* dst) {
  const float* r = a.data + i0 * a.ld + k0;
  int64_t p = 0;
  for (; p + 4 <= kc; p += 4)
    for (int g = 0; g < 2; g++) {  // rows 4g..4g+3
      const float* q = r + 4 * g * a.ld + p;
      const float32x4_t x0 = vld1q_f32(q), x1 = vld1q_f32(q + a.ld), x2 = vld1q_f32(q + 2 * a.ld), x3 = vld1q_f32(q + 3 * a.ld);
      const float32x4_t t0 = vtrn1q_f32(x0, x1), t1 = vtrn2q_f32(x0, x1), t2 = vtrn1q_f32(x2, x3), t3 = vtrn2q_f32(x2, x3);
      const float64x2_t u0 = vreinterpretq_f64_f32(t0), u1 = vreinterpretq_f64_f32(t1), u2 = vreinterpretq_f64_f32(t2),
                        u3 = vreinterpretq_f64_f32(t3);
      float* d = dst + p * 8 + 4 * g;
      vst1q_f32(d, vreinterpretq_f32_f64(vtrn1q_f64(u0, u2)));       // depth p:   rows 4g..4g+3
      vst1q_f32(d + 8, vreinterpretq_f32_f64(vtrn1q_f64(u1, u3)));   // depth p+1
      vst1q_f32(d + 16, vreinterpretq_f32_f64(vtrn2q_f64(u0, u2)));  // depth p+2
      vst1q_f32(d + 24, vreinterpretq_f32_f64(vtrn2q_f64(u1, u3)));  // depth p+3
    }
  for (; p < kc; p++)
    for (int i = 0; i < 8; i++) dst[p * 8 + i] = r[i * a.ld + p];
}

void pack_b12_neon(const Matrix& b, int64_t k0, int64_t kc, int64_t j0, float* dst) {
  const float* src = b.data + k0 * b.ld + j0;
  for (int64_t p = 0; p < kc; p++, src += b.ld, dst += 12) {
    vst1q_f32(dst, vld1q_f32(src));
    vst1q_f32(dst + 4, vld1q_f32(src + 4));
    vst1q_f32(dst + 8, vld1q_f32(src + 8));
  }
}
#endif

// op(B)(k0.., j0..) as ceil(nc/nr) strips, each kc×nr, zero-padded past the last column.
void pack_b(const Matrix& b, int64_t k0, int64_t kc, int64_t j0, int64_t nc, float* dst) {
  const int64_t nr = isa.nr;
  for (int64_t js = 0; js < nc; js += nr, dst += kc * nr) {
    const int64_t w = std::min(nr, nc - js);
#if defined(__x86_64__)
    if (w == 16 && isa.kernel == kernel_avx2) {
      pack_b16_avx2(b, k0, kc, j0 + js, dst);
      continue;
    }
    if (w == 32 && (isa.kernel == kernel_avx512 || isa.kernel == kernel_avx512_on_avx2)) {
      pack_b32_avx2(b, k0, kc, j0 + js, dst);
      continue;
    }
#elif defined(__aarch64__)
    if (w == 12 && !b.trans && isa.kernel == kernel_neon) {
      pack_b12_neon(b, k0, kc, j0 + js, dst);
      continue;
    }
#endif
    if (b.trans) {  // column j of op(B) is row j of the stored matrix: read rows contiguously
      for (int64_t j = 0; j < w; j++) {
        const float* src = b.data + (j0 + js + j) * b.ld + k0;
        for (int64_t p = 0; p < kc; p++) dst[p * nr + j] = src[p];
      }
      for (int64_t j = w; j < nr; j++)
        for (int64_t p = 0; p < kc; p++) dst[p * nr + j] = 0.f;
    } else {
      for (int64_t p = 0; p < kc; p++) {
        std::memcpy(dst + p * nr, b.data + (k0 + p) * b.ld + j0 + js, w * sizeof(float));
        std::fill(dst + p * nr + w, dst + (p + 1) * nr, 0.f);
      }
    }
  }
}

// op(A)(i0.., k0..) as ceil(mc/mr) strips, each kc×mr, zero-padded past the last row.
void pack_a(const Matrix& a, int64_t i0, int64_t mc, int64_t k0, int64_t kc, float* dst) {
  const int64_t mr = isa.mr;
  for (int64_t is = 0; is < mc; is += mr, dst += kc * mr) {
    const int64_t h = std::min(mr, mc - is);
#if defined(__x86_64__)
    if (h == 6 && isa.kernel == kernel_avx2) {
      pack_a6_avx2(a, i0 + is, k0, kc, dst);
      continue;
    }
    if ((h == 12 || !a.trans) && (isa.kernel == kernel_avx512 || isa.kernel == kernel_avx512_on_avx2)) {
      pack_a12_avx2(a, i0 + is, k0, kc, dst, h);
      continue;
    }
#elif defined(__aarch64__)
    if (h == 8 && !a.trans && isa.kernel == kernel_neon) {
      pack_a8_neon(a, i0 + is, k0, kc, dst);
      continue;
    }
#endif
    if (a.trans) {
      for (int64_t p = 0; p < kc; p++) {
        std::memcpy(dst + p * mr, a.data + (k0 + p) * a.ld + i0 + is, h * sizeof(float));
        std::fill(dst + p * mr + h, dst + (p + 1) * mr, 0.f);
      }
    } else {
      for (int64_t i = 0; i < h; i++) {
        const float* src = a.data + (i0 + is + i) * a.ld + k0;
        for (int64_t p = 0; p < kc; p++) dst[p * mr + i] = src[p];
      }
      for (int64_t i = h; i < mr; i++)
        for (int64_t p = 0; p < kc; p++) dst[p * mr + i] = 0.f;
    }
  }
}

}  // namespace

// Adds the bias row and applies relu to C rows [0, m), columns [0, n) (gemm.h: bf16.cc's kernel ends with it too).
void epilogue(float* c, int64_t ldc, int64_t m, int64_t n, const float* bias, bool relu) {
  if (!bias && !relu) return;
  for (int64_t i = 0; i < m; i++) {
    float* ci = c + i * ldc;
    if (bias)
      for (int64_t j = 0; j < n; j++) ci[j] += bias[j];
    if (relu)
      for (int64_t j = 0; j < n; j++) ci[j] = ci[j] < 0.f ? 0.f : ci[j];  // as tfjs: NaN stays NaN
  }
}

namespace {

// A product with at most kNarrowStrips strips of B (n ≤ 64 on AVX2, 128 on AVX-512) reads A in place
// (sgemm_serial). Packed, each element of A would be read, written and read back for only that many uses: the
// MNIST dense layer's 128×5408·5408×64 spent ~12 % of its time packing (perf, 1 thread, AVX2 on Zen 5) and ran at
// 99-106 GFLOP/s against OpenBLAS's Haswell core at 109-114; read in place 107-111. The same chains of
// multiply-adds either way (the tiles only read their operands from elsewhere).
constexpr int64_t kNarrowStrips = 4;
// The BLIS loop nest on one thread for C rows [0, m), columns [0, n) (operands already offset).
void sgemm_serial(int64_t m, int64_t n, int64_t k, const Matrix& a, const Matrix& b, float* c, int64_t ldc, float beta) {
  if (k == 0) {
    if (beta == 0.f)
      for (int64_t i = 0; i < m; i++) std::memset(c + i * ldc, 0, n * sizeof(float));
    return;
  }
  const int64_t mr = isa.mr, nr = isa.nr, mc_max = isa.mc, KC = isa.kc;
  float* bp = packB.get(KC * NC);
  float* ap = packA.get(KC * mc_max + 8);  // + slack for pack_a6_avx2's and pack_a12_avx2's overlapping stores
  for (int64_t jc = 0; jc < n; jc += NC) {
    const int64_t nc = std::min(NC, n - jc);
    for (int64_t pc = 0; pc < k; pc += KC) {
      const int64_t kc = std::min(KC, k - pc);
      const bool accumulate = pc > 0 || beta != 0.f;
      if (!b.trans && m <= kFewRows) {  // a matrix-vector product: B's rows in order (see few_rows_impl)
        direct.few_rows(m, nc, kc, a, pc, b.data + pc * b.ld + jc, b.ld, c + jc, ldc, accumulate);
        continue;
      }
      // With few rows of A, packing B (read and written once per call) costs more than the product saves: read
      // B's full-width strips in place and pack only the partial strip at the right edge.
      const bool direct = !b.trans && m <= 4 * mr;
      const int64_t full = direct ? nc / nr * nr : 0;
      if (direct) {
        if (full < nc) pack_b(b, pc, kc, jc + full, nc - full, bp + full * kc);
      } else {
        pack_b(b, pc, kc, jc, nc, bp);
      }
      // A narrow product (kNarrowStrips): the full strips of A are read in place, a partial one at the bottom edge
      // (fewer than mr rows, which the tile would read past) is packed.
      const bool a_in_place = isa.kernel_a && !a.trans && nc <= kNarrowStrips * nr;
      for (int64_t ic = 0; ic < m; ic += mc_max) {
        const int64_t mc = std::min(mc_max, m - ic), full_rows = a_in_place ? mc / mr * mr : 0;
        if (full_rows < mc) pack_a(a, ic + full_rows, mc - full_rows, pc, kc, ap);
        for (int64_t jr = 0; jr < nc; jr += nr) {
          const bool in_place = jr < full;
          const float* bs = in_place ? b.data + pc * b.ld + jc + jr : bp + jr * kc;
          const int64_t ldb = in_place ? b.ld : nr, w = std::min(nr, nc - jr);
          for (int64_t ir = 0; ir < full_rows; ir += mr)
            isa.kernel_a(kc, a.data + (ic + ir) * a.ld + pc, a.ld, bs, ldb, c + (ic + ir) * ldc + jc + jr, ldc, w, accumulate);
          for (int64_t ir = full_rows; ir < mc; ir += mr)
            isa.kernel(kc, ap + (ir - full_rows) * kc, bs, ldb, c + (ic + ir) * ldc + jc + jr, ldc, std::min(mr, mc - ir), w, accumulate);
        }
      }
    }
  }
}

// The sub-matrix of op(X) starting at logical element (rows, cols).
Matrix shift(const Matrix& x, int64_t rows, int64_t cols) {
  Matrix y = x;
  y.data += x.trans ? cols * x.ld + rows : rows * x.ld + cols;
  return y;
}

thread_local Buffer partials;  // the calling thread's: one m×n partial product per group of k-slices

// Adds rows [k0, k0 + kc) of the untransposed B to sums[0, n) (double: a bias gradient sums every token).
void add_rows(const Matrix& b, int64_t k0, int64_t kc, int64_t n, double* sums) {
  for (int64_t r = k0; r < k0 + kc; r++) {
    const float* row = b.data + r * b.ld;
    for (int64_t j = 0; j < n; j++) sums[j] += row[j];
  }
}

// A deep product with a small result (a weight gradient: m×n weights summed over k = every token of the batch) is
// split along k. The KC-deep slices form a fixed number of groups of consecutive slices; each group is a task that
// multiplies its slices, in order, into the group's own partial C, and the partials are added in group order at
// the end. Which thread computes a group does not change any sum (results are bit-identical from run to run, as
// the hardening issue requires), while a slowed thread still takes fewer groups. Every element of A and B is
// packed once. With col_sums, each group also sums its slices' rows of B into its own partial column sums.
int64_t split_k_groups(int64_t tasks, int64_t size) {
  const int64_t threads = pool().size();
  // 2 groups a thread balance the load; the partials (and their reduction) are capped at 2^23 floats (32 MiB).
  const int64_t by_memory = std::max<int64_t>(threads, (int64_t(1) << 23) / std::max<int64_t>(size, 1));
  const int64_t most = std::max<int64_t>(1, std::min({tasks, 2 * threads, by_memory}));
  if (!isa.balanced_k_groups) return most;
  // A product has few slices, and `most` groups can leave one thread much more of the work than the other: 6
  // slices (k = 2048 at kc 384) as groups of 2, 2, 2 on 2 threads; 22 (the MNIST dense layer's k = 5408 at kc 256,
  // AVX2) as 6, 6, 6, 4, one thread 12 slices and the other 10. Take the count whose longest thread runs the fewest
  // slices (there: 2 groups of 3; 2 groups of 11, which took that product from 141-171 to 172-194 GFLOP/s on 2
  // threads, AVX2 on Zen 5), the most groups among equals. The count depends on the shape and the thread count
  // only, as before.
  int64_t best = most, span_best = tasks + 1;
  for (int64_t g = 1; g <= most; g++) {
    const int64_t per = (tasks + g - 1) / g, used = (tasks + per - 1) / per, span = (used + threads - 1) / threads * per;
    if (span <= span_best) best = g, span_best = span;
  }
  return best;
}

void sgemm_split_k(int64_t m, int64_t n, int64_t k, const Matrix& a, const Matrix& b, float* c, int64_t ldc, float beta,
                   const float* bias, bool relu, float* col_sums) {
  const int64_t KC = isa.kc, tasks = (k + KC - 1) / KC, size = m * n;
  const int64_t groups = split_k_groups(tasks, size), per_group = (tasks + groups - 1) / groups;
  const int used = (int)((tasks + per_group - 1) / per_group);
  // Group 0 multiplies straight into C (onto C's old values when beta ≠ 0); groups 1.. into partials.
  float* part = partials.get(std::max(1, used - 1) * size);
  thread_local std::vector<double> sums;  // with col_sums: each group's partial column sums of B
  if (col_sums) sums.assign(used * n, 0.0);
  double* sp = sums.data();  // the caller's (a thread_local named in the tasks would be each worker's own)
  pool().parallel_for(used, [&](int g) {
    const int64_t k0 = g * per_group * KC, k1 = std::min(k, k0 + per_group * KC);
    float* out = g == 0 ? c : part + (g - 1) * size;
    const int64_t ld = g == 0 ? ldc : n;
    for (int64_t s0 = k0; s0 < k1; s0 += KC) {
      const int64_t kc = std::min(KC, k1 - s0);
      if (col_sums) add_rows(b, s0, kc, n, sp + g * n);  // first: the packing then reads B from cache
      sgemm_serial(m, n, kc, shift(a, 0, s0), shift(b, s0, 0), out, ld, s0 == k0 && g > 0 ? 0.f : s0 == k0 ? beta : 1.f);
    }
  });
  if (col_sums)
    for (int64_t j = 0; j < n; j++) {
      double s = 0;
      for (int t = 0; t < used; t++) s += sp[t * n + j];
      col_sums[j] = (float)s;
    }
  constexpr int64_t kRows = 16;
  pool().parallel_for((int)((m + kRows - 1) / kRows), [&](int t) {
    const int64_t i0 = t * kRows, i1 = std::min(m, i0 + kRows);
    for (int64_t i = i0; i < i1; i++) {
      float* ci = c + i * ldc;
      for (int s = 1; s < used; s++) {
        const float* ps = part + (s - 1) * size + i * n;
        for (int64_t j = 0; j < n; j++) ci[j] += ps[j];
      }
    }
    epilogue(c + i0 * ldc, ldc, i1 - i0, n, bias, relu);
  });
}

// A product of a few rows whose B stays in the cores' L2 caches from call to call (FewRowsReuse): each thread reads
// a contiguous run of B's depth slices (KC rows each; a contiguous stream per core, where a split by columns had
// each core read half of every row: 45 against 35 µs for the MNIST CNN at batch 1), each slice's sums into a partial
// of its own, and the partials are added to C in depth order. Those are sgemm_serial's sums exactly (each slice a
// chain of multiply-adds from zero, added to C in depth order), so the split decides which core reads which rows
// of B and not one bit of C.
void sgemm_few_rows_split(int64_t m, int64_t n, int64_t k, const Matrix& a, const Matrix& b, float* c, int64_t ldc, float beta,
                          const float* bias, bool relu) {
  const int64_t KC = isa.kc, slices = (k + KC - 1) / KC, size = m * n;
  const int64_t per = (slices + pool().size() - 1) / pool().size();
  float* part = partials.get(slices * size);
  pool().parallel_for((int)((slices + per - 1) / per), [&](int t) {
    for (int64_t s = t * per; s < std::min(slices, (t + 1) * per); s++) {
      const int64_t pc = s * KC, kc = std::min(KC, k - pc);
      for (int64_t jc = 0; jc < n; jc += NC)
        direct.few_rows(m, std::min(NC, n - jc), kc, a, pc, b.data + pc * b.ld + jc, b.ld, part + s * size + jc, n, false);
    }
  });
  for (int64_t i = 0; i < m; i++) {
    float* ci = c + i * ldc;
    for (int64_t s = 0; s < slices; s++) {
      const float* ps = part + s * size + i * n;
      if (s == 0 && beta == 0.f)
        std::memcpy(ci, ps, n * sizeof(float));
      else
        for (int64_t j = 0; j < n; j++) ci[j] += ps[j];
    }
  }
  epilogue(c, ldc, m, n, bias, relu);
}

constexpr int64_t kTilesPerThread = 8;
thread_local Buffer sharedB;  // the calling thread's packed B, read by every thread of a parallel product
constexpr int64_t kSharedB = int64_t(1) << 21;  // floats of B packed at once (8 MiB, in L3): all of k ≤ 1024 for n ≤ 2048 (n ≤ 1024 at kc 384)

// The loop nest over the pool. The threads first pack B together (all of its depth at once, up to kSharedB
// floats), then take tiles of C (a block of mc rows × a run of strips) from the pool's shared counter; each tile
// runs every depth panel, packing its block of A for each. A thread that is slowed down takes fewer tiles instead
// of holding the product up: on a shared host one core's throughput here moves between ~65 and ~100 GFLOP/s from
// second to second, and a fixed split into one part per thread ran at the slower core's pace. Packing all of the
// depth at once keeps the threads from meeting at a barrier after every panel.
void sgemm_parallel(int64_t m, int64_t n, int64_t k, const Matrix& a, const Matrix& b, float* c, int64_t ldc, float beta,
                    const float* bias, bool relu) {
  const int64_t mr = isa.mr, nr = isa.nr, mc_max = isa.mc, KC = isa.kc;
  const int64_t row_blocks = (m + mc_max - 1) / mc_max;
  for (int64_t jc = 0; jc < n; jc += NC) {
    const int64_t nc = std::min(NC, n - jc), strips = (nc + nr - 1) / nr, width = strips * nr;
    // At least kTilesPerThread tiles per thread; with few row blocks the strips are split too (each split packs
    // that block of A once more).
    const int64_t split = std::min(strips, (kTilesPerThread * pool().size() + row_blocks - 1) / row_blocks);
    const int64_t per_part = (strips + split - 1) / split, col_parts = (strips + per_part - 1) / per_part;
    const int64_t depth = std::max(KC, kSharedB / width / KC * KC);  // of B packed at once, a multiple of KC
    float* bp = sharedB.get(std::min(depth, (k + KC - 1) / KC * KC) * width);
    for (int64_t kq = 0; kq < k; kq += depth) {
      const int64_t kd = std::min(depth, k - kq), panels = (kd + KC - 1) / KC;
      // Panel p (depth kq + p·KC) starts at bp + p·KC·width; strip s of it at + s·nr·kc.
      constexpr int64_t kPackStrips = 4;
      const int64_t groups = (strips + kPackStrips - 1) / kPackStrips;
      pool().parallel_for((int)(panels * groups), [&](int t) {
        const int64_t p = t / groups, s0 = t % groups * kPackStrips, pc = kq + p * KC, kc = std::min(KC, k - pc);
        pack_b(b, pc, kc, jc + s0 * nr, std::min(kPackStrips * nr, nc - s0 * nr), bp + p * KC * width + s0 * nr * kc);
      });
      const bool last = kq + depth >= k;
      pool().parallel_for((int)(row_blocks * col_parts), [&](int t) {
        const int64_t ic = t / col_parts * mc_max, mc = std::min(mc_max, m - ic);
        const int64_t s0 = t % col_parts * per_part, s1 = std::min(strips, s0 + per_part);
        float* ap = packA.get(KC * mc_max + 8);  // + slack for pack_a6_avx2's and pack_a12_avx2's overlapping stores
        for (int64_t p = 0; p < panels; p++) {
          const int64_t pc = kq + p * KC, kc = std::min(KC, k - pc);
          const bool accumulate = pc > 0 || beta != 0.f;
          pack_a(a, ic, mc, pc, kc, ap);
          const float* panel = bp + p * KC * width;
          for (int64_t s = s0; s < s1; s++)
            for (int64_t ir = 0; ir < mc; ir += mr)
              isa.kernel(kc, ap + ir * kc, panel + s * nr * kc, nr, c + (ic + ir) * ldc + jc + s * nr, ldc, std::min(mr, mc - ir),
                         std::min(nr, nc - s * nr), accumulate);
        }
        const int64_t j0 = jc + s0 * nr;
        if (last) epilogue(c + ic * ldc + j0, ldc, mc, std::min(nc, s1 * nr) - s0 * nr, bias ? bias + j0 : nullptr, relu);
      });
    }
  }
}


const bool dynamic = [] {
  const char* e = std::getenv("LOOM_GEMM");
  return !(e && !std::strcmp(e, "static"));
}();

// Whether a product of a few rows should be shared out by columns: yes when its B will still be in the cores' L2
// caches at the next call, split there as it is now. A matrix-vector product reads B once and is bound by where B
// comes from: the MNIST CNN's 5408 × 64 dense layer at batch 1 (1.4 MB of weights) does not fit one core's L2 (1 MiB
// on Zen 5) and streamed from L3 at ~40 GB/s (~30 µs); split in halves, each core keeps its half in its own L2
// from one inference to the next, and the inference took 36 µs against 50 (2-core AMD Zen 5). Decoding GPT reads
// 42 MB of weights a token, which no L2 holds: there the split only added the threads' hand-over (585-600 tokens/s
// serial against 525-570 split). So each calling thread remembers, per B, how many bytes of few-row products it
// streamed since B was last read (its reuse distance), and splits when that working set fits `threads` L2 caches
// with room to spare. A first call, or a B whose slot was taken, runs serially. Columns never change what any
// element computes, so the choice changes speed only, never bits.
class FewRowsReuse {
 public:
  bool split(const float* b, int64_t bytes, int threads) {
    Slot& s = slots_[(reinterpret_cast<uintptr_t>(b) >> 6) % kSlots];
    const bool seen = s.b == b && s.bytes == bytes;
    const uint64_t distance = streamed_ - s.start;  // bytes read since B's last read began, B's included
    s = {b, bytes, streamed_};
    streamed_ += (uint64_t)bytes;
    const double l2 = l2_bytes();
    return seen && (double)bytes > 0.5 * l2 && (double)distance <= 0.75 * l2 * threads;
  }

 private:
  static constexpr int kSlots = 64;
  struct Slot {
    const float* b = nullptr;
    int64_t bytes = 0;
    uint64_t start = 0;
  };
  // One core's L2: the OS's figure where it has one, else 512 KiB.
  static double l2_bytes() {
    static const double bytes = [] {
#if defined(_SC_LEVEL2_CACHE_SIZE)
      const long v = sysconf(_SC_LEVEL2_CACHE_SIZE);
      if (v > 0) return (double)v;
#endif
      return 512.0 * 1024;
    }();
    return bytes;
  }
  Slot slots_[kSlots];
  uint64_t streamed_ = 0;
};
thread_local FewRowsReuse few_rows_reuse;

}  // namespace

const char* simd_level() { return isa.name; }

void sgemm(int64_t m, int64_t n, int64_t k, Matrix a, Matrix b, float* c, int64_t ldc, float beta, const float* bias, bool relu,
           bool parallel, float* b_col_sums) {
  if (sgemm_bf16(m, n, k, a, b, c, ldc, beta, bias, relu, parallel, b_col_sums)) return;  // while the precision is bf16 (bf16.h)
  sgemm_f32(m, n, k, a, b, c, ldc, beta, bias, relu, parallel, b_col_sums);
}

void sgemm_f32(int64_t m, int64_t n, int64_t k, Matrix a, Matrix b, float* c, int64_t ldc, float beta, const float* bias, bool relu,
               bool parallel, float* b_col_sums) {
  const int threads = pool().size();
  // Below ~2^18 multiply-adds (a 64³ product) waking the pool costs more than it saves.
  // A product of a few rows (decoding a token) stays on the calling thread: bound by reading B, it gained nothing
  // from a second thread reading the other half of each row of B, and lost: GPT generation at batch 1 ran 370-440
  // tokens/s with it shared out against 430-460 without, and as fast as on a 1-thread pool (2-core AMD Zen 5, B's
  // rows prefetched, see kFewRowsAhead). The exception: a B that stays in the cores' L2 caches from call to call
  // (FewRowsReuse), split along its depth (sgemm_few_rows_split). Which thread computes an element never changes
  // it: the same bits.
  const bool few_rows = m <= kFewRows && !b.trans;
  const bool few_rows_split = few_rows && threads > 1 && few_rows_reuse.split(b.data, k * n * 4, threads) && parallel && k >= 2 * isa.kc;
  const bool split = parallel && threads > 1 && m > 0 && n > 0 && (!few_rows || few_rows_split) && (double)m * n * k >= (1 << 18);
  // Work is handed out dynamically (see sgemm_parallel) unless LOOM_GEMM=static. Deep products with a small result
  // are split along k; sgemm_parallel takes depths up to 4 panels (deeper, its packed B spilled out of cache and it
  // ran ~5-10 % slower than the fixed split); what is left (few rows of A, or a deep and large product such as
  // 2048³) keeps the fixed split below.
  // On the AVX-512 path the k-split is kept for results of at most 2^17 elements: its 384-deep slices are few and
  // unequal (k = 2048: five of 384 and one of 128), and the Transformer's 256 × 1024 weight gradient over 2048
  // tokens ran at 0.82 of OpenBLAS's rate split along k (2 threads, Zen 4); split by columns it needs no partials.
  const bool split_k = split && !few_rows && dynamic && k > 4 * isa.kc && m * n <= isa.k_split_max && k >= std::max(m, n);
  // B's column sums come with the k-split's slices; otherwise from a reduction of their own.
  if (b_col_sums && !split_k && n > 0) sum3(b.data, b_col_sums, 1, k, n);
  if (m <= 0 || n <= 0) return;
  if (k > 0 && (double)m * n * k <= kSmall) {
    direct.small(m, n, k, isa.kc, a, b, c, ldc, beta);
    epilogue(c, ldc, m, n, bias, relu);
    return;
  }
  if (!split) {
    sgemm_serial(m, n, k, a, b, c, ldc, beta);
    epilogue(c, ldc, m, n, bias, relu);
    return;
  }
  if (few_rows_split) {
    sgemm_few_rows_split(m, n, k, a, b, c, ldc, beta, bias, relu);
    return;
  }
  if (split_k) {
    sgemm_split_k(m, n, k, a, b, c, ldc, beta, bias, relu, b_col_sums);
    return;
  }
  // On the AVX-512 path the fixed split also takes products below 2^31 multiply-adds: there sgemm_parallel's two
  // rounds over the pool (packing B, then the tiles) and its re-packing of A for each run of strips cost more than
  // its balancing gains on a quiet host (2 threads, Zen 4, GFLOP/s fixed against tiles: 256³ ~172 against ~122,
  // 512³ 211/201, 1024³ 208/206, 2048×1024×256 210/201, 2048×256×1024 212/202). The same sums either way.
  if (dynamic && k > 0 && k <= 4 * isa.kc && m > 4 * isa.mr && (double)m * n * k >= isa.fixed_below) {
    sgemm_parallel(m, n, k, a, b, c, ldc, beta, bias, relu);
    return;
  }
  // One part of C per thread along its larger dimension, aligned to the micro-tile; each thread packs its own
  // panels (B is packed twice when splitting rows, which costs O(k·n) against the O(m·n·k) product).
  const bool by_cols = n >= m;
  const int64_t extent = by_cols ? n : m, unit = by_cols ? isa.nr : isa.mr;
  int64_t part = (extent + threads - 1) / threads;
  part = (part + unit - 1) / unit * unit;
  const int tasks = (int)((extent + part - 1) / part);
  pool().parallel_for(tasks, [&](int t) {
    const int64_t lo = t * part, len = std::min(part, extent - lo);
    if (by_cols) {
      sgemm_serial(m, len, k, a, shift(b, 0, lo), c + lo, ldc, beta);
      epilogue(c + lo, ldc, m, len, bias ? bias + lo : nullptr, relu);
    } else {
      sgemm_serial(len, n, k, shift(a, lo, 0), b, c + lo * ldc, ldc, beta);
      epilogue(c + lo * ldc, ldc, len, n, bias, relu);
    }
  });
}

}  // namespace loom
