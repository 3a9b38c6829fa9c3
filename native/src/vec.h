// Vectors of L floats for kernels written once for every instruction set (conv.cc's direct and pooling kernels,
// gemm.cc's narrow matrix-vector products): L = 16 for AVX-512, 8 for AVX2, 4 for the baseline and NEON.
#pragma once
#include <cstdint>
#include <cstring>

#define LOOM_VEC_INLINE __attribute__((always_inline)) inline

namespace loom {

// GCC warns that passing a wide vector changes the ABI where the instruction set lacks it; these helpers are always
// inlined.
#pragma GCC diagnostic ignored "-Wpsabi"
// conv.cc's direct and pooling kernels work on blocks of L channels, one vector of L floats each: L = 16 for AVX-512 (a zmm
// register), 8 for AVX2 (ymm), 4 for the baseline (SSE2 on x86-64, NEON on AArch64). A vector wider than the
// instruction set's registers has no machine mode there: GCC kept every such value in memory and lowered its
// comparisons and selects element by element, so these kernels, built with 16-float vectors for every level, ran
// 6-10x slower on AVX2 than on AVX-512 (the MNIST CNN's fused convolution and pooling 1.8 against 0.18 ms forward,
// LoomConv2DMaxPoolGrad 1.7 against 0.26 ms, 2-core AMD Zen 5 with LOOM_SIMD=avx2). Each lane is one output channel
// and its arithmetic does not depend on L, so every width computes the same values.
template <int L>
struct Vec;
template <>
struct Vec<16> {
  typedef float f __attribute__((vector_size(64)));
  typedef int32_t i __attribute__((vector_size(64)));
};
template <>
struct Vec<8> {
  typedef float f __attribute__((vector_size(32)));
  typedef int32_t i __attribute__((vector_size(32)));
};
template <>
struct Vec<4> {
  typedef float f __attribute__((vector_size(16)));
  typedef int32_t i __attribute__((vector_size(16)));
};

template <int L>
LOOM_VEC_INLINE typename Vec<L>::f load_full(const float* p) {
  typename Vec<L>::f v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
// The first `w` ≤ L floats at p, the rest zero (the last block of a row of channels).
template <int L>
LOOM_VEC_INLINE typename Vec<L>::f load_part(const float* p, int64_t w) {
  if (w == L) return load_full<L>(p);
  typename Vec<L>::f v = {};
  for (int64_t j = 0; j < w; j++) v[j] = p[j];
  return v;
}
template <int L>
LOOM_VEC_INLINE void store_part(float* p, typename Vec<L>::f v, int64_t w) {
  if (w == L)
    std::memcpy(p, &v, sizeof v);  // one vector store (a copy of variable length is a slow `rep movs`)
  else
    for (int64_t j = 0; j < w; j++) p[j] = v[j];
}

}  // namespace loom
