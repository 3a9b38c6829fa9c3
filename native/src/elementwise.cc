#include "elementwise.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "mathf.h"
#include "pool.h"

namespace loom {
namespace {

// Splits [0, n) over the pool when there is enough work to pay for waking the threads.
template <typename F>
void chunks(int64_t n, F f) {
  const int threads = pool().size();
  if (n < (1 << 16) || threads == 1) return f(0, n);
  const int64_t per = (n + threads - 1) / threads;
  pool().parallel_for(threads, [&](int t) {
    const int64_t lo = t * per, hi = std::min(n, lo + per);
    if (lo < hi) f(lo, hi);
  });
}

template <Binary op>
inline float apply(float x, float y) {
  if constexpr (op == Binary::Add) return x + y;
  if constexpr (op == Binary::Sub) return x - y;
  if constexpr (op == Binary::Mul) return x * y;
  if constexpr (op == Binary::Div) return x / y;
  if constexpr (op == Binary::Maximum) return (std::isnan(x) || std::isnan(y)) ? NAN : (x > y ? x : y);
  if constexpr (op == Binary::Minimum) return (std::isnan(x) || std::isnan(y)) ? NAN : (x < y ? x : y);
  if constexpr (op == Binary::SquaredDifference) return (x - y) * (x - y);
  if constexpr (op == Binary::ReluGrad) return y > 0.f ? x : (y != y ? y : 0.f);
}

// The innermost dimension, specialised on whether each operand moves (stride 1) or is broadcast (stride 0).
template <Binary op>
inline void row(const float* a, const float* b, float* out, int64_t n, int64_t sa, int64_t sb) {
  if (sa == 1 && sb == 1)
    for (int64_t i = 0; i < n; i++) out[i] = apply<op>(a[i], b[i]);
  else if (sa == 1 && sb == 0)
    for (int64_t i = 0; i < n; i++) out[i] = apply<op>(a[i], b[0]);
  else if (sa == 0 && sb == 1)
    for (int64_t i = 0; i < n; i++) out[i] = apply<op>(a[0], b[i]);
  else
    for (int64_t i = 0; i < n; i++) out[i] = apply<op>(a[i * sa], b[i * sb]);
}

template <Binary op>
void binary_t(const float* a, const float* b, float* out, int rank, const int64_t* shape, const int64_t* sa, const int64_t* sb) {
  const int64_t inner = shape[rank - 1];
  int64_t rows = 1;
  for (int d = 0; d < rank - 1; d++) rows *= shape[d];
  chunks(rows * inner, [&](int64_t lo, int64_t hi) {
    // [lo, hi) is a range of flat output indices: whole rows in the middle, partial rows at either end, so that
    // two threads never write the same element (even when everything is one long row).
    for (int64_t r = lo / inner; r * inner < hi; r++) {
      const int64_t j0 = std::max(lo, r * inner) - r * inner, j1 = std::min(hi, (r + 1) * inner) - r * inner;
      int64_t rem = r, oa = 0, ob = 0;
      for (int d = rank - 2; d >= 0; d--) {
        const int64_t i = rem % shape[d];
        rem /= shape[d];
        oa += i * sa[d];
        ob += i * sb[d];
      }
      const int64_t xa = sa[rank - 1], xb = sb[rank - 1];
      row<op>(a + oa + j0 * xa, b + ob + j0 * xb, out + r * inner + j0, j1 - j0, xa, xb);
    }
  });
}

}  // namespace

void binary(Binary op, const float* a, const float* b, float* out, int rank, const int64_t* shape, const int64_t* sa, const int64_t* sb) {
  switch (op) {
    case Binary::Add: return binary_t<Binary::Add>(a, b, out, rank, shape, sa, sb);
    case Binary::Sub: return binary_t<Binary::Sub>(a, b, out, rank, shape, sa, sb);
    case Binary::Mul: return binary_t<Binary::Mul>(a, b, out, rank, shape, sa, sb);
    case Binary::Div: return binary_t<Binary::Div>(a, b, out, rank, shape, sa, sb);
    case Binary::Maximum: return binary_t<Binary::Maximum>(a, b, out, rank, shape, sa, sb);
    case Binary::Minimum: return binary_t<Binary::Minimum>(a, b, out, rank, shape, sa, sb);
    case Binary::SquaredDifference: return binary_t<Binary::SquaredDifference>(a, b, out, rank, shape, sa, sb);
    case Binary::ReluGrad: return binary_t<Binary::ReluGrad>(a, b, out, rank, shape, sa, sb);
  }
}

void unary(Unary op, const float* x, float* y, int64_t n, float alpha) {
  chunks(n, [&](int64_t lo, int64_t hi) {
    switch (op) {
      case Unary::Relu: for (int64_t i = lo; i < hi; i++) y[i] = x[i] < 0.f ? 0.f : x[i]; break;
      case Unary::Step:  // branch-free so it vectorises; NaN stays NaN as in tfjs
        {
          const float a = alpha;  // a local copy: through the lambda's reference it might alias y, which blocks vectorising
          for (int64_t i = lo; i < hi; i++) {
            const float v = x[i];
            y[i] = v > 0.f ? 1.f : (v != v ? v : a);
          }
        }
        break;
      case Unary::Sqrt: for (int64_t i = lo; i < hi; i++) y[i] = std::sqrt(x[i]); break;
      case Unary::Square: for (int64_t i = lo; i < hi; i++) y[i] = x[i] * x[i]; break;
      case Unary::Exp: for (int64_t i = lo; i < hi; i++) y[i] = exp_f(x[i]); break;
      case Unary::Log: for (int64_t i = lo; i < hi; i++) y[i] = std::log(x[i]); break;
      case Unary::Neg: for (int64_t i = lo; i < hi; i++) y[i] = -x[i]; break;
      case Unary::Tanh: for (int64_t i = lo; i < hi; i++) y[i] = tanh_f(x[i]); break;
      case Unary::Sigmoid: for (int64_t i = lo; i < hi; i++) y[i] = sigmoid_f(x[i]); break;
      case Unary::Abs: for (int64_t i = lo; i < hi; i++) y[i] = std::fabs(x[i]); break;
      case Unary::Rsqrt: for (int64_t i = lo; i < hi; i++) y[i] = 1.f / std::sqrt(x[i]); break;
      case Unary::Reciprocal: for (int64_t i = lo; i < hi; i++) y[i] = 1.f / x[i]; break;
      case Unary::Erf: for (int64_t i = lo; i < hi; i++) y[i] = erf_f(x[i]); break;
    }
  });
}

// Σ x[0..n) in double, in eight independent chains: one chain waits ~4 cycles per add, which made a row sum of
// 2048×1024 take 1 ms; the order differs from a sequential sum only in double rounding.
static double sum_d(const float* x, int64_t n) {
  double s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; j++) s[j] += x[i + j];
  for (; i < n; i++) s[0] += x[i];
  return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

// 16 independent lanes of `e < lo ? e : lo` (four 4-float vectors: GCC's vector extensions, as the loop over
// scalars was not vectorised), then the lanes and the tail. Comparisons with NaN are false, so NaN is skipped as
// in the serial loop; only which of two equal values is kept can differ from it: +0 or -0.
void min_max(const float* x, int64_t n, float* out) {
  typedef float V __attribute__((vector_size(16)));
  typedef float VU __attribute__((vector_size(16), aligned(4)));
  typedef int VI __attribute__((vector_size(16)));
  constexpr int K = 4;
  V lo[K], hi[K];
  for (int j = 0; j < K; j++) lo[j] = V{} + INFINITY, hi[j] = V{} - INFINITY;
  int64_t i = 0;
  for (; i + 4 * K <= n; i += 4 * K)
    for (int j = 0; j < K; j++) {
      const V e = *reinterpret_cast<const VU*>(x + i + 4 * j);
      const VI below = e < lo[j], above = e > hi[j];
      lo[j] = below ? e : lo[j];
      hi[j] = above ? e : hi[j];
    }
  float l = INFINITY, h = -INFINITY;
  for (int j = 0; j < K; j++)
    for (int q = 0; q < 4; q++) l = lo[j][q] < l ? lo[j][q] : l, h = hi[j][q] > h ? hi[j][q] : h;
  for (; i < n; i++) l = x[i] < l ? x[i] : l, h = x[i] > h ? x[i] : h;
  out[0] = l;
  out[1] = h;
}

void sum3(const float* x, float* y, int64_t outer, int64_t reduce, int64_t inner) {
  if (inner == 1) {
    // Rows are split between threads (each output written by one thread); a single long row is split into
    // per-thread partial sums that are added at the end.
    const int threads = pool().size();
    if (outer >= threads || outer * reduce < (1 << 16)) {
      const int64_t per = (outer + threads - 1) / threads;
      auto rows = [&](int64_t o0, int64_t o1) {
        for (int64_t o = o0; o < o1; o++) y[o] = (float)sum_d(x + o * reduce, reduce);  // double: long sums in float lose digits
      };
      if (outer * reduce < (1 << 16) || threads == 1) return rows(0, outer);
      pool().parallel_for(threads, [&](int t) { rows(std::min(outer, t * per), std::min(outer, (t + 1) * per)); });
      return;
    }
    for (int64_t o = 0; o < outer; o++) {
      std::vector<double> part(threads, 0.0);
      const int64_t per = (reduce + threads - 1) / threads;
      const float* xo = x + o * reduce;
      pool().parallel_for(threads, [&](int t) {
        const int64_t r0 = std::min(reduce, t * per);
        part[t] = sum_d(xo + r0, std::min(reduce, (t + 1) * per) - r0);
      });
      double s = 0;
      for (double p : part) s += p;
      y[o] = (float)s;
    }
    return;
  }
  // Sum rows of [reduce, inner] blocks; each thread owns a range of inner columns.
  const int threads = pool().size();
  const int64_t per = outer * reduce * inner < (1 << 16) ? inner : std::max<int64_t>(8, (inner + threads - 1) / threads);
  const int tasks = (int)((inner + per - 1) / per);
  pool().parallel_for(tasks, [&](int t) {
    const int64_t i0 = t * per, i1 = std::min(inner, i0 + per);
    std::vector<double> acc(i1 - i0);  // double accumulation, as tfjs's JavaScript sums do
    for (int64_t o = 0; o < outer; o++) {
      std::fill(acc.begin(), acc.end(), 0.0);
      for (int64_t r = 0; r < reduce; r++) {
        const float* xr = x + (o * reduce + r) * inner + i0;
        for (int64_t i = 0; i < i1 - i0; i++) acc[i] += xr[i];
      }
      for (int64_t i = 0; i < i1 - i0; i++) y[o * inner + i0 + i] = (float)acc[i];
    }
  });
}

namespace {

// One Adam step over [lo, hi). The lambda that used to hold this loop reached lr, β1, ... through references, which a
// float store might alias, so the compiler reloaded them per element and did not vectorise: ~17 ns per element, 18 %
// of an MNIST training step. Here they are values and the arrays are __restrict. Contraction is off so that every
// version (SSE2, AVX2+FMA, NEON) computes exactly the scalar expression, with the same roundings as before:
// recorded runs replay bit for bit.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")
#endif
LOOM_TWO_VERSIONS(adam_range,
                  (const float* __restrict p, const float* __restrict g, const float* __restrict m, const float* __restrict v,
                   float* __restrict p2, float* __restrict m2, float* __restrict v2, int64_t lo, int64_t hi, float lr, float b1, float b2,
                   float eps, float c1, float c2),
                  {
#if defined(__clang__)
#pragma clang fp contract(off)
#endif
                    const float a1 = 1.f - b1, a2 = 1.f - b2;
                    for (int64_t i = lo; i < hi; i++) {
                      const float gi = g[i];
                      const float mi = b1 * m[i] + a1 * gi;
                      const float vi = b2 * v[i] + a2 * gi * gi;
                      m2[i] = mi;
                      v2[i] = vi;
                      p2[i] = p[i] - lr * ((mi / c1) / (std::sqrt(vi / c2) + eps));
                    }
                  })
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC pop_options
#endif

// One SGD step over [lo, hi), written as the composed tfjs ops of plugins/optimizers/sgd.ts compute it, one rounding
// per operation (contraction off, as adam_range): g' = g + θ·λ (only where λ ≠ 0); with momentum b' = b·μ + g' and
// the step b' (Nesterov: g' + b'·μ); θ' = θ − step·α. b and b2 are null without momentum.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")
#endif
LOOM_TWO_VERSIONS(sgd_range,
                  (const float* __restrict p, const float* __restrict g, const float* __restrict b, float* __restrict p2, float* __restrict b2,
                   int64_t lo, int64_t hi, float lr, float decay, float mu, bool nesterov),
                  {
#if defined(__clang__)
#pragma clang fp contract(off)
#endif
                    // One loop per case, so that each vectorises without a branch per element.
                    if (!b) {
                      if (decay != 0.f)
                        for (int64_t i = lo; i < hi; i++) p2[i] = p[i] - (g[i] + p[i] * decay) * lr;
                      else
                        for (int64_t i = lo; i < hi; i++) p2[i] = p[i] - g[i] * lr;
                    } else if (!nesterov) {
                      if (decay != 0.f)
                        for (int64_t i = lo; i < hi; i++) {
                          const float bi = b[i] * mu + (g[i] + p[i] * decay);
                          b2[i] = bi;
                          p2[i] = p[i] - bi * lr;
                        }
                      else
                        for (int64_t i = lo; i < hi; i++) {
                          const float bi = b[i] * mu + g[i];
                          b2[i] = bi;
                          p2[i] = p[i] - bi * lr;
                        }
                    } else {
                      if (decay != 0.f)
                        for (int64_t i = lo; i < hi; i++) {
                          const float gi = g[i] + p[i] * decay;
                          const float bi = b[i] * mu + gi;
                          b2[i] = bi;
                          p2[i] = p[i] - (gi + bi * mu) * lr;
                        }
                      else
                        for (int64_t i = lo; i < hi; i++) {
                          const float bi = b[i] * mu + g[i];
                          b2[i] = bi;
                          p2[i] = p[i] - (g[i] + bi * mu) * lr;
                        }
                    }
                  })
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC pop_options
#endif

}  // namespace

// Both LSTM kernels are compiled for the baseline (as unary's loops, whose exp_f, sigmoid_f and tanh_f they share): on
// x86-64 there is no fused multiply-add to contract into, so each operation rounds once, as the composed kernels do.
// AArch64's baseline has one, and -ffp-contract=fast would fuse a product into the sum that follows it, which the
// composed kernels (a Multiply, then an Add) round twice: rounded() pins such a product to a register, rounded, there
// (an empty asm the compiler cannot see through), and nothing on x86-64, whose loops then stay vectorised.
#if defined(__aarch64__)
static inline float rounded(float x) {
  asm("" : "+w"(x));
  return x;
}
#else
static inline float rounded(float x) { return x; }
#endif

void lstm_cell(const float* zx, const float* hu, const float* c_prev, float* h, float* c, float* gates, int64_t batch, int64_t units,
               int64_t time, int64_t t) {
  const int64_t u = units, w = 4 * units;
  for (int64_t r = 0; r < batch; r++) {
    const float* zr = zx + (r * time + t) * w;
    const float* hr = hu + r * w;
    float* g = gates + r * w;
    for (int64_t j = 0; j < w; j++) g[j] = zr[j] + hr[j];
    for (int64_t j = 0; j < 2 * u; j++) g[j] = sigmoid_f(g[j]);
    for (int64_t j = 2 * u; j < 3 * u; j++) g[j] = tanh_f(g[j]);
    for (int64_t j = 3 * u; j < w; j++) g[j] = sigmoid_f(g[j]);
    const float* cp = c_prev + r * u;
    float* cr = c + r * u;
    float* hrow = h + r * u;
    for (int64_t j = 0; j < u; j++) {
      const float fc = rounded(g[u + j] * cp[j]), ig = rounded(g[j] * g[2 * u + j]);
      cr[j] = fc + ig;
    }
    for (int64_t j = 0; j < u; j++) hrow[j] = g[3 * u + j] * tanh_f(cr[j]);
  }
}

void lstm_cell_grad(const float* dh, const float* dy, int64_t dy_time, int64_t dy_t, const float* gates, const float* cs, const float* dc,
                    float* dz, float* dc_out, int64_t batch, int64_t units, int64_t t) {
  const int64_t u = units, w = 4 * units;
  const float* gt = gates + t * batch * w;
  const float* cprev = cs + t * batch * u;
  const float* cnext = cs + (t + 1) * batch * u;
  for (int64_t r = 0; r < batch; r++) {
    const float* g = gt + r * w;
    float* d = dz + r * w;
    for (int64_t j = 0; j < u; j++) {
      const int64_t k = r * u + j;
      const float dht = dy ? dy[(r * dy_time + dy_t) * u + j] + dh[k] : dh[k];
      const float i = g[j], f = g[u + j], gg = g[2 * u + j], o = g[3 * u + j];
      const float tc = tanh_f(cnext[k]);
      const float one_tc2 = 1.f - rounded(tc * tc);
      const float dho = dht * o;
      const float dct = dc[k] + rounded(dho * one_tc2);
      const float di1 = dct * gg, di2 = i * (1.f - i);
      d[j] = di1 * di2;
      const float df1 = dct * cprev[k], df2 = f * (1.f - f);
      d[u + j] = df1 * df2;
      const float dg1 = dct * i, dg2 = 1.f - rounded(gg * gg);
      d[2 * u + j] = dg1 * dg2;
      const float do1 = dht * tc, do2 = o * (1.f - o);
      d[3 * u + j] = do1 * do2;
      dc_out[k] = dct * f;
    }
  }
}

void adam(const float* p, const float* g, const float* m, const float* v, float* p2, float* m2, float* v2, int64_t n, float lr, float b1,
          float b2, float eps, float c1, float c2) {
  const auto f = simd() ? adam_range_simd : adam_range_base;
  chunks(n, [&](int64_t lo, int64_t hi) { f(p, g, m, v, p2, m2, v2, lo, hi, lr, b1, b2, eps, c1, c2); });
}

void sgd(const float* p, const float* g, const float* b, float* p2, float* b2, int64_t n, float lr, float decay, float mu, bool nesterov) {
  const auto f = simd() ? sgd_range_simd : sgd_range_base;
  chunks(n, [&](int64_t lo, int64_t hi) { f(p, g, b, p2, b2, lo, hi, lr, decay, mu, nesterov); });
}

}  // namespace loom
