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

inline bool allowed(const float* keep, const AttentionShape& s, int64_t b, int64_t i, int64_t j) {
  return (!s.causal || j <= i) && (!keep || keep[b * s.time + j] != 0.f);
}

thread_local std::vector<float> scratch;  // dP of one (batch, head) pair in the backward pass

}  // namespace

void attention(const float* qkv, const float* keep, float* context, float* probs, const AttentionShape& s) {
  const int64_t t = s.time, dk = s.dk, d = s.heads * dk, ld = 3 * d;
  const float scale = 1.f / std::sqrt((float)dk);
  pool().parallel_for((int)(s.batch * s.heads), [&](int task) {
    const int64_t b = task / s.heads, h = task % s.heads;
    const float* q = qkv + b * t * ld + h * dk;
    float* p = probs + (int64_t)task * t * t;
    sgemm(t, t, dk, {q, ld, false}, {q + d, ld, true}, p, t, 0.f, nullptr, false, false);  // q·kᵀ
    for (int64_t i = 0; i < t; i++) {
      float* row = p + i * t;
      float mx = -std::numeric_limits<float>::infinity();
      for (int64_t j = 0; j < t; j++) {
        row[j] = allowed(keep, s, b, i, j) ? row[j] * scale : -1e9f;
        mx = row[j] > mx ? row[j] : mx;
      }
      for (int64_t j = 0; j < t; j++) row[j] = exp_f(row[j] - mx);
      const float inv = 1.f / row_sum(row, t);
      for (int64_t j = 0; j < t; j++) row[j] *= inv;
    }
    sgemm(t, dk, t, {p, t, false}, {q + 2 * d, ld, false}, context + b * t * d + h * dk, d, 0.f, nullptr, false, false);  // P·v
  });
}

void attention_grad(const float* dcontext, const float* qkv, const float* keep, const float* probs, float* dqkv, const AttentionShape& s) {
  const int64_t t = s.time, dk = s.dk, d = s.heads * dk, ld = 3 * d;
  const float scale = 1.f / std::sqrt((float)dk);
  pool().parallel_for((int)(s.batch * s.heads), [&](int task) {
    const int64_t b = task / s.heads, h = task % s.heads;
    const float* q = qkv + b * t * ld + h * dk;
    const float* k = q + d;
    const float* v = q + 2 * d;
    const float* p = probs + (int64_t)task * t * t;
    const float* dout = dcontext + b * t * d + h * dk;
    float* dq = dqkv + b * t * ld + h * dk;
    if (scratch.size() < (size_t)(t * t)) scratch.resize(t * t);
    float* ds = scratch.data();
    sgemm(t, dk, t, {p, t, true}, {dout, d, false}, dq + 2 * d, ld, 0.f, nullptr, false, false);  // dv = Pᵀ·dout
    sgemm(t, t, dk, {dout, d, false}, {v, ld, true}, ds, t, 0.f, nullptr, false, false);           // dP = dout·vᵀ
    for (int64_t i = 0; i < t; i++) {  // dS = P ⊙ (dP − Σ dP ⊙ P) / √dk, 0 where the score was masked (a constant)
      const float* pi = p + i * t;
      float* gi = ds + i * t;
      const float dot = row_dot(gi, pi, t);
      for (int64_t j = 0; j < t; j++) gi[j] = allowed(keep, s, b, i, j) ? pi[j] * (gi[j] - dot) * scale : 0.f;
    }
    sgemm(t, dk, t, {ds, t, false}, {k, ld, false}, dq, ld, 0.f, nullptr, false, false);      // dq = dS·k
    sgemm(t, dk, t, {ds, t, true}, {q, ld, false}, dq + d, ld, 0.f, nullptr, false, false);   // dk = dSᵀ·q
  });
}

}  // namespace loom
