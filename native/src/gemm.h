// Single-precision GEMM, C = op(A)·op(B) + beta·C, row-major, in the BLIS style: B is packed into KC×NR
// panels, A into MR×KC panels, and a register-blocked micro-kernel (6×16 with AVX2+FMA, 12×32 with AVX-512,
// 8×12 with AArch64 NEON, scalar otherwise; chosen at run time) computes each MR×NR tile. The thread pool's threads take tiles of C (or,
// for a deep product with a small result, fixed groups of depth slices) from a shared counter, so that a thread
// slowed down by another tenant of its core does less of the work. No sum's order depends on which thread took
// which task: same inputs and thread count, same bits. LOOM_GEMM=static selects the older fixed split into one
// part of C per thread, which products with few rows of A still use.
#pragma once
#include <cstdint>
#include <cstdlib>

namespace loom {

struct Matrix {
  const float* data;
  int64_t ld;   // leading dimension (row stride of the stored matrix)
  bool trans;   // element (i, k) is data[k*ld + i] when transposed, data[i*ld + k] otherwise
};

// Element (i, k) of op(x) (x transposed or not, as x.trans says).
inline float at(const Matrix& x, int64_t i, int64_t k) { return x.trans ? x.data[k * x.ld + i] : x.data[i * x.ld + k]; }

// A 64-byte aligned buffer for packed panels (one per thread, thread_local), grown on demand and kept: no
// allocation per call. The fp32 kernels pack floats into it, the bf16 kernel (bf16.cc) pairs of bf16 as 32-bit words.
template <class T>
struct PackBuffer {
  T* p = nullptr;
  size_t n = 0;
  T* get(size_t want) {
    if (want > n) {
      std::free(p);
      n = want;
      p = static_cast<T*>(std::aligned_alloc(64, ((want * sizeof(T) + 63) / 64) * 64));
    }
    return p;
  }
  ~PackBuffer() { std::free(p); }
};

// C[m×n] (row stride ldc) = op(A)[m×k] · op(B)[k×n] + beta·C.  beta must be 0 or 1.
// When bias is given, adds bias[j] to every row; when relu, clamps at 0 (applied after bias, before beta).
// When b_col_sums is given (B not transposed, rows contiguous: ld = n; called from outside the pool's tasks), also
// writes Σ_k B[k, j] for each column j: the bias gradient that goes with a weight gradient dW = xᵀ·dz, taken from
// each k-slice while it is in cache when the product is split along k, else by a column reduction (sum3).
void sgemm(int64_t m, int64_t n, int64_t k, Matrix a, Matrix b, float* c, int64_t ldc, float beta,
           const float* bias = nullptr, bool relu = false, bool parallel = true, float* b_col_sums = nullptr);

// The same product in fp32 whatever the precision set in bf16.h: sgemm is this one unless the precision is bf16.
void sgemm_f32(int64_t m, int64_t n, int64_t k, Matrix a, Matrix b, float* c, int64_t ldc, float beta, const float* bias = nullptr,
               bool relu = false, bool parallel = true, float* b_col_sums = nullptr);
// While the precision is bf16 (bf16.h): the product with bf16 operands and fp32 sums, and true; else false.
bool sgemm_bf16(int64_t m, int64_t n, int64_t k, const Matrix& a, const Matrix& b, float* c, int64_t ldc, float beta, const float* bias, bool relu,
                bool parallel, float* b_col_sums);

// Adds the bias row and applies relu to C rows [0, m), columns [0, n): the end of a product with bias or relu, on
// each path (the fp32 kernels here, the bf16 one in bf16.cc).
void epilogue(float* c, int64_t ldc, int64_t m, int64_t n, const float* bias, bool relu);

// Which micro-kernel the CPU runs: "avx512", "avx2", "neon" (AArch64) or "scalar".
const char* simd_level();

}  // namespace loom
