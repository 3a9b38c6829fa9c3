#include "attention.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "gemm.h"
#include "mathf.h"
#include "pool.h"

namespace loom {
namespace {

LOOM_INLINE bool allowed(const float* keep, const AttentionShape& s, int64_t b, int64_t i, int64_t j) {
  return (!s.causal || j <= i) && (!keep || keep[b * s.time + j] != 0.f);
}

thread_local std::vector<float> scratch;  // dP of one (batch, head) pair in the backward pass

// Softmax of one row of scores, scaled, with the masked ones replaced by −1e9.
LOOM_INLINE void masked_softmax_row(float* row, const float* keep, const AttentionShape& s, int64_t b, int64_t i, float scale) {
  const int64_t t = s.time;
  float mx = -std::numeric_limits<float>::infinity();
  for (int64_t j = 0; j < t; j++) {
    row[j] = allowed(keep, s, b, i, j) ? row[j] * scale : -1e9f;
    mx = row[j] > mx ? row[j] : mx;
  }
  for (int64_t j = 0; j < t; j++) row[j] = exp_f(row[j] - mx);
  const float inv = 1.f / row_sum(row, t);
  for (int64_t j = 0; j < t; j++) row[j] *= inv;
}

// dS = P ⊙ (dP − Σ dP ⊙ P) / √dk for one row, 0 where the score was masked (a constant there).
LOOM_INLINE void masked_softmax_grad_row(float* g, const float* p, const float* keep, const AttentionShape& s, int64_t b, int64_t i, float scale) {
  const float dot = row_dot(g, p, s.time);
  for (int64_t j = 0; j < s.time; j++) g[j] = allowed(keep, s, b, i, j) ? p[j] * (g[j] - dot) * scale : 0.f;
}

// One (batch, head) pair of the forward pass.
LOOM_TWO_VERSIONS(attention_task, (const float* qkv, const float* keep, float* context, float* probs, const AttentionShape& s, int64_t task), {
  const int64_t t = s.time, dk = s.dk, d = s.heads * dk, ld = 3 * d;
  const float scale = 1.f / std::sqrt((float)dk);
  const int64_t b = task / s.heads, h = task % s.heads;
  const float* q = qkv + b * t * ld + h * dk;
  float* p = probs + task * t * t;
  sgemm(t, t, dk, {q, ld, false}, {q + d, ld, true}, p, t, 0.f, nullptr, false, false);  // q·kᵀ
  for (int64_t i = 0; i < t; i++) masked_softmax_row(p + i * t, keep, s, b, i, scale);
  sgemm(t, dk, t, {p, t, false}, {q + 2 * d, ld, false}, context + b * t * d + h * dk, d, 0.f, nullptr, false, false);  // P·v
})

// One (batch, head) pair of the backward pass; ds is a t×t scratch matrix.
LOOM_TWO_VERSIONS(attention_grad_task, (const float* dcontext, const float* qkv, const float* keep, const float* probs, float* dqkv, float* ds,
                                        const AttentionShape& s, int64_t task), {
  const int64_t t = s.time, dk = s.dk, d = s.heads * dk, ld = 3 * d;
  const float scale = 1.f / std::sqrt((float)dk);
  const int64_t b = task / s.heads, h = task % s.heads;
  const float* q = qkv + b * t * ld + h * dk;
  const float* k = q + d;
  const float* v = q + 2 * d;
  const float* p = probs + task * t * t;
  const float* dout = dcontext + b * t * d + h * dk;
  float* dq = dqkv + b * t * ld + h * dk;
  sgemm(t, dk, t, {p, t, true}, {dout, d, false}, dq + 2 * d, ld, 0.f, nullptr, false, false);  // dv = Pᵀ·dout
  sgemm(t, t, dk, {dout, d, false}, {v, ld, true}, ds, t, 0.f, nullptr, false, false);           // dP = dout·vᵀ
  for (int64_t i = 0; i < t; i++) masked_softmax_grad_row(ds + i * t, p + i * t, keep, s, b, i, scale);
  sgemm(t, dk, t, {ds, t, false}, {k, ld, false}, dq, ld, 0.f, nullptr, false, false);     // dq = dS·k
  sgemm(t, dk, t, {ds, t, true}, {q, ld, false}, dq + d, ld, 0.f, nullptr, false, false);  // dk = dSᵀ·q
})

}  // namespace

void attention(const float* qkv, const float* keep, float* context, float* probs, const AttentionShape& s) {
  const auto f = simd() ? attention_task_simd : attention_task_base;
  pool().parallel_for((int)(s.batch * s.heads), [&](int task) { f(qkv, keep, context, probs, s, task); });
}

void attention_grad(const float* dcontext, const float* qkv, const float* keep, const float* probs, float* dqkv, const AttentionShape& s) {
  const auto f = simd() ? attention_grad_task_simd : attention_grad_task_base;
  pool().parallel_for((int)(s.batch * s.heads), [&](int task) {
    if (scratch.size() < (size_t)(s.time * s.time)) scratch.resize(s.time * s.time);
    f(dcontext, qkv, keep, probs, dqkv, scratch.data(), s, task);
  });
}

}  // namespace loom
