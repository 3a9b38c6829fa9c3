#include "rows.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "mathf.h"
#include "pool.h"

namespace loom {
namespace {

// Splits the rows into one contiguous range per thread when there is enough work; f(r0, r1, task).
template <typename F>
void over_rows(int64_t rows, int64_t cols, F f) {
  const int threads = pool().size();
  if (threads == 1 || rows < 2 || rows * cols < (1 << 15)) return f(0, rows, 0);
  const int64_t per = (rows + threads - 1) / threads;
  pool().parallel_for(threads, [&](int t) {
    const int64_t r0 = std::min(rows, t * per), r1 = std::min(rows, (t + 1) * per);
    if (r0 < r1) f(r0, r1, t);
  });
}

// The row's mean and 1/√(σ² + ε), σ² from the centred values (two passes: no cancellation).
inline void moments(const float* x, int64_t n, float eps, float* mean, float* r) {
  const float mu = row_sum(x, n) / (float)n;
  float acc[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
  int64_t j = 0;
  for (; j + 8 <= n; j += 8)
    for (int l = 0; l < 8; l++) acc[l] += (x[j + l] - mu) * (x[j + l] - mu);
  float s = 0.f;
  for (; j < n; j++) s += (x[j] - mu) * (x[j] - mu);
  s += ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
  *mean = mu;
  *r = 1.f / std::sqrt(s / (float)n + eps);
}

// One row each, inlined into the two versions (LOOM_TWO_VERSIONS) of each loop over rows below.

LOOM_INLINE void softmax_row(const float* __restrict in, float* __restrict out, int64_t n) {
  float m8[8];
  for (int l = 0; l < 8; l++) m8[l] = -std::numeric_limits<float>::infinity();
  int64_t j = 0;
  for (; j + 8 <= n; j += 8)
    for (int l = 0; l < 8; l++) m8[l] = in[j + l] > m8[l] ? in[j + l] : m8[l];
  float mx = -std::numeric_limits<float>::infinity();
  for (; j < n; j++) mx = in[j] > mx ? in[j] : mx;
  for (int l = 0; l < 8; l++) mx = m8[l] > mx ? m8[l] : mx;
  for (j = 0; j < n; j++) out[j] = exp_f(in[j] - mx);
  const float inv = 1.f / row_sum(out, n);
  for (j = 0; j < n; j++) out[j] *= inv;
}

LOOM_INLINE void softmax_grad_row(const float* __restrict g, const float* __restrict p, float* __restrict out, int64_t n) {
  const float s = row_dot(g, p, n);
  for (int64_t j = 0; j < n; j++) out[j] = p[j] * (g[j] - s);
}

LOOM_INLINE void layer_norm_row(const float* __restrict in, const float* __restrict gamma, const float* __restrict beta, float* __restrict out,
                                int64_t n, float eps) {
  float mu, rs;
  moments(in, n, eps, &mu, &rs);
  for (int64_t j = 0; j < n; j++) out[j] = (in[j] - mu) * rs * gamma[j] + beta[j];
}

// dx of one row, and its terms of dγ and dβ added into pg and pb; xhat and g are scratch rows.
LOOM_INLINE void layer_norm_grad_row(const float* __restrict in, const float* __restrict d, const float* __restrict gamma, float* __restrict out,
                                     float* __restrict pg, float* __restrict pb, float* __restrict xhat, float* __restrict g, int64_t n, float eps) {
  float mu, rs;
  moments(in, n, eps, &mu, &rs);
  for (int64_t j = 0; j < n; j++) {
    xhat[j] = (in[j] - mu) * rs;
    g[j] = d[j] * gamma[j];
    pg[j] += d[j] * xhat[j];
    pb[j] += d[j];
  }
  const float mg = row_sum(g, n) / (float)n, mgx = row_dot(g, xhat, n) / (float)n;
  for (int64_t j = 0; j < n; j++) out[j] = rs * (g[j] - mg - xhat[j] * mgx);
}

// Softmax cross-entropy of one row against q = (1 − ε)·onehot(label) + ε/K: logsumexp(z) − Σ_k q_k z_k. A label
// outside [0, K) (an ignored row) contributes no one-hot term.
LOOM_INLINE float cross_entropy_row(const float* __restrict z, int32_t label, int64_t n, float eps) {
  float mx = -std::numeric_limits<float>::infinity();
  for (int64_t j = 0; j < n; j++) mx = z[j] > mx ? z[j] : mx;
  float acc[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
  int64_t j = 0;
  for (; j + 8 <= n; j += 8)
    for (int l = 0; l < 8; l++) acc[l] += exp_f(z[j + l] - mx);
  float s = 0.f;
  for (; j < n; j++) s += exp_f(z[j] - mx);
  s += ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
  const float zy = label >= 0 && label < n ? z[label] : 0.f;
  const float target = eps > 0.f ? (1.f - eps) * zy + eps * row_sum(z, n) / (float)n : zy;
  return mx + std::log(s) - target;
}

// Its gradient for one row: scale · (softmax(z) − q).
LOOM_INLINE void cross_entropy_grad_row(const float* __restrict z, int32_t label, float scale, float* __restrict out, int64_t n, float eps) {
  float mx = -std::numeric_limits<float>::infinity();
  for (int64_t j = 0; j < n; j++) mx = z[j] > mx ? z[j] : mx;
  for (int64_t j = 0; j < n; j++) out[j] = exp_f(z[j] - mx);
  const float k = scale / row_sum(out, n), off = scale * eps / (float)n;
  for (int64_t j = 0; j < n; j++) out[j] = out[j] * k - off;
  if (label >= 0 && label < n) out[label] -= scale * (1.f - eps);
}

LOOM_TWO_VERSIONS(cross_entropy_rows, (const float* z, const int32_t* labels, float* loss, int64_t r0, int64_t r1, int64_t cols, float eps),
                  { for (int64_t r = r0; r < r1; r++) loss[r] = cross_entropy_row(z + r * cols, labels[r], cols, eps); })
LOOM_TWO_VERSIONS(cross_entropy_grad_rows, (const float* z, const int32_t* labels, const float* scale, float* dz, int64_t r0, int64_t r1, int64_t cols, float eps),
                  { for (int64_t r = r0; r < r1; r++) cross_entropy_grad_row(z + r * cols, labels[r], scale[r], dz + r * cols, cols, eps); })
LOOM_TWO_VERSIONS(softmax_rows, (const float* x, float* y, int64_t r0, int64_t r1, int64_t cols),
              { for (int64_t r = r0; r < r1; r++) softmax_row(x + r * cols, y + r * cols, cols); })
LOOM_TWO_VERSIONS(softmax_grad_rows, (const float* dy, const float* y, float* dx, int64_t r0, int64_t r1, int64_t cols),
              { for (int64_t r = r0; r < r1; r++) softmax_grad_row(dy + r * cols, y + r * cols, dx + r * cols, cols); })
LOOM_TWO_VERSIONS(layer_norm_rows, (const float* x, const float* gamma, const float* beta, float* y, int64_t r0, int64_t r1, int64_t cols, float eps),
              { for (int64_t r = r0; r < r1; r++) layer_norm_row(x + r * cols, gamma, beta, y + r * cols, cols, eps); })
LOOM_TWO_VERSIONS(layer_norm_grad_rows,
              (const float* dy, const float* x, const float* gamma, float* dx, float* pg, int64_t r0, int64_t r1, int64_t cols, float eps), {
                for (int64_t r = r0; r < r1; r++)
                  layer_norm_grad_row(x + r * cols, dy + r * cols, gamma, dx + r * cols, pg, pg + cols, pg + 2 * cols, pg + 3 * cols, cols, eps);
              })
}  // namespace

void cross_entropy(const float* logits, const int32_t* labels, float* loss, int64_t rows, int64_t cols, float eps) {
  const auto f = simd() ? cross_entropy_rows_simd : cross_entropy_rows_base;
  over_rows(rows, cols, [&](int64_t r0, int64_t r1, int) { f(logits, labels, loss, r0, r1, cols, eps); });
}

void cross_entropy_grad(const float* logits, const int32_t* labels, const float* scale, float* dlogits, int64_t rows, int64_t cols, float eps) {
  const auto f = simd() ? cross_entropy_grad_rows_simd : cross_entropy_grad_rows_base;
  over_rows(rows, cols, [&](int64_t r0, int64_t r1, int) { f(logits, labels, scale, dlogits, r0, r1, cols, eps); });
}

void softmax(const float* x, float* y, int64_t rows, int64_t cols) {
  const auto f = simd() ? softmax_rows_simd : softmax_rows_base;
  over_rows(rows, cols, [&](int64_t r0, int64_t r1, int) { f(x, y, r0, r1, cols); });
}

void softmax_grad(const float* dy, const float* y, float* dx, int64_t rows, int64_t cols) {
  const auto f = simd() ? softmax_grad_rows_simd : softmax_grad_rows_base;
  over_rows(rows, cols, [&](int64_t r0, int64_t r1, int) { f(dy, y, dx, r0, r1, cols); });
}

void layer_norm(const float* x, const float* gamma, const float* beta, float* y, int64_t rows, int64_t cols, float eps) {
  const auto f = simd() ? layer_norm_rows_simd : layer_norm_rows_base;
  over_rows(rows, cols, [&](int64_t r0, int64_t r1, int) { f(x, gamma, beta, y, r0, r1, cols, eps); });
}

void layer_norm_grad(const float* dy, const float* x, const float* gamma, float* dx, float* dgamma, float* dbeta, int64_t rows, int64_t cols,
                     float eps) {
  // dγ and dβ are summed over rows: a partial sum per task, added at the end (no two threads write one element).
  const int tasks = pool().size();
  std::vector<float> part((size_t)tasks * 4 * cols, 0.f);  // per task: dγ, dβ partials, then x̂ and g scratch rows
  const auto f = simd() ? layer_norm_grad_rows_simd : layer_norm_grad_rows_base;
  over_rows(rows, cols, [&](int64_t r0, int64_t r1, int t) { f(dy, x, gamma, dx, part.data() + (size_t)t * 4 * cols, r0, r1, cols, eps); });
  for (int64_t j = 0; j < cols; j++) {
    float sg = 0.f, sb = 0.f;
    for (int t = 0; t < tasks; t++) {
      sg += part[(size_t)t * 4 * cols + j];
      sb += part[(size_t)t * 4 * cols + cols + j];
    }
    dgamma[j] = sg;
    dbeta[j] = sb;
  }
}

}  // namespace loom
