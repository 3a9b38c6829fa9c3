// Kernels over the rows of a [rows × cols] matrix (the last axis of a contiguous tensor): softmax and layer
// normalisation, each with its gradient in one pass, where tfjs composes four to a dozen elementwise kernels.
#pragma once
#include <cstdint>

namespace loom {

// y = softmax(x) over each row.
void softmax(const float* x, float* y, int64_t rows, int64_t cols);
// dx = y ⊙ (dy − Σ_j dy_j·y_j) per row: the softmax's vector-Jacobian product, from its output y.
void softmax_grad(const float* dy, const float* y, float* dx, int64_t rows, int64_t cols);
// y = γ ⊙ (x − μ)/√(σ² + ε) + β per row (μ, σ² the row's mean and biased variance).
void layer_norm(const float* x, const float* gamma, const float* beta, float* y, int64_t rows, int64_t cols, float eps);
// The gradient of layer_norm from its input x (μ and σ² are recomputed): with x̂ = (x − μ)·r, r = 1/√(σ² + ε) and
// g = dy ⊙ γ, dx = r·(g − mean(g) − x̂·mean(g ⊙ x̂)) per row; dγ = Σ_rows dy ⊙ x̂ and dβ = Σ_rows dy.
void layer_norm_grad(const float* dy, const float* x, const float* gamma, float* dx, float* dgamma, float* dbeta, int64_t rows, int64_t cols,
                     float eps);

// Per-row softmax cross-entropy against q = (1 − ε)·onehot(label) + ε/K: loss[r] = logsumexp(z_r) − Σ_k q_rk z_rk
// (a label outside [0, K) adds no one-hot term), and its gradient scale[r] · (softmax(z_r) − q_r), recomputing the
// softmax from the logits rather than storing it.
void cross_entropy(const float* logits, const int32_t* labels, float* loss, int64_t rows, int64_t cols, float eps);
void cross_entropy_grad(const float* logits, const int32_t* labels, const float* scale, float* dlogits, int64_t rows, int64_t cols, float eps);

}  // namespace loom
