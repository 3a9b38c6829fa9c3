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

}  // namespace

void softmax(const float* x, float* y, int64_t rows, int64_t cols) {
  over_rows(rows, cols, [&](int64_t r0, int64_t r1, int) {
    for (int64_t r = r0; r < r1; r++) {
      const float* in = x + r * cols;
      float* out = y + r * cols;
      float mx = -std::numeric_limits<float>::infinity();
      for (int64_t j = 0; j < cols; j++) mx = in[j] > mx ? in[j] : mx;
      for (int64_t j = 0; j < cols; j++) out[j] = exp_f(in[j] - mx);
      const float inv = 1.f / row_sum(out, cols);
      for (int64_t j = 0; j < cols; j++) out[j] *= inv;
    }
  });
}

void softmax_grad(const float* dy, const float* y, float* dx, int64_t rows, int64_t cols) {
  over_rows(rows, cols, [&](int64_t r0, int64_t r1, int) {
    for (int64_t r = r0; r < r1; r++) {
      const float *g = dy + r * cols, *p = y + r * cols;
      float* out = dx + r * cols;
      const float s = row_dot(g, p, cols);
      for (int64_t j = 0; j < cols; j++) out[j] = p[j] * (g[j] - s);
    }
  });
}

void layer_norm(const float* x, const float* gamma, const float* beta, float* y, int64_t rows, int64_t cols, float eps) {
  over_rows(rows, cols, [&](int64_t r0, int64_t r1, int) {
    for (int64_t r = r0; r < r1; r++) {
      const float* in = x + r * cols;
      float* out = y + r * cols;
      float mu, rs;
      moments(in, cols, eps, &mu, &rs);
      for (int64_t j = 0; j < cols; j++) out[j] = (in[j] - mu) * rs * gamma[j] + beta[j];
    }
  });
}

void layer_norm_grad(const float* dy, const float* x, const float* gamma, float* dx, float* dgamma, float* dbeta, int64_t rows, int64_t cols,
                     float eps) {
  // dγ and dβ are summed over rows: a partial sum per task, added at the end (no two threads write one element).
  const int tasks = pool().size();
  std::vector<float> part((size_t)tasks * 2 * cols, 0.f);
  std::vector<float> scratch((size_t)tasks * 2 * cols);
  over_rows(rows, cols, [&](int64_t r0, int64_t r1, int t) {
    float* pg = part.data() + (size_t)t * 2 * cols;
    float* pb = pg + cols;
    float* xhat = scratch.data() + (size_t)t * 2 * cols;
    float* g = xhat + cols;
    for (int64_t r = r0; r < r1; r++) {
      const float *in = x + r * cols, *d = dy + r * cols;
      float* out = dx + r * cols;
      float mu, rs;
      moments(in, cols, eps, &mu, &rs);
      for (int64_t j = 0; j < cols; j++) {
        xhat[j] = (in[j] - mu) * rs;
        g[j] = d[j] * gamma[j];
        pg[j] += d[j] * xhat[j];
        pb[j] += d[j];
      }
      const float mg = row_sum(g, cols) / (float)cols, mgx = row_dot(g, xhat, cols) / (float)cols;
      for (int64_t j = 0; j < cols; j++) out[j] = rs * (g[j] - mg - xhat[j] * mgx);
    }
  });
  for (int64_t j = 0; j < cols; j++) {
    float sg = 0.f, sb = 0.f;
    for (int t = 0; t < tasks; t++) {
      sg += part[(size_t)t * 2 * cols + j];
      sb += part[(size_t)t * 2 * cols + cols + j];
    }
    dgamma[j] = sg;
    dbeta[j] = sb;
  }
}

}  // namespace loom
