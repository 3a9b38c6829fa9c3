// N-API entry points. Every function takes Float32Arrays (zero-copy views of tfjs's cpu-backend buffers) and
// integers; outputs are written into arrays the caller allocated.
//
// The boundary trusts nothing: each entry point checks its argument count, each argument's type (a Float32Array
// where a buffer is expected, a number or a boolean where an attribute is), that sizes are integers in range
// (non-negative, at most 2^31 − 1; offsets and strides at most 2^53), that float attributes are finite, and that
// every buffer holds all the elements its shape makes the kernel touch. Products of sizes are computed in 64 bits,
// saturating at 2^63 − 1, so that one which overflows is simply larger than any buffer. A failed check throws a
// TypeError (count, type) or RangeError (value, length) whose message starts with the kernel's JavaScript name and
// names the argument (numbered from 1), e.g. "softmax: y (argument 2) has 5 elements, fewer than the 6 that
// rows·cols needs"; its `code` is ERR_LOOM_NATIVE_ARGUMENT. The checks cost a few N-API calls and no allocation
// (a message is only formatted on failure). Calls with nothing to compute (an empty output) return before the
// kernel runs, so that a zero in one size never lets another go unchecked by the buffers.
// plugins/backends/native-boundary.test.ts fuzzes every entry point with wrong counts, types, sizes and lengths.
#include <node_api.h>

#include <algorithm>
#include <cmath>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstring>

#include "attention.h"
#include "bf16.h"
#include "conv.h"
#include "copy.h"
#include "elementwise.h"
#include "gemm.h"
#include "int8.h"
#include "pool.h"
#include "rows.h"

namespace {

constexpr int64_t kMaxSize = INT32_MAX;             // sizes: the kernels count tasks and some offsets in int
constexpr int64_t kMaxIndex = int64_t(1) << 53;     // offsets and strides: exact in a double
constexpr int64_t kHuge = INT64_MAX;                // a saturated product
constexpr size_t kMaxArgs = 24;

// a·b and a + b of non-negative values, saturating at kHuge: an overflowing product is larger than any buffer.
inline int64_t mul(int64_t a, int64_t b) {
  int64_t r;
  return __builtin_mul_overflow(a, b, &r) ? kHuge : r;
}
template <typename... T>
inline int64_t mul(int64_t a, int64_t b, T... rest) {
  return mul(mul(a, b), rest...);
}
inline int64_t add(int64_t a, int64_t b) {
  int64_t r;
  return __builtin_add_overflow(a, b, &r) ? kHuge : r;
}

// The elements a strided view touches, as 1 + the largest offset (0 when it is empty): 1 + Σ (size − 1)·stride.
int64_t extent(int rank, const int64_t* shape, const int64_t* stride) {
  int64_t last = 0;
  for (int d = 0; d < rank; d++) {
    if (shape[d] == 0) return 0;
    last = add(last, mul(shape[d] - 1, stride[d]));
  }
  return add(last, 1);
}

int64_t product(int rank, const int64_t* shape) {
  int64_t p = 1;
  for (int d = 0; d < rank; d++) p = mul(p, shape[d]);
  return p;
}

// What a JavaScript value is, for messages.
const char* describe(napi_env env, napi_value v) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok) return "an unreadable value";
  switch (t) {
    case napi_undefined: return "undefined";
    case napi_null: return "null";
    case napi_boolean: return "a boolean";
    case napi_number: return "a number";
    case napi_string: return "a string";
    case napi_symbol: return "a symbol";
    case napi_function: return "a function";
    case napi_external: return "an external";
    case napi_bigint: return "a bigint";
    case napi_object: break;
  }
  bool is = false;
  if (napi_is_typedarray(env, v, &is) == napi_ok && is) {
    napi_typedarray_type type;
    if (napi_get_typedarray_info(env, v, &type, nullptr, nullptr, nullptr, nullptr) != napi_ok) return "a typed array";
    switch (type) {
      case napi_int8_array: return "an Int8Array";
      case napi_uint8_array: return "a Uint8Array";
      case napi_uint8_clamped_array: return "a Uint8ClampedArray";
      case napi_int16_array: return "an Int16Array";
      case napi_uint16_array: return "a Uint16Array";
      case napi_int32_array: return "an Int32Array";
      case napi_uint32_array: return "a Uint32Array";
      case napi_float32_array: return "a Float32Array";
      case napi_float64_array: return "a Float64Array";
      case napi_bigint64_array: return "a BigInt64Array";
      case napi_biguint64_array: return "a BigUint64Array";
      default: return "a typed array";
    }
  }
  if (napi_is_array(env, v, &is) == napi_ok && is) return "an array";
  if (napi_is_arraybuffer(env, v, &is) == napi_ok && is) return "an ArrayBuffer";
  if (napi_is_dataview(env, v, &is) == napi_ok && is) return "a DataView";
  return "an object";
}

// A count of elements for messages ("2^63 or more" when saturated).
struct Count {
  char text[32];
  explicit Count(int64_t n) {
    if (n == kHuge)
      std::snprintf(text, sizeof text, "2^63 or more");
    else
      std::snprintf(text, sizeof text, "%lld", (long long)n);
  }
};

// A typed array argument: its data and length; `present` is false for null/undefined where those are allowed.
template <typename T>
struct Buffer {
  T* data = nullptr;
  int64_t length = 0;
  bool present = false;
  T* get() const { return present ? data : nullptr; }
};

// A number as JavaScript prints it, for messages (NaN, Infinity, 2147483648, 0.5).
struct Num {
  char text[32];
  explicit Num(double d) {
    if (std::isnan(d))
      std::snprintf(text, sizeof text, "NaN");
    else if (std::isinf(d))
      std::snprintf(text, sizeof text, d > 0 ? "Infinity" : "-Infinity");
    else
      std::snprintf(text, sizeof text, "%.17g", d);
  }
};

enum class Error { Type, Range };

// The arguments of one call and their readers. The first failure throws; after it every reader returns a
// harmless default without touching N-API, and the entry point returns once it sees failed().
class Args {
 public:
  Args(napi_env env, napi_callback_info info, const char* kernel, size_t min, size_t max) : env_(env), kernel_(kernel) {
    size_t n = kMaxArgs;
    if (napi_get_cb_info(env, info, &n, v_, nullptr, nullptr) != napi_ok) {
      fail(Error::Type, "cannot read its arguments");
      return;
    }
    count_ = n;
    if (n < min || n > max) {
      if (min == max)
        fail(Error::Type, "expected %zu argument%s, got %zu", min, min == 1 ? "" : "s", n);
      else
        fail(Error::Type, "expected %zu to %zu arguments, got %zu", min, max, n);
    }
  }

  bool failed() const { return failed_; }
  size_t count() const { return count_; }

  // Throws a TypeError or RangeError "kernel: <message>" (the first failure only).
  void fail(Error kind, const char* format, ...) __attribute__((format(printf, 3, 4))) {
    if (failed_) return;
    failed_ = true;
    char message[512];
    int at = std::snprintf(message, sizeof message, "%s: ", kernel_);
    va_list list;
    va_start(list, format);
    std::vsnprintf(message + at, sizeof message - at, format, list);
    va_end(list);
    if (kind == Error::Type)
      napi_throw_type_error(env_, "ERR_LOOM_NATIVE_ARGUMENT", message);
    else
      napi_throw_range_error(env_, "ERR_LOOM_NATIVE_ARGUMENT", message);
  }
  // Fails with a RangeError unless `ok`.
  template <typename... A>
  void check(bool ok, const char* format, A... args) {
    if (!ok) fail(Error::Range, format, args...);
  }

  Buffer<float> f32(size_t i, const char* name) { return typed<float>(i, name, napi_float32_array, "a Float32Array", false); }
  Buffer<float> f32_or_null(size_t i, const char* name) { return typed<float>(i, name, napi_float32_array, "a Float32Array or null", true); }
  Buffer<int32_t> i32(size_t i, const char* name) { return typed<int32_t>(i, name, napi_int32_array, "an Int32Array", false); }
  Buffer<int8_t> i8(size_t i, const char* name) { return typed<int8_t>(i, name, napi_int8_array, "an Int8Array", false); }
  Buffer<uint8_t> u8(size_t i, const char* name) { return typed<uint8_t>(i, name, napi_uint8_array, "a Uint8Array", false); }

  // An integer in [min, max] (a number with no fractional part).
  int64_t integer(size_t i, const char* name, int64_t min = 0, int64_t max = kMaxSize) {
    double d = 0;
    if (!number(i, name, &d)) return min;
    if (!(d >= (double)min && d <= (double)max && d == std::trunc(d))) {
      fail(Error::Range, "%s (argument %zu) must be an integer from %lld to %lld, got %s", name, i + 1, (long long)min, (long long)max, Num(d).text);
      return min;
    }
    return (int64_t)d;
  }
  // A size: an integer in [min, 2^31 − 1].
  int64_t size(size_t i, const char* name, int64_t min = 0) { return integer(i, name, min, kMaxSize); }
  // A finite number.
  double real(size_t i, const char* name) {
    double d = 0;
    if (!number(i, name, &d)) return 0;
    if (!std::isfinite(d)) {
      fail(Error::Range, "%s (argument %zu) must be a finite number, got %s", name, i + 1, Num(d).text);
      return 0;
    }
    return d;
  }
  bool flag(size_t i, const char* name) {
    bool b = false;
    if (failed_) return b;
    if (napi_get_value_bool(env_, v_[i], &b) != napi_ok) fail(Error::Type, "%s (argument %zu) must be a boolean, got %s", name, i + 1, describe(env_, v_[i]));
    return b;
  }
  // A Float64Array of rank (size, stride, stride) triples, 1 ≤ rank ≤ 8, as the TypeScript side collapses
  // dimensions: every entry an integer from 0 to 2^53. Returns the rank (0 on failure).
  int dims(size_t i, const char* name, int64_t* shape, int64_t* s1, int64_t* s2) {
    const Buffer<double> d = typed<double>(i, name, napi_float64_array, "a Float64Array", false);
    if (failed_) return 0;
    if (d.length < 3 || d.length > 24 || d.length % 3 != 0) {
      fail(Error::Range, "%s (argument %zu) must hold 1 to 8 (size, stride, stride) triples, got %lld numbers", name, i + 1, (long long)d.length);
      return 0;
    }
    const int rank = (int)(d.length / 3);
    int64_t* out[3] = {shape, s1, s2};
    for (int k = 0; k < 3 * rank; k++) {
      const double x = d.data[k];
      if (!(x >= 0 && x <= (double)kMaxIndex && x == std::trunc(x))) {
        fail(Error::Range, "%s (argument %zu) entry %d must be an integer from 0 to 2^53, got %s", name, i + 1, k, Num(x).text);
        return 0;
      }
      out[k % 3][k / 3] = (int64_t)x;
    }
    return rank;
  }
  // Fails unless buffer b (argument i) holds `want` elements; `what` names the product that gives `want`.
  template <typename T>
  void need(size_t i, const char* name, const Buffer<T>& b, int64_t want, const char* what) {
    if (failed_ || b.length >= want) return;
    fail(Error::Range, "%s (argument %zu) has %lld element%s, fewer than the %s that %s needs", name, i + 1, (long long)b.length, b.length == 1 ? "" : "s", Count(want).text, what);
  }

 private:
  bool number(size_t i, const char* name, double* d) {
    if (failed_) return false;
    if (napi_get_value_double(env_, v_[i], d) == napi_ok) return true;
    fail(Error::Type, "%s (argument %zu) must be a number, got %s", name, i + 1, describe(env_, v_[i]));
    return false;
  }
  template <typename T>
  Buffer<T> typed(size_t i, const char* name, napi_typedarray_type want, const char* want_text, bool nullable) {
    Buffer<T> b;
    if (failed_) return b;
    napi_typedarray_type type;
    size_t length = 0;
    void* data = nullptr;
    if (napi_get_typedarray_info(env_, v_[i], &type, &length, &data, nullptr, nullptr) == napi_ok && type == want) {
      b.data = static_cast<T*>(data);
      b.length = (int64_t)length;
      b.present = true;
      return b;
    }
    napi_valuetype t;
    if (nullable && napi_typeof(env_, v_[i], &t) == napi_ok && (t == napi_null || t == napi_undefined)) return b;
    fail(Error::Type, "%s (argument %zu) must be %s, got %s", name, i + 1, want_text, describe(env_, v_[i]));
    return b;
  }

  napi_env env_;
  const char* kernel_;
  napi_value v_[kMaxArgs];
  size_t count_ = 0;
  bool failed_ = false;
};

napi_value undefined(napi_env env) {
  napi_value u;
  napi_get_undefined(env, &u);
  return u;
}

// The 15 integers of a convolution or pooling geometry from argument i on (conv.h's ConvShape, named as in tfjs's
// Conv2DInfo; below n, h, w, c, kh, kw, co, oh, ow for short): window sizes, strides and dilations at least 1, the
// rest at least 0.
loom::ConvShape conv_shape(Args& a, size_t i) {
  static const char* const names[15] = {"batch",     "inHeight",     "inWidth",     "inChannels", "filterHeight",
                                        "filterWidth", "outChannels", "outHeight",   "outWidth",   "strideHeight",
                                        "strideWidth", "padTop",      "padLeft",     "dilationHeight", "dilationWidth"};
  static const int64_t mins[15] = {0, 0, 0, 0, 1, 1, 0, 0, 0, 1, 1, 0, 0, 1, 1};
  loom::ConvShape s{};
  int64_t* f = &s.n;
  for (int k = 0; k < 15; k++) f[k] = a.size(i + k, names[k], mins[k]);
  return s;
}

// The tensors of a convolution or pooling geometry, with their element counts and, for messages, the products.
enum class ConvTensor { Input, Filter, Output, Pooled };
struct ConvSize {
  int64_t elements;
  const char* product;
};
ConvSize conv_size(const loom::ConvShape& s, ConvTensor t) {
  switch (t) {
    case ConvTensor::Input: return {mul(s.n, s.h, s.w, s.c), "batch·inHeight·inWidth·inChannels"};
    case ConvTensor::Filter: return {mul(s.kh, s.kw, s.c, s.co), "filterHeight·filterWidth·inChannels·outChannels"};
    case ConvTensor::Output: return {mul(s.n, s.oh, s.ow, s.co), "batch·outHeight·outWidth·outChannels"};
    case ConvTensor::Pooled: break;
  }
  return {mul(s.n, s.oh, s.ow, s.c), "batch·outHeight·outWidth·inChannels"};
}
// Fails unless buffer b (argument i) holds the elements of tensor t of geometry s.
void need_conv(Args& a, size_t i, const char* name, const Buffer<float>& b, const loom::ConvShape& s, ConvTensor t) {
  const ConvSize z = conv_size(s, t);
  a.need(i, name, b, z.elements, z.product);
}

// A kernel of the form f(in1, in2, out, ...shape): the convolution gradients and max pooling's gradient.
struct GeometryKernel {
  const char* name;                 // its JavaScript name
  const char* args[3];              // its buffers' names
  ConvTensor tensors[3];            // which tensor each buffer holds (the third is the output)
  void (*run)(const float*, const float*, float*, const loom::ConvShape&);
  // The terms of the sum that makes one output element; when 0, the output is zero-filled without the kernel.
  // Null for a kernel that needs no such case.
  int64_t (*terms)(const loom::ConvShape&);
  bool image_int32;                 // the kernel keeps offsets within one image in int32
};

napi_value geometry_kernel(napi_env env, napi_callback_info info, const GeometryKernel& k) {
  Args a(env, info, k.name, 18, 18);
  Buffer<float> b[3];
  for (int i = 0; i < 3; i++) b[i] = a.f32(i, k.args[i]);
  const loom::ConvShape s = conv_shape(a, 3);
  for (int i = 0; i < 3; i++) need_conv(a, i, k.args[i], b[i], s, k.tensors[i]);
  if (k.image_int32)
    a.check(mul(s.h, s.w, s.c) <= kMaxSize, "an image (inHeight·inWidth·inChannels = %s) must have fewer than 2^31 elements",
            Count(mul(s.h, s.w, s.c)).text);
  if (a.failed()) return nullptr;
  const int64_t out = conv_size(s, k.tensors[2]).elements;  // at most the output buffer's length
  if (out == 0) return undefined(env);
  if (k.terms && k.terms(s) == 0) {
    std::memset(b[2].data, 0, out * sizeof(float));
    return undefined(env);
  }
  k.run(b[0].data, b[1].data, b[2].data, s);
  return undefined(env);
}

// batchMatMul(a, b, c, batch, m, n, k, transA, transB, aBatchStride, bBatchStride, bias|null, relu[, bColSums])
// c[i] = op(a[i])·op(b[i]) (+ bias, relu); a stride of 0 broadcasts that operand over the batch. bColSums (batch 1,
// B not transposed) receives B's column sums.
napi_value BatchMatMul(napi_env env, napi_callback_info info) {
  Args a(env, info, "batchMatMul", 13, 14);
  const Buffer<float> A = a.f32(0, "a"), B = a.f32(1, "b"), C = a.f32(2, "c");
  const int64_t batch = a.size(3, "batch"), m = a.size(4, "m"), n = a.size(5, "n"), k = a.size(6, "k");
  const bool ta = a.flag(7, "transA"), tb = a.flag(8, "transB");
  const int64_t sa = a.integer(9, "aBatchStride", 0, kMaxIndex), sb = a.integer(10, "bBatchStride", 0, kMaxIndex);
  const Buffer<float> bias = a.f32_or_null(11, "bias");
  const bool relu = a.flag(12, "relu");
  const Buffer<float> col_sums = a.count() > 13 ? a.f32_or_null(13, "bColSums") : Buffer<float>{};
  if (batch > 0) {  // item i of A is the m·k floats from i·aBatchStride, of B the k·n floats from i·bBatchStride
    const int64_t mk = mul(m, k), kn = mul(k, n);
    a.need(0, "a", A, mk == 0 ? 0 : add(mul(batch - 1, sa), mk), "(batch − 1)·aBatchStride + m·k");
    a.need(1, "b", B, kn == 0 ? 0 : add(mul(batch - 1, sb), kn), "(batch − 1)·bBatchStride + k·n");
  }
  a.need(2, "c", C, mul(batch, m, n), "batch·m·n");
  if (bias.present) a.need(11, "bias", bias, n, "n");
  if (col_sums.present) {
    a.check(batch == 1 && !tb, "bColSums (argument 14) needs batch 1 and B not transposed, got batch %lld%s", (long long)batch,
            tb ? " and transB" : "");
    a.need(13, "bColSums", col_sums, n, "n");
  }
  if (a.failed()) return nullptr;
  const float *pa = A.data, *pb = B.data;
  float* pc = C.data;
  if (mul(batch, m, n) == 0) {  // no product to compute; the column sums of B (batch 1) still are
    if (col_sums.present && n > 0) loom::sum3(pb, col_sums.data, 1, k, n);
    return undefined(env);
  }
  const int64_t lda = ta ? m : k, ldb = tb ? k : n;
  // Small products in a batch (attention heads) run one per thread; large ones use every thread each. A batch of
  // fewer than 2^18 multiply-adds in all (a decoding step's heads at batch 1: 6 of 1×64·64×257 for GPT) runs on the
  // calling thread, as one such product does in sgemm: waking the pool cost more than the products. The same
  // per-item calls either way, so the same bits.
  const bool per_item_parallel = (double)m * n * k >= (1 << 21) || batch == 1;
  auto one = [&](int64_t i, bool parallel) {
    loom::sgemm(m, n, k, {pa + i * sa, lda, ta}, {pb + i * sb, ldb, tb}, pc + i * m * n, n, 0.f, bias.get(), relu, parallel, col_sums.get());
  };
  if (per_item_parallel)
    for (int64_t i = 0; i < batch; i++) one(i, true);
  else if ((double)batch * m * n * k < (1 << 18))
    for (int64_t i = 0; i < batch; i++) one(i, false);
  else {
    // Consecutive items per task, ~2^14 multiply-adds each: the pool hands out one task per atomic increment of a
    // shared counter, and 4,096 heads of 1×64·64×12 (a beam search's decoding step) as 4,096 tasks ran slower on 2
    // threads than on 1 (1.0 against 0.44 ms, 2-core AMD Zen 5), the threads queueing on that counter.
    const int64_t per = std::max<int64_t>(1, std::min<int64_t>((1 << 14) / std::max<int64_t>(1, m * n * k), batch / (8 * loom::pool().size())));
    const int64_t tasks = (batch + per - 1) / per;
    loom::pool().parallel_for((int)tasks, [&](int t) {
      for (int64_t i = t * per, end = std::min(batch, i + per); i < end; i++) one(i, false);
    });
  }
  return undefined(env);
}

// conv2d(x, w, y, bias|null, relu, ...shape)
napi_value Conv2D(napi_env env, napi_callback_info info) {
  Args a(env, info, "conv2d", 20, 20);
  const Buffer<float> x = a.f32(0, "x"), w = a.f32(1, "w"), y = a.f32(2, "y"), bias = a.f32_or_null(3, "bias");
  const bool relu = a.flag(4, "relu");
  const loom::ConvShape s = conv_shape(a, 5);
  need_conv(a, 0, "x", x, s, ConvTensor::Input);
  need_conv(a, 1, "w", w, s, ConvTensor::Filter);
  need_conv(a, 2, "y", y, s, ConvTensor::Output);
  if (bias.present) a.need(3, "bias", bias, s.co, "outChannels");
  if (a.failed()) return nullptr;
  const int64_t rows = mul(s.n, s.oh, s.ow);  // at most y's length when co > 0
  if (rows == 0 || s.co == 0) return undefined(env);
  if (s.c == 0) {  // no input channels: every output is the bias (then relu)
    for (int64_t r = 0; r < rows; r++)
      for (int64_t j = 0; j < s.co; j++) {
        const float v = bias.present ? bias.data[j] : 0.f;
        y.data[r * s.co + j] = relu && v < 0.f ? 0.f : v;
      }
    return undefined(env);
  }
  loom::conv2d(x.data, w.data, y.data, s, bias.get(), relu);
  return undefined(env);
}

// conv2dBackpropInput(dy, w, dx, ...shape); dx is zeros when dy is empty (no gradient flows in)
napi_value Conv2DBackpropInput(napi_env env, napi_callback_info info) {
  static const GeometryKernel k{"conv2dBackpropInput", {"dy", "w", "dx"}, {ConvTensor::Output, ConvTensor::Filter, ConvTensor::Input},
                                loom::conv2d_backprop_input, [](const loom::ConvShape& s) { return mul(s.oh, s.ow, s.co); }, false};
  return geometry_kernel(env, info, k);
}

// conv2dFilterBiasGrad(x, dy, y|null, dw, db|null, ...shape): a fused convolution's filter and bias gradients, dz =
// dy where y > 0 (relu's gradient, y the convolution's output) when y is given, else dy; zeros without output positions
napi_value Conv2DFilterBiasGrad(napi_env env, napi_callback_info info) {
  Args a(env, info, "conv2dFilterBiasGrad", 20, 20);
  const Buffer<float> x = a.f32(0, "x"), dy = a.f32(1, "dy"), y = a.f32_or_null(2, "y"), dw = a.f32(3, "dw"), db = a.f32_or_null(4, "db");
  const loom::ConvShape s = conv_shape(a, 5);
  need_conv(a, 0, "x", x, s, ConvTensor::Input);
  need_conv(a, 1, "dy", dy, s, ConvTensor::Output);
  if (y.present) need_conv(a, 2, "y", y, s, ConvTensor::Output);
  need_conv(a, 3, "dw", dw, s, ConvTensor::Filter);
  if (db.present) a.need(4, "db", db, s.co, "outChannels");
  if (a.failed()) return nullptr;
  if (s.co == 0) return undefined(env);
  const int64_t rows = mul(s.n, s.oh, s.ow);
  if (s.c == 0 || rows == 0) {  // no filter taps (dw is empty; db is still Σ dz), or a sum of no terms
    std::memset(dw.data, 0, conv_size(s, ConvTensor::Filter).elements * sizeof(float));
    if (db.present) {
      std::memset(db.data, 0, s.co * sizeof(float));
      for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < s.co; j++)
          if (!y.present || y.data[r * s.co + j] > 0.f)
            db.data[j] += dy.data[r * s.co + j];
          else if (y.data[r * s.co + j] != y.data[r * s.co + j])  // as LoomReluGrad: NaN where y is NaN
            db.data[j] += y.data[r * s.co + j];
    }
    return undefined(env);
  }
  loom::conv2d_filter_bias_grad(x.data, dy.data, y.get(), dw.data, db.get(), s);
  return undefined(env);
}

// The pooled tensors of a convolution followed by max pooling over poolHeight × poolWidth windows that tile its
// output: [batch, ⌊outHeight/poolHeight⌋, ⌊outWidth/poolWidth⌋, outChannels].
int64_t pooled_size(const loom::ConvShape& s, int64_t ph, int64_t pw) { return mul(s.n, s.oh / ph, s.ow / pw, s.co); }
constexpr const char* kPooled = "batch·⌊outHeight/poolHeight⌋·⌊outWidth/poolWidth⌋·outChannels";

// conv2dMaxPool(x, w, y, at, bias|null, relu, ...shape, poolHeight, poolWidth): the convolution (+ bias, relu)
// max-pooled without writing its output; at holds each maximum's tap in its window as a float (-1: none)
napi_value Conv2DMaxPool(napi_env env, napi_callback_info info) {
  Args a(env, info, "conv2dMaxPool", 23, 23);
  const Buffer<float> x = a.f32(0, "x"), w = a.f32(1, "w"), y = a.f32(2, "y"), at = a.f32(3, "at");
  const Buffer<float> bias = a.f32_or_null(4, "bias");
  const bool relu = a.flag(5, "relu");
  const loom::ConvShape s = conv_shape(a, 6);
  const int64_t ph = a.size(21, "poolHeight", 1), pw = a.size(22, "poolWidth", 1);
  need_conv(a, 0, "x", x, s, ConvTensor::Input);
  need_conv(a, 1, "w", w, s, ConvTensor::Filter);
  if (a.failed()) return nullptr;
  a.need(2, "y", y, pooled_size(s, ph, pw), kPooled);
  a.need(3, "at", at, pooled_size(s, ph, pw), kPooled);
  if (bias.present) a.need(4, "bias", bias, s.co, "outChannels");
  if (a.failed()) return nullptr;
  if (pooled_size(s, ph, pw) == 0) return undefined(env);
  if (s.c == 0) {  // no input channels: every convolution output is the bias (then relu); the first tap is a maximum
    for (int64_t i = 0; i < pooled_size(s, ph, pw); i++) {
      const float b = bias.present ? bias.data[i % s.co] : 0.f, v = relu && b < 0.f ? 0.f : b;
      const bool nan = v != v;  // NaN is never a maximum: the window's stays -inf, with no tap
      y.data[i] = nan ? -std::numeric_limits<float>::infinity() : v;
      at.data[i] = nan ? -1.f : 0.f;
    }
    return undefined(env);
  }
  loom::conv2d_maxpool(x.data, w.data, bias.get(), relu, y.data, at.data, s, ph, pw);
  return undefined(env);
}

// conv2dMaxPoolFilterGrad(x, dy, y, at, dw, db|null, relu, ...shape, poolHeight, poolWidth): the filter
// and bias gradients of conv2dMaxPool from its pooled output gradient dy, output y and taps at (a tap is only compared
// with its window's taps: one outside them, or not a whole number, sends no gradient)
napi_value Conv2DMaxPoolFilterGrad(napi_env env, napi_callback_info info) {
  Args a(env, info, "conv2dMaxPoolFilterGrad", 24, 24);
  const Buffer<float> x = a.f32(0, "x"), dy = a.f32(1, "dy"), y = a.f32(2, "y"), at = a.f32(3, "at");
  const Buffer<float> dw = a.f32(4, "dw"), db = a.f32_or_null(5, "db");
  const bool relu = a.flag(6, "relu");
  const loom::ConvShape s = conv_shape(a, 7);
  const int64_t ph = a.size(22, "poolHeight", 1), pw = a.size(23, "poolWidth", 1);
  need_conv(a, 0, "x", x, s, ConvTensor::Input);
  need_conv(a, 4, "dw", dw, s, ConvTensor::Filter);
  if (a.failed()) return nullptr;
  const int64_t pooled = pooled_size(s, ph, pw);
  a.need(1, "dy", dy, pooled, kPooled);
  a.need(2, "y", y, pooled, kPooled);
  a.need(3, "at", at, pooled, kPooled);
  if (db.present) a.need(5, "db", db, s.co, "outChannels");
  if (a.failed()) return nullptr;
  if (s.co == 0) return undefined(env);
  if (s.c == 0 || pooled == 0) {  // no filter taps (dw is empty; db is still Σ dz), or a sum of no terms
    std::memset(dw.data, 0, conv_size(s, ConvTensor::Filter).elements * sizeof(float));
    if (db.present) {
      std::memset(db.data, 0, s.co * sizeof(float));
      for (int64_t i = 0; i < pooled; i++) {
        const float t = at.data[i];  // a tap of the window (a whole number in [0, poolHeight·poolWidth)) sends dy once
        if (!(t >= 0.f && t < (float)(ph * pw) && t == std::floor(t))) continue;
        const float g = dy.data[i], v = y.data[i];
        db.data[i % s.co] += !relu || v > 0.f ? g : v != v ? v : 0.f;
      }
    }
    return undefined(env);
  }
  loom::conv2d_maxpool_filter_grad(x.data, dy.data, y.data, at.data, relu, dw.data, db.get(), s, ph, pw);
  return undefined(env);
}

// conv2dBackpropFilter(x, dy, dw, ...shape); dw is zeros when there are no output positions (a sum of no terms)
napi_value Conv2DBackpropFilter(napi_env env, napi_callback_info info) {
  static const GeometryKernel k{"conv2dBackpropFilter", {"x", "dy", "dw"}, {ConvTensor::Input, ConvTensor::Output, ConvTensor::Filter},
                                loom::conv2d_backprop_filter, [](const loom::ConvShape& s) { return mul(s.n, s.oh, s.ow); }, false};
  return geometry_kernel(env, info, k);
}

// pool(x, y, isMax, ...shape)
napi_value Pool(napi_env env, napi_callback_info info) {
  Args a(env, info, "pool", 18, 18);
  const Buffer<float> x = a.f32(0, "x"), y = a.f32(1, "y");
  const bool is_max = a.flag(2, "isMax");
  const loom::ConvShape s = conv_shape(a, 3);
  need_conv(a, 0, "x", x, s, ConvTensor::Input);
  need_conv(a, 1, "y", y, s, ConvTensor::Pooled);
  if (a.failed()) return nullptr;
  if (s.n * s.oh * s.ow * s.c == 0) return undefined(env);
  loom::pool2d(x.data, y.data, s, is_max);
  return undefined(env);
}

// maxPoolGrad(dy, x, dx, ...shape)
napi_value MaxPoolGrad(napi_env env, napi_callback_info info) {
  static const GeometryKernel k{"maxPoolGrad", {"dy", "x", "dx"}, {ConvTensor::Pooled, ConvTensor::Input, ConvTensor::Input}, loom::max_pool_grad,
                                nullptr, true};
  return geometry_kernel(env, info, k);
}

// avgPoolGrad(dy, dx, ...shape)
napi_value AvgPoolGrad(napi_env env, napi_callback_info info) {
  Args a(env, info, "avgPoolGrad", 17, 17);
  const Buffer<float> dy = a.f32(0, "dy"), dx = a.f32(1, "dx");
  const loom::ConvShape s = conv_shape(a, 2);
  need_conv(a, 0, "dy", dy, s, ConvTensor::Pooled);
  need_conv(a, 1, "dx", dx, s, ConvTensor::Input);
  if (a.failed()) return nullptr;
  if (s.n * s.h * s.w * s.c == 0) return undefined(env);
  loom::avg_pool_grad(dy.data, dx.data, s);
  return undefined(env);
}

// What a buffer of a row-wise kernel holds: a [rows, cols] matrix, one value per column, or one per row.
enum class Rows { Matrix, PerColumn, PerRow };

// A row-wise kernel's arguments: its buffers (Float32Arrays, but for an Int32Array of labels), then rows, cols and,
// for some, a finite float attribute.
struct RowsKernel {
  const char* name;        // its JavaScript name
  size_t buffers;          // how many buffers come first
  const char* args[6];     // their names
  Rows holds[6];           // what each holds
  int labels;              // the buffer that is an Int32Array of labels (-1: none)
  const char* attribute;   // the float attribute after rows and cols (null: none)
};
struct RowsCall {
  float* f[6];
  const int32_t* labels;
  int64_t rows, cols;
  float attribute;
};

// Reads and checks a row-wise kernel's arguments into `c`; false when a check failed (the error is thrown).
bool read_rows(napi_env env, napi_callback_info info, const RowsKernel& k, RowsCall* c) {
  const size_t n = k.buffers + 2 + (k.attribute ? 1 : 0);
  Args a(env, info, k.name, n, n);
  Buffer<float> f[6];
  Buffer<int32_t> labels;
  for (size_t i = 0; i < k.buffers; i++) {
    if ((int)i == k.labels)
      labels = a.i32(i, k.args[i]);
    else
      f[i] = a.f32(i, k.args[i]);
  }
  c->rows = a.size(k.buffers, "rows");
  c->cols = a.size(k.buffers + 1, "cols");
  c->attribute = k.attribute ? (float)a.real(k.buffers + 2, k.attribute) : 0.f;
  for (size_t i = 0; i < k.buffers; i++) {
    const int64_t want = k.holds[i] == Rows::Matrix ? mul(c->rows, c->cols) : k.holds[i] == Rows::PerColumn ? c->cols : c->rows;
    const char* what = k.holds[i] == Rows::Matrix ? "rows·cols" : k.holds[i] == Rows::PerColumn ? "cols" : "rows";
    if ((int)i == k.labels)
      a.need(i, k.args[i], labels, want, what);
    else
      a.need(i, k.args[i], f[i], want, what);
    c->f[i] = f[i].data;
  }
  c->labels = labels.data;
  return !a.failed();
}

// softmax(x, y, rows, cols)
napi_value Softmax(napi_env env, napi_callback_info info) {
  static const RowsKernel k{"softmax", 2, {"x", "y"}, {Rows::Matrix, Rows::Matrix}, -1, nullptr};
  RowsCall c;
  if (!read_rows(env, info, k, &c)) return nullptr;
  if (c.rows * c.cols == 0) return undefined(env);
  loom::softmax(c.f[0], c.f[1], c.rows, c.cols);
  return undefined(env);
}

// softmaxGrad(dy, y, dx, rows, cols)
napi_value SoftmaxGrad(napi_env env, napi_callback_info info) {
  static const RowsKernel k{"softmaxGrad", 3, {"dy", "y", "dx"}, {Rows::Matrix, Rows::Matrix, Rows::Matrix}, -1, nullptr};
  RowsCall c;
  if (!read_rows(env, info, k, &c)) return nullptr;
  if (c.rows * c.cols == 0) return undefined(env);
  loom::softmax_grad(c.f[0], c.f[1], c.f[2], c.rows, c.cols);
  return undefined(env);
}

// layerNorm(x, gamma, beta, y, rows, cols, epsilon)
napi_value LayerNorm(napi_env env, napi_callback_info info) {
  static const RowsKernel k{"layerNorm", 4, {"x", "gamma", "beta", "y"}, {Rows::Matrix, Rows::PerColumn, Rows::PerColumn, Rows::Matrix}, -1, "epsilon"};
  RowsCall c;
  if (!read_rows(env, info, k, &c)) return nullptr;
  if (c.rows * c.cols == 0) return undefined(env);
  loom::layer_norm(c.f[0], c.f[1], c.f[2], c.f[3], c.rows, c.cols, c.attribute);
  return undefined(env);
}

// layerNormGrad(dy, x, gamma, dx, dgamma, dbeta, rows, cols, epsilon)
napi_value LayerNormGrad(napi_env env, napi_callback_info info) {
  static const RowsKernel k{"layerNormGrad", 6, {"dy", "x", "gamma", "dx", "dgamma", "dbeta"},
                            {Rows::Matrix, Rows::Matrix, Rows::PerColumn, Rows::Matrix, Rows::PerColumn, Rows::PerColumn}, -1, "epsilon"};
  RowsCall c;
  if (!read_rows(env, info, k, &c)) return nullptr;
  if (c.cols == 0) return undefined(env);  // rows = 0 still writes dγ = dβ = 0
  loom::layer_norm_grad(c.f[0], c.f[1], c.f[2], c.f[3], c.f[4], c.f[5], c.rows, c.cols, c.attribute);
  return undefined(env);
}

// The sizes of an attention call from argument i on, and its buffers' sizes (d = heads·dk).
struct AttentionSizes {
  loom::AttentionShape s;
  int64_t qkv, context, probs, keep;
};
AttentionSizes attention_sizes(Args& a, size_t i) {
  AttentionSizes z{{a.size(i, "batch"), a.size(i + 1, "time"), a.size(i + 2, "heads"), a.size(i + 3, "dk"), a.flag(i + 4, "causal")}, 0, 0, 0, 0};
  const loom::AttentionShape& s = z.s;
  const int64_t bt = mul(s.batch, s.time), d = mul(s.heads, s.dk);
  z.qkv = mul(bt, 3, d);
  z.context = mul(bt, d);
  z.probs = mul(s.batch, s.heads, s.time, s.time);
  z.keep = bt;
  // The kernels run one task (an int) per (batch, head) pair.
  a.check(mul(s.batch, s.heads) <= kMaxSize, "batch·heads (%s) must be below 2^31", Count(mul(s.batch, s.heads)).text);
  return z;
}

// attention(qkv, keep|null, context, probs, batch, time, heads, dk, causal)
napi_value Attention(napi_env env, napi_callback_info info) {
  Args a(env, info, "attention", 9, 9);
  const Buffer<float> qkv = a.f32(0, "qkv"), keep = a.f32_or_null(1, "keep"), context = a.f32(2, "context"), probs = a.f32(3, "probs");
  const AttentionSizes z = attention_sizes(a, 4);
  a.need(0, "qkv", qkv, z.qkv, "batch·time·3·heads·dk");
  if (keep.present) a.need(1, "keep", keep, z.keep, "batch·time");
  a.need(2, "context", context, z.context, "batch·time·heads·dk");
  a.need(3, "probs", probs, z.probs, "batch·heads·time·time");
  if (a.failed()) return nullptr;
  if (z.context == 0 && z.probs == 0) return undefined(env);
  loom::attention(qkv.data, keep.get(), context.data, probs.data, z.s);
  return undefined(env);
}

// attentionGrad(dcontext, qkv, keep|null, probs, dqkv, batch, time, heads, dk, causal)
napi_value AttentionGrad(napi_env env, napi_callback_info info) {
  Args a(env, info, "attentionGrad", 10, 10);
  const Buffer<float> dcontext = a.f32(0, "dcontext"), qkv = a.f32(1, "qkv"), keep = a.f32_or_null(2, "keep"), probs = a.f32(3, "probs"),
                      dqkv = a.f32(4, "dqkv");
  const AttentionSizes z = attention_sizes(a, 5);
  a.need(0, "dcontext", dcontext, z.context, "batch·time·heads·dk");
  a.need(1, "qkv", qkv, z.qkv, "batch·time·3·heads·dk");
  if (keep.present) a.need(2, "keep", keep, z.keep, "batch·time");
  a.need(3, "probs", probs, z.probs, "batch·heads·time·time");
  a.need(4, "dqkv", dqkv, z.qkv, "batch·time·3·heads·dk");
  if (a.failed()) return nullptr;
  if (z.qkv == 0) return undefined(env);
  loom::attention_grad(dcontext.data, qkv.data, keep.get(), probs.data, dqkv.data, z.s);
  return undefined(env);
}

// memoryAttention(q, k, v, keep|null, context, rows, heads, dk, keys, repeat): decoding's attention to a cached
// memory shared by `repeat` consecutive rows (attention.h)
napi_value MemoryAttention(napi_env env, napi_callback_info info) {
  Args a(env, info, "memoryAttention", 10, 10);
  const Buffer<float> q = a.f32(0, "q"), k = a.f32(1, "k"), v = a.f32(2, "v"), keep = a.f32_or_null(3, "keep"), context = a.f32(4, "context");
  const loom::MemoryAttentionShape s{a.size(5, "rows"), a.size(6, "heads"), a.size(7, "dk"), a.size(8, "keys"), a.size(9, "repeat", 1)};
  if (a.failed()) return nullptr;
  a.check(s.rows % s.repeat == 0, "rows (argument 6, %lld) must be a multiple of repeat (argument 10, %lld)", (long long)s.rows, (long long)s.repeat);
  const int64_t items = s.rows / s.repeat, d = mul(s.heads, s.dk);
  a.check(mul(items, s.heads) <= kMaxSize, "items·heads (%s) must be below 2^31", Count(mul(items, s.heads)).text);
  a.need(0, "q", q, mul(s.rows, d), "rows·heads·dk");
  a.need(1, "k", k, mul(items, d, s.keys), "(rows / repeat)·heads·keys·dk");
  a.need(2, "v", v, mul(items, d, s.keys), "(rows / repeat)·heads·keys·dk");
  if (keep.present) a.need(3, "keep", keep, mul(s.rows, s.keys), "rows·keys");
  a.need(4, "context", context, mul(s.rows, d), "rows·heads·dk");
  if (a.failed()) return nullptr;
  if (mul(s.rows, d) == 0) return undefined(env);
  loom::memory_attention(q.data, k.data, v.data, keep.get(), context.data, s);
  return undefined(env);
}

// crossEntropy(logits, labels: Int32Array, loss, rows, cols, eps). Labels outside [0, cols) are ignored rows.
napi_value CrossEntropy(napi_env env, napi_callback_info info) {
  static const RowsKernel k{"crossEntropy", 3, {"logits", "labels", "loss"}, {Rows::Matrix, Rows::PerRow, Rows::PerRow}, 1, "eps"};
  RowsCall c;
  if (!read_rows(env, info, k, &c)) return nullptr;
  if (c.rows == 0) return undefined(env);
  loom::cross_entropy(c.f[0], c.labels, c.f[2], c.rows, c.cols, c.attribute);
  return undefined(env);
}

// crossEntropyGrad(logits, labels: Int32Array, scale, dlogits, rows, cols, eps)
napi_value CrossEntropyGrad(napi_env env, napi_callback_info info) {
  static const RowsKernel k{"crossEntropyGrad", 4, {"logits", "labels", "scale", "dlogits"}, {Rows::Matrix, Rows::PerRow, Rows::PerRow, Rows::Matrix}, 1,
                            "eps"};
  RowsCall c;
  if (!read_rows(env, info, k, &c)) return nullptr;
  if (c.rows * c.cols == 0) return undefined(env);
  loom::cross_entropy_grad(c.f[0], c.labels, c.f[2], c.f[3], c.rows, c.cols, c.attribute);
  return undefined(env);
}

constexpr int kBinaryOps = (int)loom::Binary::ReluGrad + 1;
constexpr int kUnaryOps = (int)loom::Unary::Erf + 1;

// binary(op, a, b, out, dims: Float64Array [rank × (size, strideA, strideB)]); out is contiguous.
napi_value BinaryOp(napi_env env, napi_callback_info info) {
  Args a(env, info, "binary", 5, 5);
  const int64_t op = a.integer(0, "op", 0, kBinaryOps - 1);
  const Buffer<float> A = a.f32(1, "a"), B = a.f32(2, "b"), out = a.f32(3, "out");
  int64_t shape[8], sa[8], sb[8];
  const int rank = a.dims(4, "dims", shape, sa, sb);
  if (a.failed()) return nullptr;
  const int64_t total = product(rank, shape);
  a.need(1, "a", A, extent(rank, shape, sa), "dims (1 + Σ (size − 1)·strideA)");
  a.need(2, "b", B, extent(rank, shape, sb), "dims (1 + Σ (size − 1)·strideB)");
  a.need(3, "out", out, total, "dims (Π size)");
  if (a.failed()) return nullptr;
  if (total == 0) return undefined(env);
  loom::binary((loom::Binary)op, A.data, B.data, out.data, rank, shape, sa, sb);
  return undefined(env);
}

// unary(op, x, y, alpha): y[i] = op(x[i]) for every element of x.
napi_value UnaryOp(napi_env env, napi_callback_info info) {
  Args a(env, info, "unary", 4, 4);
  const int64_t op = a.integer(0, "op", 0, kUnaryOps - 1);
  const Buffer<float> x = a.f32(1, "x"), y = a.f32(2, "y");
  const double alpha = a.real(3, "alpha");
  a.need(2, "y", y, x.length, "x's length");
  if (a.failed()) return nullptr;
  if (x.length == 0) return undefined(env);
  loom::unary((loom::Unary)op, x.data, y.data, x.length, (float)alpha);
  return undefined(env);
}

// sum(x, y, outer, reduce, inner)
napi_value Sum(napi_env env, napi_callback_info info) {
  Args a(env, info, "sum", 5, 5);
  const Buffer<float> x = a.f32(0, "x"), y = a.f32(1, "y");
  const int64_t outer = a.size(2, "outer"), reduce = a.size(3, "reduce"), inner = a.size(4, "inner");
  a.need(0, "x", x, mul(outer, reduce, inner), "outer·reduce·inner");
  a.need(1, "y", y, mul(outer, inner), "outer·inner");
  if (a.failed()) return nullptr;
  if (outer * inner == 0) return undefined(env);
  loom::sum3(x.data, y.data, outer, reduce, inner);
  return undefined(env);
}

// lstmCell(zx, hu, cPrev, h, c, gates, batch, units, time, t): one step of an LSTM cell (elementwise.h).
napi_value LstmCell(napi_env env, napi_callback_info info) {
  Args a(env, info, "lstmCell", 10, 10);
  const Buffer<float> zx = a.f32(0, "zx"), hu = a.f32(1, "hu"), cp = a.f32(2, "cPrev"), h = a.f32(3, "h"), c = a.f32(4, "c"), g = a.f32(5, "gates");
  const int64_t batch = a.size(6, "batch"), units = a.size(7, "units"), time = a.size(8, "time", 1);
  const int64_t t = a.integer(9, "t", 0, time - 1);
  a.need(0, "zx", zx, mul(batch, time, 4 * units), "batch·time·4·units");
  a.need(1, "hu", hu, mul(batch, 4 * units, 1), "batch·4·units");
  a.need(5, "gates", g, mul(batch, 4 * units, 1), "batch·4·units");
  a.need(2, "cPrev", cp, mul(batch, units, 1), "batch·units");
  a.need(3, "h", h, mul(batch, units, 1), "batch·units");
  a.need(4, "c", c, mul(batch, units, 1), "batch·units");
  if (a.failed()) return nullptr;
  loom::lstm_cell(zx.data, hu.data, cp.data, h.data, c.data, g.data, batch, units, time, t);
  return undefined(env);
}

// lstmCellGrad(dh, dy, dyTime, dyT, gates, cs, dc, dz, dcOut, batch, units, time, t): its backward step; dyTime 0 =
// no dy (dy is then not read).
napi_value LstmCellGrad(napi_env env, napi_callback_info info) {
  Args a(env, info, "lstmCellGrad", 13, 13);
  const Buffer<float> dh = a.f32(0, "dh"), dy = a.f32(1, "dy");
  const int64_t dy_time = a.size(2, "dyTime");
  const int64_t dy_t = a.integer(3, "dyT", 0, dy_time > 0 ? dy_time - 1 : kMaxIndex);  // not read without dy
  const Buffer<float> g = a.f32(4, "gates"), cs = a.f32(5, "cs"), dc = a.f32(6, "dc"), dz = a.f32(7, "dz"), dco = a.f32(8, "dcOut");
  const int64_t batch = a.size(9, "batch"), units = a.size(10, "units"), time = a.size(11, "time", 1);
  const int64_t t = a.integer(12, "t", 0, time - 1);
  const int64_t bu = mul(batch, units, 1);
  a.need(0, "dh", dh, bu, "batch·units");
  if (dy_time > 0) a.need(1, "dy", dy, mul(batch, dy_time, units), "batch·dyTime·units");
  a.need(4, "gates", g, mul(time, batch, 4 * units), "time·batch·4·units");
  a.need(5, "cs", cs, mul(time + 1, batch, units), "(time + 1)·batch·units");
  a.need(6, "dc", dc, bu, "batch·units");
  a.need(7, "dz", dz, mul(batch, 4 * units, 1), "batch·4·units");
  a.need(8, "dcOut", dco, bu, "batch·units");
  if (a.failed()) return nullptr;
  loom::lstm_cell_grad(dh.data, dy_time > 0 ? dy.data : nullptr, dy_time, dy_t, g.data, cs.data, dc.data, dz.data, dco.data, batch, units, t);
  return undefined(env);
}

// minMax(x, out, count): out[0] = min, out[1] = max of x[0, count), NaN skipped; +inf and -inf when there is none.
napi_value MinMax(napi_env env, napi_callback_info info) {
  Args a(env, info, "minMax", 3, 3);
  const Buffer<float> x = a.f32(0, "x"), out = a.f32(1, "out");
  const int64_t count = a.size(2, "count");
  a.need(0, "x", x, count, "count");
  a.need(1, "out", out, 2, "2");
  if (a.failed()) return nullptr;
  loom::min_max(x.data, count, out.data);
  return undefined(env);
}

// adam(p, g, m, v, p2, m2, v2, lr, beta1, beta2, epsilon, c1, c2): over every element of p.
napi_value Adam(napi_env env, napi_callback_info info) {
  Args a(env, info, "adam", 13, 13);
  static const char* const names[7] = {"p", "g", "m", "v", "p2", "m2", "v2"};
  static const char* const attrs[6] = {"lr", "beta1", "beta2", "epsilon", "c1", "c2"};
  Buffer<float> t[7];
  for (int i = 0; i < 7; i++) t[i] = a.f32(i, names[i]);
  double h[6];
  for (int i = 0; i < 6; i++) h[i] = a.real(7 + i, attrs[i]);
  for (int i = 1; i < 7; i++) a.need(i, names[i], t[i], t[0].length, "p's length");
  if (a.failed()) return nullptr;
  const int64_t n = t[0].length;
  if (n == 0) return undefined(env);
  loom::adam(t[0].data, t[1].data, t[2].data, t[3].data, t[4].data, t[5].data, t[6].data, n, (float)h[0], (float)h[1], (float)h[2], (float)h[3],
             (float)h[4], (float)h[5]);
  return undefined(env);
}

// sgd(p, g, b | null, p2, b2 | null, lr, decay, momentum, nesterov): over every element of p; b and b2 both present
// (momentum) or both null.
napi_value Sgd(napi_env env, napi_callback_info info) {
  Args a(env, info, "sgd", 9, 9);
  const Buffer<float> p = a.f32(0, "p"), g = a.f32(1, "g"), b = a.f32_or_null(2, "b"), p2 = a.f32(3, "p2"), b2 = a.f32_or_null(4, "b2");
  const double lr = a.real(5, "lr"), decay = a.real(6, "decay"), mu = a.real(7, "momentum");
  const bool nesterov = a.flag(8, "nesterov");
  a.need(1, "g", g, p.length, "p's length");
  a.need(3, "p2", p2, p.length, "p's length");
  a.check(b.present == b2.present, "b and b2 must both be Float32Arrays (momentum) or both null");
  if (b.present) a.need(2, "b", b, p.length, "p's length");
  if (b2.present) a.need(4, "b2", b2, p.length, "p's length");
  if (a.failed()) return nullptr;
  if (p.length == 0) return undefined(env);
  loom::sgd(p.data, g.data, b.present ? b.data : nullptr, p2.data, b2.present ? b2.data : nullptr, p.length, (float)lr, (float)decay, (float)mu,
            nesterov);
  return undefined(env);
}

// copy(src, srcOffset, dst, dstOffset, dims: Float64Array [rank × (size, srcStride, dstStride)])
napi_value Copy(napi_env env, napi_callback_info info) {
  Args a(env, info, "copy", 5, 5);
  const Buffer<float> src = a.f32(0, "src");
  const int64_t so = a.integer(1, "srcOffset", 0, kMaxIndex);
  const Buffer<float> dst = a.f32(2, "dst");
  const int64_t dof = a.integer(3, "dstOffset", 0, kMaxIndex);
  int64_t shape[8], ss[8], ds[8];
  const int rank = a.dims(4, "dims", shape, ss, ds);
  if (a.failed()) return nullptr;
  const int64_t total = product(rank, shape);
  if (total > 0) {
    a.need(0, "src", src, add(so, extent(rank, shape, ss)), "srcOffset + 1 + Σ (size − 1)·srcStride");
    a.need(2, "dst", dst, add(dof, extent(rank, shape, ds)), "dstOffset + 1 + Σ (size − 1)·dstStride");
  }
  if (a.failed()) return nullptr;
  if (total == 0) return undefined(env);
  loom::strided_copy(src.data + so, dst.data + dof, rank, shape, ss, ds);
  return undefined(env);
}

// int8Gemm(m, n, k, a: Uint8Array [m·k], b: Int8Array [n·k], c: Int32Array [m·n], path): c = a·bᵀ exactly, on the
// path asked for (int8.h: 0 best, 1 scalar, 2 avx2, 3 avx512-vnni; one the CPU lacks falls back to the next down, as
// info().int8 tells). k at most 65535, so the int32 sums cannot overflow.
napi_value Int8Gemm(napi_env env, napi_callback_info info) {
  Args a(env, info, "int8Gemm", 7, 7);
  const int64_t m = a.size(0, "m"), n = a.size(1, "n"), k = a.integer(2, "k", 0, loom::kInt8MaxDepth);
  const Buffer<uint8_t> x = a.u8(3, "a");
  const Buffer<int8_t> w = a.i8(4, "b");
  const Buffer<int32_t> c = a.i32(5, "c");
  const int64_t path = a.integer(6, "path", 0, 3);
  a.need(3, "a", x, mul(m, k), "m·k");
  a.need(4, "b", w, mul(n, k), "n·k");
  a.need(5, "c", c, mul(m, n), "m·n");
  if (a.failed()) return nullptr;
  if (m > 0 && n > 0) loom::gemm_u8s8(m, n, k, x.data, w.data, c.data, (int)path);
  return undefined(env);
}

// Fails unless packed weights w (argument i, long enough) were packed for (n, k): a buffer packed for another shape
// could be long enough and still be read wrongly.
void packed_for(Args& a, size_t i, const Buffer<int8_t>& w, int64_t n, int64_t k) {
  if (a.failed()) return;
  int64_t pn, pk;
  loom::int8_packed_shape(w.data, &pn, &pk);
  a.check(pn == n && pk == k, "w (argument %zu) was packed by int8Pack for n = %lld, k = %lld, not n = %lld, k = %lld", i + 1, (long long)pn, (long long)pk,
          (long long)n, (long long)k);
}

// int8Pack(n, k, w: Int8Array [n·k]) -> a new Int8Array: w packed for this CPU's int8 path (int8.h's int8_pack).
napi_value Int8Pack(napi_env env, napi_callback_info info) {
  Args a(env, info, "int8Pack", 3, 3);
  const int64_t n = a.size(0, "n"), k = a.integer(1, "k", 0, loom::kInt8MaxDepth);
  const Buffer<int8_t> w = a.i8(2, "w");
  a.need(2, "w", w, mul(n, k), "n·k");
  if (a.failed()) return nullptr;
  const int64_t bytes = loom::int8_packed_bytes(n, k);
  void* data = nullptr;
  napi_value buffer, array;
  if (napi_create_arraybuffer(env, (size_t)bytes, &data, &buffer) != napi_ok ||
      napi_create_typedarray(env, napi_int8_array, (size_t)bytes, buffer, 0, &array) != napi_ok)
    return nullptr;
  loom::int8_pack(n, k, w.data, static_cast<int8_t*>(data));
  return array;
}

// int8Linear(m, n, k, x: [m·k], scale, zero, w: Int8Array (int8Pack of [n·k]), wScale: [n], bias: [n] or null, relu,
// y: [m·n]): y = dequantized product of x quantized to uint8 (scale > 0, zero in [0, 255]) and w ᵀ (int8.h).
napi_value Int8Linear(napi_env env, napi_callback_info info) {
  Args a(env, info, "int8Linear", 11, 11);
  const int64_t m = a.size(0, "m"), n = a.size(1, "n"), k = a.integer(2, "k", 0, loom::kInt8MaxDepth);
  const Buffer<float> x = a.f32(3, "x");
  const double scale = a.real(4, "scale");
  const int64_t zero = a.integer(5, "zero", 0, 255);
  const Buffer<int8_t> w = a.i8(6, "w");
  const Buffer<float> ws = a.f32(7, "wScale"), bias = a.f32_or_null(8, "bias");
  const bool relu = a.flag(9, "relu");
  const Buffer<float> y = a.f32(10, "y");
  a.check(scale > 0, "scale (argument 5) must be positive, got %s", Num(scale).text);
  a.need(3, "x", x, mul(m, k), "m·k");
  a.need(6, "w", w, loom::int8_packed_bytes(n, k), "int8Pack(n, k)");
  if (m > 0 && n > 0 && k > 0) packed_for(a, 6, w, n, k);
  a.need(7, "wScale", ws, n, "n");
  if (bias.present) a.need(8, "bias", bias, n, "n");
  a.need(10, "y", y, mul(m, n), "m·n");
  if (a.failed()) return nullptr;
  if (m > 0 && n > 0) loom::int8_linear(m, n, k, x.data, (float)scale, (int32_t)zero, w.data, ws.data, bias.get(), relu, y.data);
  return undefined(env);
}

// int8Conv2d(x, scale, zero, w: Int8Array (int8Pack of [co·kh·kw·c]), wScale: [co], bias: [co] or null, relu, y, ...shape):
// int8Linear's product over the im2col of x (int8.h).
napi_value Int8Conv2D(napi_env env, napi_callback_info info) {
  Args a(env, info, "int8Conv2d", 23, 23);
  const Buffer<float> x = a.f32(0, "x");
  const double scale = a.real(1, "scale");
  const int64_t zero = a.integer(2, "zero", 0, 255);
  const Buffer<int8_t> w = a.i8(3, "w");
  const Buffer<float> ws = a.f32(4, "wScale"), bias = a.f32_or_null(5, "bias");
  const bool relu = a.flag(6, "relu");
  const Buffer<float> y = a.f32(7, "y");
  const loom::ConvShape s = conv_shape(a, 8);
  a.check(scale > 0, "scale (argument 2) must be positive, got %s", Num(scale).text);
  a.check(mul(s.kh, s.kw, s.c) <= loom::kInt8MaxDepth, "filterHeight·filterWidth·inChannels must be at most %lld", (long long)loom::kInt8MaxDepth);
  need_conv(a, 0, "x", x, s, ConvTensor::Input);
  if (!a.failed() && mul(s.kh, s.kw, s.c) <= loom::kInt8MaxDepth) {
    const int64_t bytes = loom::int8_packed_bytes(s.co, mul(s.kh, s.kw, s.c));
    a.need(3, "w", w, bytes, "int8Pack(outChannels, filterHeight·filterWidth·inChannels)");
    if (mul(s.n, s.oh, s.ow, s.co, s.c) > 0) packed_for(a, 3, w, s.co, mul(s.kh, s.kw, s.c));
  }
  a.need(4, "wScale", ws, s.co, "outChannels");
  if (bias.present) a.need(5, "bias", bias, s.co, "outChannels");
  need_conv(a, 7, "y", y, s, ConvTensor::Output);
  if (a.failed()) return nullptr;
  if (mul(s.n, s.oh, s.ow, s.co) == 0) return undefined(env);
  loom::int8_conv2d(s, x.data, (float)scale, (int32_t)zero, w.data, ws.data, bias.get(), relu, y.data);
  return undefined(env);
}

// setPrecision(mode): the precision of every float matrix product from now on (bf16.h): 0 fp32, 1 bf16 on the best
// path here, 2 bf16 portable, 3 bf16 on avx512_bf16 (portable where the CPU lacks it), 4 bf16 on AMX (3 where the CPU
// lacks it), 5 AMX's loop on emulated tiles (tests). info().precision says which.
napi_value SetPrecision(napi_env env, napi_callback_info info) {
  Args a(env, info, "setPrecision", 1, 1);
  const int64_t mode = a.integer(0, "mode", 0, 5);
  if (a.failed()) return nullptr;
  loom::set_gemm_precision((int)mode);
  return undefined(env);
}

// bf16Round(x, y, count, path): y[i] = x[i] rounded to bf16 (round to nearest even; NaN quieted, denormals to signed
// zero, as vcvtne2ps2bf16) on `path`: 0 the best here, 1 scalar, 2 vcvtne2ps2bf16 (scalar where the CPU lacks it).
napi_value Bf16Round(napi_env env, napi_callback_info info) {
  Args a(env, info, "bf16Round", 4, 4);
  const Buffer<float> x = a.f32(0, "x"), y = a.f32(1, "y");
  const int64_t count = a.size(2, "count"), path = a.integer(3, "path", 0, 2);
  a.need(0, "x", x, count, "count");
  a.need(1, "y", y, count, "count");
  if (a.failed()) return nullptr;
  if (count > 0) loom::bf16_round_array(x.data, y.data, count, (int)path);
  return undefined(env);
}

// info() -> { simd, threads, int8, bf16, precision }
napi_value Info(napi_env env, napi_callback_info info) {
  Args a(env, info, "info", 0, 0);
  if (a.failed()) return nullptr;
  napi_value obj, simd, threads;
  napi_create_object(env, &obj);
  napi_create_string_utf8(env, loom::simd_level(), NAPI_AUTO_LENGTH, &simd);
  napi_create_int32(env, loom::pool().size(), &threads);
  napi_set_named_property(env, obj, "simd", simd);
  napi_set_named_property(env, obj, "threads", threads);
  napi_value int8;
  napi_create_string_utf8(env, loom::int8_path_name(loom::int8_path(0)), NAPI_AUTO_LENGTH, &int8);
  napi_set_named_property(env, obj, "int8", int8);
  napi_value bf16, precision;
  napi_create_string_utf8(env, loom::best_bf16_path(), NAPI_AUTO_LENGTH, &bf16);
  napi_set_named_property(env, obj, "bf16", bf16);
  napi_create_string_utf8(env, loom::precision_name(loom::gemm_precision()), NAPI_AUTO_LENGTH, &precision);
  napi_set_named_property(env, obj, "precision", precision);
  return obj;
}

napi_value Init(napi_env env, napi_value exports) {
  const napi_property_descriptor props[] = {
      {"batchMatMul", nullptr, BatchMatMul, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"conv2d", nullptr, Conv2D, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"conv2dBackpropInput", nullptr, Conv2DBackpropInput, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"conv2dBackpropFilter", nullptr, Conv2DBackpropFilter, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"conv2dFilterBiasGrad", nullptr, Conv2DFilterBiasGrad, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"conv2dMaxPool", nullptr, Conv2DMaxPool, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"conv2dMaxPoolFilterGrad", nullptr, Conv2DMaxPoolFilterGrad, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"pool", nullptr, Pool, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"maxPoolGrad", nullptr, MaxPoolGrad, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"avgPoolGrad", nullptr, AvgPoolGrad, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"softmax", nullptr, Softmax, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"attention", nullptr, Attention, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"attentionGrad", nullptr, AttentionGrad, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"memoryAttention", nullptr, MemoryAttention, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"softmaxGrad", nullptr, SoftmaxGrad, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"crossEntropy", nullptr, CrossEntropy, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"crossEntropyGrad", nullptr, CrossEntropyGrad, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"layerNorm", nullptr, LayerNorm, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"layerNormGrad", nullptr, LayerNormGrad, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"binary", nullptr, BinaryOp, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"unary", nullptr, UnaryOp, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"sum", nullptr, Sum, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"minMax", nullptr, MinMax, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"lstmCell", nullptr, LstmCell, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"lstmCellGrad", nullptr, LstmCellGrad, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"adam", nullptr, Adam, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"sgd", nullptr, Sgd, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"copy", nullptr, Copy, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"int8Gemm", nullptr, Int8Gemm, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"int8Pack", nullptr, Int8Pack, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"int8Linear", nullptr, Int8Linear, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"int8Conv2d", nullptr, Int8Conv2D, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"setPrecision", nullptr, SetPrecision, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"bf16Round", nullptr, Bf16Round, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"info", nullptr, Info, nullptr, nullptr, nullptr, napi_default, nullptr},
  };
  napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props);
  return exports;
}

}  // namespace

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
