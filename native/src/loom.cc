// N-API entry points. Every function takes Float32Arrays (zero-copy views of tfjs's cpu-backend buffers) and
// integers; outputs are written into arrays the caller allocated. Argument checking is done in TypeScript
// (plugins/backends/native-kernels.ts); here a wrong type throws a TypeError.
#include <node_api.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "attention.h"
#include "conv.h"
#include "copy.h"
#include "elementwise.h"
#include "gemm.h"
#include "pool.h"
#include "rows.h"

namespace {

struct Args {
  napi_env env;
  napi_value v[32];
  size_t n = 32;
  bool failed = false;

  Args(napi_env e, napi_callback_info info) : env(e) { napi_get_cb_info(env, info, &n, v, nullptr, nullptr); }

  void fail(const std::string& what) {
    if (!failed) napi_throw_type_error(env, nullptr, what.c_str());
    failed = true;
  }
  // The data of a typed array of the given type (its length in `length`), or null for `null`/`undefined`.
  void* typed(size_t i, napi_typedarray_type want, const char* name, size_t* length = nullptr) {
    napi_valuetype t;
    napi_typeof(env, v[i], &t);
    if (t == napi_null || t == napi_undefined) return nullptr;
    bool is = false;
    napi_is_typedarray(env, v[i], &is);
    napi_typedarray_type type;
    size_t len = 0, offset;
    void* data = nullptr;
    napi_value buffer;
    if (!is || napi_get_typedarray_info(env, v[i], &type, &len, &data, &buffer, &offset) != napi_ok || type != want) {
      fail("argument " + std::to_string(i) + " must be a " + name);
      return nullptr;
    }
    if (length) *length = len;
    return data;
  }
  float* f32(size_t i, size_t* length = nullptr) { return static_cast<float*>(typed(i, napi_float32_array, "Float32Array", length)); }
  double f64(size_t i) {
    double v = 0;
    if (napi_get_value_double(env, this->v[i], &v) != napi_ok) fail("argument " + std::to_string(i) + " must be a number");
    return v;
  }
  int32_t* i32(size_t i) { return static_cast<int32_t*>(typed(i, napi_int32_array, "Int32Array")); }
  // A Float64Array of (size, stride, stride) triples, one per dimension, as the TypeScript side collapses them.
  int dims(size_t i, int64_t* shape, int64_t* s1, int64_t* s2) {
    size_t len = 0;
    const double* d = static_cast<double*>(typed(i, napi_float64_array, "Float64Array", &len));
    const int rank = (int)(len / 3);
    if (!failed && (rank < 1 || rank > 8)) fail("argument " + std::to_string(i) + ": rank must be 1..8");
    if (failed) return 0;
    for (int k = 0; k < rank; k++) {
      shape[k] = (int64_t)d[3 * k];
      s1[k] = (int64_t)d[3 * k + 1];
      s2[k] = (int64_t)d[3 * k + 2];
    }
    return rank;
  }
  int64_t i64(size_t i) {
    int64_t x = 0;
    if (napi_get_value_int64(env, v[i], &x) != napi_ok) fail("argument " + std::to_string(i) + " must be a number");
    return x;
  }
  bool flag(size_t i) {
    bool b = false;
    if (napi_get_value_bool(env, v[i], &b) != napi_ok) fail("argument " + std::to_string(i) + " must be a boolean");
    return b;
  }
  loom::ConvShape shape(size_t i) {  // 15 integers from index i
    loom::ConvShape s{};
    int64_t* f = &s.n;
    for (int k = 0; k < 15; k++) f[k] = i64(i + k);
    return s;
  }
};

napi_value undefined(napi_env env) {
  napi_value u;
  napi_get_undefined(env, &u);
  return u;
}

// batchMatMul(a, b, c, batch, m, n, k, transA, transB, aBatchStride, bBatchStride, bias|null, relu[, bColSums])
// c[i] = op(a[i])·op(b[i]) (+ bias, relu); a stride of 0 broadcasts that operand over the batch. bColSums (batch 1,
// B not transposed) receives B's column sums.
napi_value BatchMatMul(napi_env env, napi_callback_info info) {
  Args a(env, info);
  float *A = a.f32(0), *B = a.f32(1), *C = a.f32(2);
  const int64_t batch = a.i64(3), m = a.i64(4), n = a.i64(5), k = a.i64(6);
  const bool ta = a.flag(7), tb = a.flag(8);
  const int64_t sa = a.i64(9), sb = a.i64(10);
  const float* bias = a.f32(11);
  const bool relu = a.flag(12);
  float* col_sums = a.f32(13);
  if (!a.failed && col_sums && (batch != 1 || tb)) a.fail("batchMatMul: column sums need batch 1 and B not transposed");
  if (a.failed) return nullptr;
  const int64_t lda = ta ? m : k, ldb = tb ? k : n;
  // Small products in a batch (attention heads) run one per thread; large ones use every thread each.
  const bool per_item_parallel = (double)m * n * k >= (1 << 21) || batch == 1;
  auto one = [&](int64_t i, bool parallel) {
    loom::sgemm(m, n, k, {A + i * sa, lda, ta}, {B + i * sb, ldb, tb}, C + i * m * n, n, 0.f, bias, relu, parallel, col_sums);
  };
  if (per_item_parallel)
    for (int64_t i = 0; i < batch; i++) one(i, true);
  else
    loom::pool().parallel_for((int)batch, [&](int i) { one(i, false); });
  return undefined(env);
}

// conv2d(x, w, y, bias|null, relu, ...shape)
napi_value Conv2D(napi_env env, napi_callback_info info) {
  Args a(env, info);
  float *x = a.f32(0), *w = a.f32(1), *y = a.f32(2), *bias = a.f32(3);
  const bool relu = a.flag(4);
  const loom::ConvShape s = a.shape(5);
  if (a.failed) return nullptr;
  loom::conv2d(x, w, y, s, bias, relu);
  return undefined(env);
}

// conv2dBackpropInput(dy, w, dx, ...shape)
napi_value Conv2DBackpropInput(napi_env env, napi_callback_info info) {
  Args a(env, info);
  float *dy = a.f32(0), *w = a.f32(1), *dx = a.f32(2);
  const loom::ConvShape s = a.shape(3);
  if (a.failed) return nullptr;
  loom::conv2d_backprop_input(dy, w, dx, s);
  return undefined(env);
}

// conv2dBackpropFilter(x, dy, dw, ...shape)
napi_value Conv2DBackpropFilter(napi_env env, napi_callback_info info) {
  Args a(env, info);
  float *x = a.f32(0), *dy = a.f32(1), *dw = a.f32(2);
  const loom::ConvShape s = a.shape(3);
  if (a.failed) return nullptr;
  loom::conv2d_backprop_filter(x, dy, dw, s);
  return undefined(env);
}

// pool(x, y, isMax, ...shape)
napi_value Pool(napi_env env, napi_callback_info info) {
  Args a(env, info);
  float *x = a.f32(0), *y = a.f32(1);
  const bool is_max = a.flag(2);
  const loom::ConvShape s = a.shape(3);
  if (a.failed) return nullptr;
  loom::pool2d(x, y, s, is_max);
  return undefined(env);
}

// maxPoolGrad(dy, x, dx, ...shape)
napi_value MaxPoolGrad(napi_env env, napi_callback_info info) {
  Args a(env, info);
  float *dy = a.f32(0), *x = a.f32(1), *dx = a.f32(2);
  const loom::ConvShape s = a.shape(3);
  if (a.failed) return nullptr;
  loom::max_pool_grad(dy, x, dx, s);
  return undefined(env);
}

// avgPoolGrad(dy, dx, ...shape)
napi_value AvgPoolGrad(napi_env env, napi_callback_info info) {
  Args a(env, info);
  float *dy = a.f32(0), *dx = a.f32(1);
  const loom::ConvShape s = a.shape(2);
  if (a.failed) return nullptr;
  loom::avg_pool_grad(dy, dx, s);
  return undefined(env);
}

// softmax(x, y, rows, cols)
napi_value Softmax(napi_env env, napi_callback_info info) {
  Args a(env, info);
  float *x = a.f32(0), *y = a.f32(1);
  const int64_t rows = a.i64(2), cols = a.i64(3);
  if (a.failed) return nullptr;
  loom::softmax(x, y, rows, cols);
  return undefined(env);
}

// softmaxGrad(dy, y, dx, rows, cols)
napi_value SoftmaxGrad(napi_env env, napi_callback_info info) {
  Args a(env, info);
  float *dy = a.f32(0), *y = a.f32(1), *dx = a.f32(2);
  const int64_t rows = a.i64(3), cols = a.i64(4);
  if (a.failed) return nullptr;
  loom::softmax_grad(dy, y, dx, rows, cols);
  return undefined(env);
}

// layerNorm(x, gamma, beta, y, rows, cols, epsilon)
napi_value LayerNorm(napi_env env, napi_callback_info info) {
  Args a(env, info);
  float *x = a.f32(0), *gamma = a.f32(1), *beta = a.f32(2), *y = a.f32(3);
  const int64_t rows = a.i64(4), cols = a.i64(5);
  const double eps = a.f64(6);
  if (a.failed) return nullptr;
  loom::layer_norm(x, gamma, beta, y, rows, cols, (float)eps);
  return undefined(env);
}

// layerNormGrad(dy, x, gamma, dx, dgamma, dbeta, rows, cols, epsilon)
napi_value LayerNormGrad(napi_env env, napi_callback_info info) {
  Args a(env, info);
  float *dy = a.f32(0), *x = a.f32(1), *gamma = a.f32(2), *dx = a.f32(3), *dgamma = a.f32(4), *dbeta = a.f32(5);
  const int64_t rows = a.i64(6), cols = a.i64(7);
  const double eps = a.f64(8);
  if (a.failed) return nullptr;
  loom::layer_norm_grad(dy, x, gamma, dx, dgamma, dbeta, rows, cols, (float)eps);
  return undefined(env);
}

// attention(qkv, keep|null, context, probs, batch, time, heads, dk, causal)
napi_value Attention(napi_env env, napi_callback_info info) {
  Args a(env, info);
  float *qkv = a.f32(0), *keep = a.f32(1), *context = a.f32(2), *probs = a.f32(3);
  const loom::AttentionShape s{a.i64(4), a.i64(5), a.i64(6), a.i64(7), a.flag(8)};
  if (a.failed) return nullptr;
  loom::attention(qkv, keep, context, probs, s);
  return undefined(env);
}

// attentionGrad(dcontext, qkv, keep|null, probs, dqkv, batch, time, heads, dk, causal)
napi_value AttentionGrad(napi_env env, napi_callback_info info) {
  Args a(env, info);
  float *dcontext = a.f32(0), *qkv = a.f32(1), *keep = a.f32(2), *probs = a.f32(3), *dqkv = a.f32(4);
  const loom::AttentionShape s{a.i64(5), a.i64(6), a.i64(7), a.i64(8), a.flag(9)};
  if (a.failed) return nullptr;
  loom::attention_grad(dcontext, qkv, keep, probs, dqkv, s);
  return undefined(env);
}

// crossEntropy(logits, labels: Int32Array, loss, rows, cols, eps)
napi_value CrossEntropy(napi_env env, napi_callback_info info) {
  Args a(env, info);
  float *z = a.f32(0), *loss = a.f32(2);
  int32_t* labels = a.i32(1);
  const int64_t rows = a.i64(3), cols = a.i64(4);
  const double eps = a.f64(5);
  if (a.failed) return nullptr;
  loom::cross_entropy(z, labels, loss, rows, cols, (float)eps);
  return undefined(env);
}

// crossEntropyGrad(logits, labels: Int32Array, scale, dlogits, rows, cols, eps)
napi_value CrossEntropyGrad(napi_env env, napi_callback_info info) {
  Args a(env, info);
  float *z = a.f32(0), *scale = a.f32(2), *dz = a.f32(3);
  int32_t* labels = a.i32(1);
  const int64_t rows = a.i64(4), cols = a.i64(5);
  const double eps = a.f64(6);
  if (a.failed) return nullptr;
  loom::cross_entropy_grad(z, labels, scale, dz, rows, cols, (float)eps);
  return undefined(env);
}

// binary(op, a, b, out, dims: Float64Array [rank × (size, strideA, strideB)])
napi_value BinaryOp(napi_env env, napi_callback_info info) {
  Args a(env, info);
  const int64_t op = a.i64(0);
  float *A = a.f32(1), *B = a.f32(2), *out = a.f32(3);
  int64_t shape[8], sa[8], sb[8];
  const int rank = a.dims(4, shape, sa, sb);
  if (a.failed) return nullptr;
  loom::binary((loom::Binary)op, A, B, out, rank, shape, sa, sb);
  return undefined(env);
}

// unary(op, x, y, alpha)
napi_value UnaryOp(napi_env env, napi_callback_info info) {
  Args a(env, info);
  const int64_t op = a.i64(0);
  size_t n = 0;
  float *x = a.f32(1, &n), *y = a.f32(2);
  double alpha = 0;
  napi_get_value_double(env, a.v[3], &alpha);
  if (a.failed) return nullptr;
  loom::unary((loom::Unary)op, x, y, (int64_t)n, (float)alpha);
  return undefined(env);
}

// sum(x, y, outer, reduce, inner)
napi_value Sum(napi_env env, napi_callback_info info) {
  Args a(env, info);
  float *x = a.f32(0), *y = a.f32(1);
  const int64_t outer = a.i64(2), reduce = a.i64(3), inner = a.i64(4);
  if (a.failed) return nullptr;
  loom::sum3(x, y, outer, reduce, inner);
  return undefined(env);
}

// adam(p, g, m, v, p2, m2, v2, lr, beta1, beta2, epsilon, c1, c2)
napi_value Adam(napi_env env, napi_callback_info info) {
  Args a(env, info);
  size_t n = 0;
  float *p = a.f32(0, &n), *g = a.f32(1), *m = a.f32(2), *v = a.f32(3), *p2 = a.f32(4), *m2 = a.f32(5), *v2 = a.f32(6);
  double h[6];
  for (int i = 0; i < 6; i++) napi_get_value_double(env, a.v[7 + i], &h[i]);
  if (a.failed) return nullptr;
  loom::adam(p, g, m, v, p2, m2, v2, (int64_t)n, (float)h[0], (float)h[1], (float)h[2], (float)h[3], (float)h[4], (float)h[5]);
  return undefined(env);
}

// copy(src, srcOffset, dst, dstOffset, dims: Float64Array [rank × (size, srcStride, dstStride)])
napi_value Copy(napi_env env, napi_callback_info info) {
  Args a(env, info);
  float* src = a.f32(0);
  const int64_t so = a.i64(1);
  float* dst = a.f32(2);
  const int64_t dof = a.i64(3);
  int64_t shape[8], ss[8], ds[8];
  const int rank = a.dims(4, shape, ss, ds);
  if (a.failed) return nullptr;
  loom::strided_copy(src + so, dst + dof, rank, shape, ss, ds);
  return undefined(env);
}

// info() -> { simd, threads }
napi_value Info(napi_env env, napi_callback_info) {
  napi_value obj, simd, threads;
  napi_create_object(env, &obj);
  napi_create_string_utf8(env, loom::simd_level(), NAPI_AUTO_LENGTH, &simd);
  napi_create_int32(env, loom::pool().size(), &threads);
  napi_set_named_property(env, obj, "simd", simd);
  napi_set_named_property(env, obj, "threads", threads);
  return obj;
}

napi_value Init(napi_env env, napi_value exports) {
  const napi_property_descriptor props[] = {
      {"batchMatMul", nullptr, BatchMatMul, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"conv2d", nullptr, Conv2D, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"conv2dBackpropInput", nullptr, Conv2DBackpropInput, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"conv2dBackpropFilter", nullptr, Conv2DBackpropFilter, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"pool", nullptr, Pool, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"maxPoolGrad", nullptr, MaxPoolGrad, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"avgPoolGrad", nullptr, AvgPoolGrad, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"softmax", nullptr, Softmax, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"attention", nullptr, Attention, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"attentionGrad", nullptr, AttentionGrad, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"softmaxGrad", nullptr, SoftmaxGrad, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"crossEntropy", nullptr, CrossEntropy, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"crossEntropyGrad", nullptr, CrossEntropyGrad, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"layerNorm", nullptr, LayerNorm, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"layerNormGrad", nullptr, LayerNormGrad, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"binary", nullptr, BinaryOp, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"unary", nullptr, UnaryOp, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"sum", nullptr, Sum, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"adam", nullptr, Adam, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"copy", nullptr, Copy, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"info", nullptr, Info, nullptr, nullptr, nullptr, napi_default, nullptr},
  };
  napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props);
  return exports;
}

}  // namespace

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
