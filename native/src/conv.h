// Convolution and pooling kernels over NHWC tensors, matching tfjs's cpu kernels' semantics.
#pragma once
#include <cstdint>

namespace loom {

// Geometry of a 2-D convolution or pooling window (tfjs's Conv2DInfo, flattened).
struct ConvShape {
  int64_t n, h, w, c;     // input
  int64_t kh, kw, co;     // filter (co = output channels; unused by pooling)
  int64_t oh, ow;         // output
  int64_t sh, sw;         // strides
  int64_t pt, pl;         // padding at top and left
  int64_t dh, dw;         // dilations
};

void conv2d(const float* x, const float* w, float* y, const ConvShape& s, const float* bias, bool relu);
void conv2d_backprop_input(const float* dy, const float* w, float* dx, const ConvShape& s);
void conv2d_backprop_filter(const float* x, const float* dy, float* dw, const ConvShape& s);
// dw = the filter gradient and db = Σ dz over every output pixel (db may be null), dz = dy where y > 0, NaN where y
// is NaN, else 0 (relu's gradient, as LoomReluGrad) when y is given, else dy: a fused convolution's weight and bias
// gradients in one pass over dy.
void conv2d_filter_bias_grad(const float* x, const float* dy, const float* y, float* dw, float* db, const ConvShape& s);
// A convolution (+ bias, relu) followed by max pooling over ph × pw windows that tile its output (stride = window,
// 'valid': oh/ph × ow/pw windows), without writing the convolution's output: y and at are [n, oh/ph, ow/pw, co], at
// the window tap (row-major) of each maximum as a float (exact: taps < 2^24), -1 where none (all NaN). Values as
// conv2d then pool2d's.
void conv2d_maxpool(const float* x, const float* w, const float* bias, bool relu, float* y, float* at, const ConvShape& s, int64_t ph, int64_t pw);
// Its filter and bias (db may be null) gradients from the pooled dy, y and at: the convolution's output gradient is dy
// at each window's maximum (relu's gradient applied by y when `relu`), 0 elsewhere, made chunk by chunk.
void conv2d_maxpool_filter_grad(const float* x, const float* dy, const float* y, const float* at, bool relu, float* dw, float* db, const ConvShape& s,
                                int64_t ph, int64_t pw);
void pool2d(const float* x, float* y, const ConvShape& s, bool is_max);
void max_pool_grad(const float* dy, const float* x, float* dx, const ConvShape& s);
void avg_pool_grad(const float* dy, float* dx, const ConvShape& s);

}  // namespace loom
