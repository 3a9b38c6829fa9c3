// A standalone check of the bf16 AMX path (bf16.cc, mode 4) for a host that has AMX but no Node.js (for example a
// GPU machine lent for a few minutes): `npm run build:amx-check` builds a static binary, native/amx/build/check,
// that runs anywhere on x86-64 Linux. It multiplies random matrices (edges of the 32×32 blocks and the 256-deep
// panels, both transposes, one and several threads) on the AMX tiles and checks each element against the float64
// product of the bf16-rounded operands within fp32 summation error, γ_k·Σ|ã||b̃| + 2^-120 (as bf16.test.ts does),
// and against the same loop on the emulated tiles (mode 5); then times fp32, avx512_bf16 and AMX on a 1024³ product.
// `check 3` checks the avx512_bf16 path the same way (and `check 5` the emulation itself), to try the check on a
// machine without AMX. Exit status: 0 all within bounds, 1 a product out of bounds, 2 the path is not here.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "../src/bf16.h"
#include "../src/gemm.h"
#include "../src/pool.h"

using loom::Matrix;

namespace {

struct Product {
  int64_t m, n, k;
  bool ta, tb;
};

std::vector<float> random_values(size_t count, unsigned seed) {
  std::mt19937 g(seed);
  std::uniform_real_distribution<float> u(-2.f, 2.f);
  std::vector<float> v(count);
  for (auto& x : v) x = u(g);
  return v;
}

// C = op(A)·op(B) in the precision now set, through loom::sgemm (parallel or not).
std::vector<float> multiply(const Product& p, const std::vector<float>& a, const std::vector<float>& b, bool parallel) {
  std::vector<float> c((size_t)(p.m * p.n), NAN);
  loom::sgemm(p.m, p.n, p.k, {a.data(), p.ta ? p.m : p.k, p.ta}, {b.data(), p.tb ? p.k : p.n, p.tb}, c.data(), p.n, 0.f, nullptr, false, parallel);
  return c;
}

// The number of elements of a product outside γ_k·Σ|ã||b̃| + 2^-120 of the float64 product of the rounded operands.
int64_t out_of_bounds(const Product& p, const std::vector<float>& a, const std::vector<float>& b, const std::vector<float>& c, const char* what) {
  const double u = std::ldexp(1.0, -24), gamma = p.k * u / (1 - p.k * u), tiny = std::ldexp(1.0, -120);
  int64_t bad = 0;
  for (int64_t i = 0; i < p.m; i++)
    for (int64_t j = 0; j < p.n; j++) {
      double exact = 0, abs = 0;
      for (int64_t q = 0; q < p.k; q++) {
        const double x = loom::bf16_round(p.ta ? a[q * p.m + i] : a[i * p.k + q]) * (double)loom::bf16_round(p.tb ? b[j * p.k + q] : b[q * p.n + j]);
        exact += x;
        abs += std::fabs(x);
      }
      const double got = c[i * p.n + j];
      if (!(std::fabs(got - exact) <= gamma * abs + tiny)) {
        if (bad++ < 3) std::printf("  %s %lldx%lldx%lld ta %d tb %d: C[%lld,%lld] = %.9g, float64 %.9g (bound %.3g)\n", what, (long long)p.m, (long long)p.n,
                                   (long long)p.k, p.ta, p.tb, (long long)i, (long long)j, got, exact, gamma * abs + tiny);
      }
    }
  return bad;
}

double seconds_of(const Product& p, const std::vector<float>& a, const std::vector<float>& b) {
  multiply(p, a, b, true);
  const auto t0 = std::chrono::steady_clock::now();
  int reps = 0;
  while (std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() < 1.0 || reps < 3) multiply(p, a, b, true), reps++;
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / reps;
}

}  // namespace

int main(int argc, char** argv) {
  const int mode = argc > 1 ? std::atoi(argv[1]) : 4;  // the path under test: 4 AMX, 3 avx512_bf16, 5 the emulation
  if (mode < 3 || mode > 5 || loom::set_gemm_precision(mode) != mode) {
    std::printf("amx-check: %s is not here (AMX needs CPUID AMX-TILE and AMX-BF16, an AVX-512 float kernel and Linux's grant of the tile state); best bf16 path: %s\n",
                loom::precision_name(mode), loom::best_bf16_path());
    return 2;
  }
  const char* name = loom::precision_name(mode);
  const Product products[] = {{1, 1, 1, false, false},     {32, 32, 32, false, false},   {33, 31, 33, false, false},  {31, 33, 1, true, false},
                              {64, 64, 256, false, true},   {65, 97, 257, true, true},    {128, 96, 512, false, false}, {150, 97, 700, false, false},
                              {200, 130, 300, true, false}, {7, 300, 1000, false, true}, {300, 7, 999, true, true}};
  int64_t bad = 0;
  unsigned seed = 1;
  for (const Product& p : products) {
    const auto a = random_values((size_t)(p.m * p.k), seed++), b = random_values((size_t)(p.k * p.n), seed++);
    loom::set_gemm_precision(mode);
    const auto amx = multiply(p, a, b, false), amx_threads = multiply(p, a, b, true);
    loom::set_gemm_precision(5);
    const auto emulated = multiply(p, a, b, false);
    const int64_t here = out_of_bounds(p, a, b, amx, name) + out_of_bounds(p, a, b, amx_threads, name);
    int64_t differ = 0, threads_differ = 0;
    for (size_t i = 0; i < amx.size(); i++) differ += amx[i] != emulated[i], threads_differ += amx[i] != amx_threads[i];
    std::printf("%4lldx%-4lld x%-5lld ta %d tb %d: %s; %lld of %zu elements differ from the emulated tiles' bits; threads %s\n", (long long)p.m,
                (long long)p.n, (long long)p.k, p.ta, p.tb, here ? "OUT OF BOUNDS" : "within bounds", (long long)differ, amx.size(),
                threads_differ ? "CHANGE BITS" : "same bits");
    bad += here + threads_differ;
  }
  const Product big{1024, 1024, 1024, false, false};
  const auto a = random_values(1024 * 1024, 100), b = random_values(1024 * 1024, 101);
  const double flop = 2.0 * 1024 * 1024 * 1024;
  for (const int timed : {0, 3, 4}) {
    if (loom::set_gemm_precision(timed) != timed) continue;
    std::printf("1024^3 %-20s %.0f GFLOP/s (%d threads)\n", loom::precision_name(timed), flop / seconds_of(big, a, b) / 1e9, loom::pool().size());
  }
  loom::set_gemm_precision(0);
  std::printf("amx-check (%s): %s\n", name, bad ? "FAILED" : "every product within bounds, the same bits on every thread count");
  return bad ? 1 : 0;
}
