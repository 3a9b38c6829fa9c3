// Multi-head self-attention (Vaswani et al. 2017, eq. 1 and §3.2.2) in one kernel per direction, reading the
// heads straight out of the packed [batch, time, 3·d] projection (q, k, v blocks of d columns, head h in columns
// h·dk..h·dk+dk of each) and writing the context in [batch, time, d]: no transposes, stacks or unstacks, and the
// scores of one (batch, head) pair are scaled, masked and normalised while they are in cache.
#pragma once
#include <cstdint>

namespace loom {

struct AttentionShape {
  int64_t batch, time, heads, dk;  // d = heads·dk
  bool causal;                     // query i attends to keys j ≤ i only
};

// context[b, i, h·dk + c] = Σ_j P[b,h,i,j] · v[b, j, h·dk + c], P = softmax over j of q·kᵀ/√dk, with masked
// scores replaced by −1e9 (a row with every key masked is uniform). keep: [batch, time] (1 = attend, 0 = padding)
// or null. probs [batch, heads, time, time] receives P (the backward pass needs it).
void attention(const float* qkv, const float* keep, float* context, float* probs, const AttentionShape& s);
// The gradient with respect to qkv from dcontext and the forward pass's P; writes every element of dqkv.
void attention_grad(const float* dcontext, const float* qkv, const float* keep, const float* probs, float* dqkv, const AttentionShape& s);

// Decoding's attention to a cached memory (cross-attention over the encoder output's keys and values), each item's
// memory shared by `repeat` consecutive query rows (a beam search's hypotheses of one source): rows = items·repeat.
struct MemoryAttentionShape {
  int64_t rows, heads, dk, keys, repeat;
};
// context[r, h·dk + c] = Σ_j P[r,h,j] · v[r / repeat, h, j, c], P = softmax over j of s_j·(m_j/√dk) + (m_j − 1)·1e9,
// s_j = q[r, h·dk..] · k[r / repeat, h, j, ..], m_j = 1 where keep[r, j] ≠ 0 and 0 elsewhere (all 1 without keep):
// the composed ops' arithmetic (multi-head-attention.ts), so masked scores become −1e9. q and context are
// [rows, heads·dk]; k and v [rows / repeat, heads, keys, dk]; keep [rows, keys] or null.
void memory_attention(const float* q, const float* k, const float* v, const float* keep, float* context, const MemoryAttentionShape& s);

}  // namespace loom
