// Branch-free float math shared by the elementwise and row kernels, so that the loops over it vectorise.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "gemm.h"

namespace loom {

#define LOOM_INLINE __attribute__((always_inline)) inline

// exp, tanh and sigmoid without library calls, branch-free so that the loops over them vectorise (glibc's expf and
// tanhf are scalar calls, ~10× slower here). Cephes' single-precision algorithms, within 2 ulp of the exact value.

// e^x = 2^n · e^r, n = round(x·log2 e), |r| ≤ ln2/2 (Cody–Waite split of ln 2), e^r by a degree-6 polynomial.
// x is clamped to [-104, 89], beyond which e^x rounds to 0 or +inf anyway; NaN passes through the clamps.
LOOM_INLINE float exp_f(float x) {
  x = std::min(std::max(x, -104.f), 89.f);
  const float n = (x * 1.44269504088896341f + 12582912.f) - 12582912.f;  // round to nearest (1.5·2^23 trick)
  const float r = (x - n * 0.693359375f) - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.f;
  // 2^n in two factors, so that n in [-150, 128] never leaves a float's exponent range on the way.
  const int32_t ni = (int32_t)n, n1 = ni >> 1, n2 = ni - n1;
  const int32_t b1 = (n1 + 127) << 23, b2 = (n2 + 127) << 23;
  float s1, s2;
  std::memcpy(&s1, &b1, 4);
  std::memcpy(&s2, &b2, 4);
  return p * s1 * s2;
}

LOOM_INLINE float sigmoid_f(float x) { return 1.f / (1.f + exp_f(-x)); }

// |x| ≥ 0.625: 1 − 2/(e^{2|x|} + 1) with x's sign; below, x + x³·P(x²), which keeps the relative accuracy near 0.
LOOM_INLINE float tanh_f(float x) {
  const float z = std::fabs(x), x2 = x * x;
  const float big = 1.f - 2.f / (exp_f(z + z) + 1.f);
  float p = -5.70498872745e-3f;
  p = p * x2 + 2.06390887954e-2f;
  p = p * x2 - 5.37397155531e-2f;
  p = p * x2 + 1.33314422036e-1f;
  p = p * x2 - 3.33332819422e-1f;
  const float small = p * x2 * x + x;
  return z >= 0.625f ? std::copysign(big, x) : small;  // NaN: the comparison is false, and small is NaN
}

// erf by Abramowitz & Stegun 7.1.26 (|error| ≤ 1.5e-7): the approximation tfjs's cpu Erf kernel uses. NaN stays NaN.
LOOM_INLINE float erf_f(float x) {
  const float v = std::fabs(x), t = 1.f / (1.f + 0.3275911f * v);
  const float poly = ((((1.061405429f * t - 1.453152027f) * t + 1.421413741f) * t - 0.284496736f) * t + 0.254829592f) * t;
  return std::copysign(1.f - poly * exp_f(-v * v), x);
}

// Σ x[0..n) with eight partial sums, so that the loop vectorises (a single float accumulator is a serial chain).
LOOM_INLINE float row_sum(const float* x, int64_t n) {
  float acc[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
  int64_t j = 0;
  for (; j + 8 <= n; j += 8)
    for (int l = 0; l < 8; l++) acc[l] += x[j + l];
  float s = 0.f;
  for (; j < n; j++) s += x[j];
  return s + ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

// Σ x[j]·y[j] likewise.
LOOM_INLINE float row_dot(const float* x, const float* y, int64_t n) {
  float acc[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
  int64_t j = 0;
  for (; j + 8 <= n; j += 8)
    for (int l = 0; l < 8; l++) acc[l] += x[j + l] * y[j + l];
  float s = 0.f;
  for (; j < n; j++) s += x[j] * y[j];
  return s + ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

// A function in two versions, name##_simd and name##_base, from one body: the LOOM_INLINE helpers it calls (exp_f,
// row_sum, ...) are compiled into each and vectorised for it. Callers pick with simd(). On x86-64, _simd is built for
// AVX2+FMA and _base for the baseline (SSE2). On AArch64 the baseline already has NEON (Advanced SIMD is part of
// ARMv8-A, and GCC/Clang vectorise these loops for it with fused multiply-adds), so one version serves as both.
#if defined(__x86_64__)
#define LOOM_TWO_VERSIONS(name, params, ...)                               \
  __attribute__((target("avx2,fma"))) void name##_simd params __VA_ARGS__ \
  void name##_base params __VA_ARGS__
#else
#define LOOM_TWO_VERSIONS(name, params, ...) \
  void name##_base params __VA_ARGS__        \
  constexpr auto name##_simd = &name##_base;
#endif

// Whether to run the _simd versions: the GEMM's choice (so LOOM_SIMD=scalar selects the baseline here too).
inline bool simd() {
  static const bool yes = std::strcmp(simd_level(), "scalar") != 0;
  return yes;
}

}  // namespace loom
