#include "attention.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "gemm.h"
#include "mathf.h"
#include "pool.h"
#include "rows.h"

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

// One (item, head) pair of memory_attention: the item's `repeat` query rows as one product each way (every element
// of a product is the same chain of multiply-adds however many rows it has, gemm.h: these are the bits of the
// composed ops' per-row BatchMatMul), scaled and masked as the composed ops' Multiply and Add round, softmax per row
// (the softmax kernel's). scores: 2·repeat·keys floats of scratch.
void memory_attention_task(const float* q, const float* k, const float* v, const float* keep, float* context, const MemoryAttentionShape& s,
                           int64_t task, float* scores) {
  const int64_t n = s.repeat, t = s.keys, dk = s.dk, d = s.heads * dk;
  const int64_t item = task / s.heads, h = task % s.heads, r0 = item * n;
  const float* kh = k + task * t * dk;  // [items, heads, keys, dk]: block (item, h) is number `task`
  const float* vh = v + task * t * dk;
  float* p = scores + n * t;
  // 1/√dk as JavaScript's Math.fround(1 / Math.sqrt(dk)) and tfjs's float32 scalar give it.
  const float scale = (float)(1.0 / std::sqrt((double)dk));
  sgemm(n, t, dk, {q + r0 * d + h * dk, d, false}, {kh, dk, true}, scores, t, 0.f, nullptr, false, false);  // q·kᵀ
  for (int64_t i = 0; i < n; i++) {
    float* row = scores + i * t;
    if (keep) {
      const float* m = keep + (r0 + i) * t;
      for (int64_t j = 0; j < t; j++) {
        const float mj = m[j] != 0.f ? 1.f : 0.f;
        const float scaled = row[j] * (mj * scale);
        row[j] = scaled + (mj - 1.f) * 1e9f;  // + 0 where kept, −1e9 in place of 0 where masked
      }
    } else {
      for (int64_t j = 0; j < t; j++) row[j] *= scale;
    }
    softmax(row, p + i * t, 1, t);  // one row: runs here, never on the pool (this is already a pool task)
  }
  sgemm(n, dk, t, {p, t, false}, {vh, dk, false}, context + r0 * d + h * dk, d, 0.f, nullptr, false, false);  // P·v
}

}  // namespace

void memory_attention(const float* q, const float* k, const float* v, const float* keep, float* context, const MemoryAttentionShape& s) {
  const int64_t items = s.rows / s.repeat, tasks = items * s.heads;
  auto run = [&](int64_t task) {
    thread_local std::vector<float> scores;
    if (scores.size() < (size_t)(2 * s.repeat * s.keys)) scores.resize(2 * s.repeat * s.keys);
    memory_attention_task(q, k, v, keep, context, s, task, scores.data());
  };
  // As BatchMatMul splits a batch of small products: on the calling thread below 2^18 multiply-adds in all.
  if ((double)s.rows * s.heads * s.keys * s.dk < (1 << 18))
    for (int64_t task = 0; task < tasks; task++) run(task);
  else
    pool().parallel_for((int)tasks, [&](int task) { run(task); });
}

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
