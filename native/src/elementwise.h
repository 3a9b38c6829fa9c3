// Elementwise kernels with broadcasting, reductions over a contiguous block of axes, and the fused Adam update.
#pragma once
#include <cstdint>

namespace loom {

// ReluGrad: a where b > 0, else 0 (NaN in b passes through): the gradient dy of relu masked by its output y.
enum class Binary : int { Add = 0, Sub, Mul, Div, Maximum, Minimum, SquaredDifference, ReluGrad };
// Erf: Abramowitz & Stegun 7.1.26 (|error| ≤ 1.5e-7), the formula tfjs's cpu kernel uses.
enum class Unary : int { Relu = 0, Step, Sqrt, Square, Exp, Log, Neg, Tanh, Sigmoid, Abs, Rsqrt, Reciprocal, Erf };

// out[i] = a[ia] op b[ib] over `rank` dimensions of sizes shape[], with element strides sa[] / sb[] (0 = broadcast).
void binary(Binary op, const float* a, const float* b, float* out, int rank, const int64_t* shape, const int64_t* sa, const int64_t* sb);
void unary(Unary op, const float* x, float* y, int64_t n, float alpha);
// x viewed as [outer, reduce, inner]: y[o, i] = Σ_r x[o, r, i].
void sum3(const float* x, float* y, int64_t outer, int64_t reduce, int64_t inner);
// out[0] = min, out[1] = max of x[0, n), NaN skipped (as `e < lo ? e : lo` in order): +inf and -inf when n = 0
// or every value is NaN. Dynamic int8 quantization's range of a batch (core/quantization.ts).
void min_max(const float* x, int64_t n, float* out);
// Kingma & Ba's Algorithm 1 for one tensor; writes the new parameter and moments.
void adam(const float* p, const float* g, const float* m, const float* v, float* p2, float* m2, float* v2, int64_t n, float lr, float b1,
          float b2, float eps, float c1, float c2);
// One SGD step for one tensor (plugins/optimizers/sgd.ts): weight decay λ added to the gradient where λ ≠ 0, then
// (b and b2 non-null) momentum μ, Nesterov's form if asked; writes the new parameter (and momentum buffer).
void sgd(const float* p, const float* g, const float* b, float* p2, float* b2, int64_t n, float lr, float decay, float mu, bool nesterov);

// One step of an LSTM cell (gates in Keras's order i, f, g, o; plugins/layers/lstm.ts), with the float operations and
// roundings of the composed tfjs ops the layer otherwise runs (Add, Sigmoid, Tanh, Multiply, Add, Tanh, Multiply):
// z = zx[:, t] + hu, i|f|o = σ(z_i|f|o), g = tanh(z_g), c = f·c_prev + i·g, h = o·tanh(c). zx is [batch, time, 4u]
// (the input projection of every step), hu, gates [batch, 4u], c_prev, c, h [batch, u].
void lstm_cell(const float* zx, const float* hu, const float* c_prev, float* h, float* c, float* gates, int64_t batch, int64_t units,
               int64_t time, int64_t t);
// Its backward step, as the layer's composed gradient: dh_t = dy[:, dy_t] + dh (dy null: dh alone; dy is
// [batch, dy_time, u]), tc = tanh(c_t), dc_t = dc + dh_t·o·(1 − tc²), dz = [dc_t·g·i(1 − i), dc_t·c_{t−1}·f(1 − f),
// dc_t·i·(1 − g²), dh_t·tc·o(1 − o)], dc_out = dc_t·f. gates is [time, batch, 4u] (step t read), cs [time + 1, batch,
// u] (c_{t−1} = cs[t], c_t = cs[t + 1]).
void lstm_cell_grad(const float* dh, const float* dy, int64_t dy_time, int64_t dy_t, const float* gates, const float* cs, const float* dc,
                    float* dz, float* dc_out, int64_t batch, int64_t units, int64_t t);

}  // namespace loom
