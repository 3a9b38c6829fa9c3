#include "gemm.h"

#include <immintrin.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "pool.h"

namespace loom {
namespace {

constexpr int64_t MR = 6, NR = 16;   // micro-tile (AVX2: 12 accumulators of 8 floats)
constexpr int64_t KC = 256;          // depth of a packed panel
constexpr int64_t MC = 96;           // rows of A packed at once (multiple of MR; ~96 KB)
constexpr int64_t NC = 2048;         // columns of B packed at once (multiple of NR; ~2 MB)

struct Buffer {
  float* p = nullptr;
  size_t n = 0;
  float* get(size_t want) {
    if (want > n) {
      std::free(p);
      n = want;
      p = static_cast<float*>(std::aligned_alloc(64, ((want * sizeof(float) + 63) / 64) * 64));
    }
    return p;
  }
  ~Buffer() { std::free(p); }
};
thread_local Buffer packA, packB;

inline float at(const Matrix& x, int64_t i, int64_t k) { return x.trans ? x.data[k * x.ld + i] : x.data[i * x.ld + k]; }

// B(k0.., j0..) as ceil(nc/NR) strips, each kc×NR, zero-padded past n.
void pack_b(const Matrix& b, int64_t k0, int64_t kc, int64_t j0, int64_t nc, float* dst) {
  for (int64_t js = 0; js < nc; js += NR) {
    const int64_t w = std::min(NR, nc - js);
    for (int64_t p = 0; p < kc; p++) {
      float* d = dst + p * NR;
      if (!b.trans && w == NR) {
        std::memcpy(d, b.data + (k0 + p) * b.ld + j0 + js, NR * sizeof(float));
      } else {
        for (int64_t j = 0; j < w; j++) d[j] = at(b, k0 + p, j0 + js + j);  // B(k, j): row k, column j
        for (int64_t j = w; j < NR; j++) d[j] = 0.f;
      }
    }
    dst += kc * NR;
  }
}

// A(i0.., k0..) as ceil(mc/MR) strips, each kc×MR, zero-padded past m.
void pack_a(const Matrix& a, int64_t i0, int64_t mc, int64_t k0, int64_t kc, float* dst) {
  for (int64_t is = 0; is < mc; is += MR) {
    const int64_t h = std::min(MR, mc - is);
    if (a.trans) {
      for (int64_t p = 0; p < kc; p++) {
        const float* src = a.data + (k0 + p) * a.ld + i0 + is;
        float* d = dst + p * MR;
        for (int64_t i = 0; i < h; i++) d[i] = src[i];
        for (int64_t i = h; i < MR; i++) d[i] = 0.f;
      }
    } else {
      for (int64_t i = 0; i < h; i++) {
        const float* src = a.data + (i0 + is + i) * a.ld + k0;
        for (int64_t p = 0; p < kc; p++) dst[p * MR + i] = src[p];
      }
      for (int64_t i = h; i < MR; i++)
        for (int64_t p = 0; p < kc; p++) dst[p * MR + i] = 0.f;
    }
    dst += kc * MR;
  }
}

// Writes (or adds, when accumulate) the h×w top-left part of a MR×NR tile held in `t` to C.
inline void store_tile(const float* t, float* c, int64_t ldc, int64_t h, int64_t w, bool accumulate) {
  for (int64_t i = 0; i < h; i++)
    for (int64_t j = 0; j < w; j++) c[i * ldc + j] = accumulate ? c[i * ldc + j] + t[i * NR + j] : t[i * NR + j];
}

void kernel_scalar(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, int64_t h, int64_t w, bool accumulate) {
  float t[MR * NR] = {0};
  for (int64_t p = 0; p < kc; p++, a += MR, b += NR)
    for (int64_t i = 0; i < MR; i++)
      for (int64_t j = 0; j < NR; j++) t[i * NR + j] += a[i] * b[j];
  store_tile(t, c, ldc, h, w, accumulate);
}

__attribute__((target("avx2,fma"))) void kernel_avx2(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, int64_t h,
                                                    int64_t w, bool accumulate) {
  __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps(), c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
  __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps(), c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
  __m256 c40 = _mm256_setzero_ps(), c41 = _mm256_setzero_ps(), c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();
  for (int64_t p = 0; p < kc; p++, a += MR, b += NR) {
    const __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8);
    __m256 x;
    x = _mm256_broadcast_ss(a + 0); c00 = _mm256_fmadd_ps(x, b0, c00); c01 = _mm256_fmadd_ps(x, b1, c01);
    x = _mm256_broadcast_ss(a + 1); c10 = _mm256_fmadd_ps(x, b0, c10); c11 = _mm256_fmadd_ps(x, b1, c11);
    x = _mm256_broadcast_ss(a + 2); c20 = _mm256_fmadd_ps(x, b0, c20); c21 = _mm256_fmadd_ps(x, b1, c21);
    x = _mm256_broadcast_ss(a + 3); c30 = _mm256_fmadd_ps(x, b0, c30); c31 = _mm256_fmadd_ps(x, b1, c31);
    x = _mm256_broadcast_ss(a + 4); c40 = _mm256_fmadd_ps(x, b0, c40); c41 = _mm256_fmadd_ps(x, b1, c41);
    x = _mm256_broadcast_ss(a + 5); c50 = _mm256_fmadd_ps(x, b0, c50); c51 = _mm256_fmadd_ps(x, b1, c51);
  }
  if (h == MR && w == NR) {
    __m256 r[12] = {c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51};
    for (int64_t i = 0; i < MR; i++) {
      float* ci = c + i * ldc;
      if (accumulate) {
        _mm256_storeu_ps(ci, _mm256_add_ps(_mm256_loadu_ps(ci), r[2 * i]));
        _mm256_storeu_ps(ci + 8, _mm256_add_ps(_mm256_loadu_ps(ci + 8), r[2 * i + 1]));
      } else {
        _mm256_storeu_ps(ci, r[2 * i]);
        _mm256_storeu_ps(ci + 8, r[2 * i + 1]);
      }
    }
    return;
  }
  alignas(32) float t[MR * NR];
  __m256 r[12] = {c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51};
  for (int64_t i = 0; i < MR; i++) {
    _mm256_store_ps(t + i * NR, r[2 * i]);
    _mm256_store_ps(t + i * NR + 8, r[2 * i + 1]);
  }
  store_tile(t, c, ldc, h, w, accumulate);
}

using Kernel = void (*)(int64_t, const float*, const float*, float*, int64_t, int64_t, int64_t, bool);

Kernel choose_kernel() {
  __builtin_cpu_init();
  if (!std::getenv("LOOM_NO_SIMD") && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return kernel_avx2;
  return kernel_scalar;
}
const Kernel kernel = choose_kernel();

void epilogue(float* c, int64_t ldc, int64_t m, int64_t n, const float* bias, bool relu) {
  if (!bias && !relu) return;
  for (int64_t i = 0; i < m; i++) {
    float* ci = c + i * ldc;
    if (bias)
      for (int64_t j = 0; j < n; j++) ci[j] += bias[j];
    if (relu)
      for (int64_t j = 0; j < n; j++) ci[j] = ci[j] > 0.f ? ci[j] : 0.f;
  }
}

// The blocked loop on one thread, for C rows [0, m) and columns [0, n) (A, B, C, bias already offset).
void sgemm_serial(int64_t m, int64_t n, int64_t k, const Matrix& a, const Matrix& b, float* c, int64_t ldc, float beta) {
  if (k == 0) {
    if (beta == 0.f)
      for (int64_t i = 0; i < m; i++) std::memset(c + i * ldc, 0, n * sizeof(float));
    return;
  }
  float* bp = packB.get(KC * NC);
  float* ap = packA.get(KC * MC);
  for (int64_t jc = 0; jc < n; jc += NC) {
    const int64_t nc = std::min(NC, n - jc);
    for (int64_t pc = 0; pc < k; pc += KC) {
      const int64_t kc = std::min(KC, k - pc);
      const bool accumulate = pc > 0 || beta != 0.f;
      pack_b(b, pc, kc, jc, nc, bp);
      for (int64_t ic = 0; ic < m; ic += MC) {
        const int64_t mc = std::min(MC, m - ic);
        pack_a(a, ic, mc, pc, kc, ap);
        for (int64_t jr = 0; jr < nc; jr += NR)
          for (int64_t ir = 0; ir < mc; ir += MR)
            kernel(kc, ap + ir * kc, bp + jr * kc, c + (ic + ir) * ldc + jc + jr, ldc, std::min(MR, mc - ir), std::min(NR, nc - jr),
                   accumulate);
      }
    }
  }
}

Matrix shift(const Matrix& x, int64_t rows, int64_t cols) {
  // The sub-matrix starting at logical element (rows, cols).
  Matrix y = x;
  y.data += x.trans ? cols * x.ld + rows : rows * x.ld + cols;
  return y;
}

}  // namespace

const char* simd_level() { return kernel == kernel_avx2 ? "avx2" : "scalar"; }

void sgemm(int64_t m, int64_t n, int64_t k, Matrix a, Matrix b, float* c, int64_t ldc, float beta, const float* bias, bool relu,
           bool parallel) {
  if (m <= 0 || n <= 0) return;
  const int threads = pool().size();
  const bool split = parallel && threads > 1 && (double)m * n * k >= (1 << 18);
  if (!split) {
    sgemm_serial(m, n, k, a, b, c, ldc, beta);
    epilogue(c, ldc, m, n, bias, relu);
    return;
  }
  // Split the larger dimension of C into one part per thread, aligned to the micro-tile.
  const bool by_cols = n >= m;
  const int64_t extent = by_cols ? n : m, unit = by_cols ? NR : MR;
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
