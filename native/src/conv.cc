// Convolutions (NHWC, filter [KH, KW, C, CO]) as im2col + SGEMM, and pooling.
#include "conv.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <utility>
#include <vector>

#include "bf16.h"
#include "gemm.h"
#include "pool.h"
#include "vec.h"

namespace loom {
namespace {

constexpr int64_t kColsBudget = 4 << 20;  // floats of im2col buffer per task (16 MB)

// A per-thread im2col buffer, grown on demand and kept between calls (at most kColsBudget floats): allocating it
// per call cost a page fault per 4 KB touched, as much as the convolution itself for small ones.
float* scratch(size_t n) {
  thread_local std::vector<float> buf;
  if (buf.size() < n) buf.resize(n);
  return buf.data();
}

// Rows [r0, r1) of the im2col matrix: row r = (n, oh, ow), column (kh, kw, c).
void im2col(const float* x, const ConvShape& s, int64_t r0, int64_t r1, float* cols) {
  const int64_t plane = s.oh * s.ow;
  int64_t n = r0 / plane, oh = (r0 % plane) / s.ow, ow = r0 % s.ow;  // advanced incrementally below
  float* dst = cols;
  for (int64_t r = r0; r < r1; r++) {
    const float* xn = x + n * s.h * s.w * s.c;
    for (int64_t i = 0; i < s.kh; i++) {
      const int64_t ih = oh * s.sh - s.pt + i * s.dh;
      const bool row_outside = ih < 0 || ih >= s.h;
      for (int64_t j = 0; j < s.kw; j++, dst += s.c) {
        const int64_t iw = ow * s.sw - s.pl + j * s.dw;
        if (row_outside || iw < 0 || iw >= s.w) {
          std::fill(dst, dst + s.c, 0.f);
        } else if (s.c == 1) {  // a greyscale input: one float, without the vectorised copy's set-up
          *dst = xn[ih * s.w + iw];
        } else if (s.c < 16) {  // few channels (a first layer): a library call per pixel would cost more than the copy
          const float* src = xn + (ih * s.w + iw) * s.c;
          for (int64_t c = 0; c < s.c; c++) dst[c] = src[c];
        } else {
          std::memcpy(dst, xn + (ih * s.w + iw) * s.c, s.c * sizeof(float));
        }
      }
    }
    if (++ow == s.ow) {
      ow = 0;
      if (++oh == s.oh) oh = 0, n++;
    }
  }
}

// Adds rows [r0, r1) of a column-gradient matrix back into dx (the adjoint of im2col).
void col2im(const float* cols, const ConvShape& s, int64_t r0, int64_t r1, float* dx) {
  const int64_t kdim = s.kh * s.kw * s.c;
  for (int64_t r = r0; r < r1; r++) {
    const int64_t n = r / (s.oh * s.ow), rem = r % (s.oh * s.ow), oh = rem / s.ow, ow = rem % s.ow;
    const float* row = cols + (r - r0) * kdim;
    for (int64_t i = 0; i < s.kh; i++) {
      const int64_t ih = oh * s.sh - s.pt + i * s.dh;
      if (ih < 0 || ih >= s.h) continue;
      for (int64_t j = 0; j < s.kw; j++) {
        const int64_t iw = ow * s.sw - s.pl + j * s.dw;
        if (iw < 0 || iw >= s.w) continue;
        const float* src = row + (i * s.kw + j) * s.c;
        float* dst = dx + ((n * s.h + ih) * s.w + iw) * s.c;
        for (int64_t c = 0; c < s.c; c++) dst[c] += src[c];
      }
    }
  }
}

// Splits `rows` into tasks of at most `cap` rows (and at least one task per thread when there is enough work).
int64_t task_rows(int64_t rows, int64_t kdim) {
  const int64_t threads = pool().size();
  const int64_t cap = std::max<int64_t>(1, kColsBudget / std::max<int64_t>(kdim, 1));
  return std::max<int64_t>(1, std::min(cap, (rows + threads - 1) / threads));
}


// Direct kernels for convolutions of few taps (kh·kw·c ≤ kDirectDepth: a first layer over greyscale or RGB images).
// In bf16 precision (bf16.h) they run on operands rounded to bf16 first, as the portable bf16 path does for a GEMM:
// through im2col such a product took 3-4x the fp32 direct kernel's time (the MNIST CNN's first layer, Zen 5).
// Through im2col and the GEMM such a product has a depth of 9 (3×3 over one channel): the tiled GEMM's packing and
// its 12×32 tile do little arithmetic per byte moved, and gathering the columns cost as much as the product. These
// read each tap straight from the image (padded first where the window leaves it) and keep blocks of L (16, 8, 4) output
// channels in vector registers. The arithmetic per output element is the GEMM's: a chain of multiply-adds in tap
// order from zero, then the bias, then relu.
constexpr int64_t kDirectDepth = 32;

// The rows and columns of input that the output pixels' windows span (from the first output's top left tap).
int64_t span(int64_t out, int64_t stride, int64_t taps, int64_t dilation) { return (out - 1) * stride + (taps - 1) * dilation + 1; }

// Whether the direct kernels take this convolution: few taps, and, where the windows leave the image, a padded copy
// (see padded_images) not much larger than the image (a huge stride or dilation goes to the im2col path instead).
bool direct(const ConvShape& s) {
  if (s.kh * s.kw * s.c > kDirectDepth) return false;
  if (s.oh == 0 || s.ow == 0) return true;
  const int64_t hp = span(s.oh, s.sh, s.kh, s.dh), wp = span(s.ow, s.sw, s.kw, s.dw);
  if (s.pt == 0 && s.pl == 0 && hp <= s.h && wp <= s.w) return true;
  return (double)hp * (double)wp <= 2.0 * (double)(s.h + 2) * (double)(s.w + 2) + 1024.0;
}

// Output pixels per group of the filter gradient's partial sums: fixed, so that its sums' order depends neither on
// the number of threads nor on which thread took which group.
constexpr int64_t kFilterChunk = 512;

// The input as the direct kernels read it: images of `h` rows of `w` pixels in which every tap of every output pixel
// lies, output pixel (oh, ow)'s first tap at row oh·sh, column ow·sw. Either x itself (no padding, the window inside)
// or a zero-padded copy in `store`.
struct Images {
  const float* x;
  int64_t h, w;
};
Images padded_images(const float* x, const ConvShape& s, std::vector<float>& store) {
  const int64_t hp = span(s.oh, s.sh, s.kh, s.dh), wp = span(s.ow, s.sw, s.kw, s.dw);
  if (s.pt == 0 && s.pl == 0 && hp <= s.h && wp <= s.w) return {x, s.h, s.w};
  store.resize(s.n * hp * wp * s.c);
  const int64_t c0 = std::max<int64_t>(0, s.pl), c1 = std::min(wp, s.w + s.pl);  // padded columns that hold x's
  pool().parallel_for((int)s.n, [&](int n) {
    for (int64_t r = 0; r < hp; r++) {
      float* dst = store.data() + (n * hp + r) * wp * s.c;
      const int64_t ih = r - s.pt;
      if (ih < 0 || ih >= s.h || c1 <= c0) {
        std::fill(dst, dst + wp * s.c, 0.f);
        continue;
      }
      std::fill(dst, dst + c0 * s.c, 0.f);
      std::memcpy(dst + c0 * s.c, x + ((n * s.h + ih) * s.w + (c0 - s.pl)) * s.c, (c1 - c0) * s.c * sizeof(float));
      std::fill(dst + c1 * s.c, dst + wp * s.c, 0.f);
    }
  });
  return {store.data(), hp, wp};
}

// Each tap's offset from its pixel's first tap, in (kh, kw, c) order (the filter's rows).
std::vector<int64_t> tap_offsets(const ConvShape& s, const Images& im) {
  std::vector<int64_t> off;
  for (int64_t i = 0; i < s.kh; i++)
    for (int64_t j = 0; j < s.kw; j++)
      for (int64_t c = 0; c < s.c; c++) off.push_back((i * s.dh * im.w + j * s.dw) * s.c + c);
  return off;
}

// P adjacent output pixels of one row, from `src` (the first pixel's first tap; each next pixel's `step` floats on):
// each block of L channels is P vector accumulators. wp is W [kdim, co] with rows padded to `cop` (a multiple of 16)
// with zeros, bp likewise (or null).
template <int L, int P>
LOOM_VEC_INLINE void conv_pixels(const float* src, int64_t step, const int64_t* off, int64_t kdim, const float* wp, const float* bp, bool relu,
                                  float* out, int64_t co, int64_t cop) {
  typedef typename Vec<L>::f V;
  for (int64_t co0 = 0; co0 < co; co0 += L) {
    V acc[P];
    for (int p = 0; p < P; p++) acc[p] = V{};
    for (int64_t t = 0; t < kdim; t++) {
      const V wv = load_full<L>(wp + t * cop + co0);
      const float* xt = src + off[t];
      for (int p = 0; p < P; p++) acc[p] += xt[p * step] * wv;
    }
    const V b = bp ? load_full<L>(bp + co0) : V{};
    const int64_t cw = std::min<int64_t>(L, co - co0);
    for (int p = 0; p < P; p++) {
      V v = bp ? acc[p] + b : acc[p];
      if (relu) v = v < 0.f ? V{} : v;  // as tfjs: NaN stays NaN
      store_part<L>(out + p * co + co0, v, cw);
    }
  }
}

// Output rows [row0, row1) (row = n·oh + oh) of y = x ⋆ W (+ bias, relu), P pixels at a time, then one at a time;
// y points at row row0's first element.
template <int L, int P>
LOOM_VEC_INLINE void conv_direct_impl(const Images& im, const int64_t* off, const float* wp, const float* bp, bool relu, float* y, const ConvShape& s,
                                       int64_t cop, int64_t row0, int64_t row1) {
  const int64_t kdim = s.kh * s.kw * s.c, step = s.sw * s.c;
  for (int64_t row = row0; row < row1; row++) {
    const int64_t n = row / s.oh, oh = row % s.oh;
    const float* src = im.x + ((n * im.h + oh * s.sh) * im.w) * s.c;
    float* out = y + (row - row0) * s.ow * s.co;
    int64_t ow = 0;
    for (; ow + P <= s.ow; ow += P) conv_pixels<L, P>(src + ow * step, step, off, kdim, wp, bp, relu, out + ow * s.co, s.co, cop);
    for (; ow < s.ow; ow++) conv_pixels<L, 1>(src + ow * step, step, off, kdim, wp, bp, relu, out + ow * s.co, s.co, cop);
  }
}

// Taps [0, G) of `off` (already advanced to the group's first) for one block of L channels (from co0, cw of them)
// over output pixels [r0, r1) (dy and y from pixel r0's row): dw[t, :] = Σ_p x(p, t)·dz[p, :] with dz = dy, masked
// by y > 0 when y is given (relu's
// gradient), and, when db is given, db = Σ_p dz[p, :]. Each a chain of multiply-adds in pixel order from zero;
// stored to dw (rows `cop` apart, from the group's first tap) and db.
template <int L, int G>
LOOM_VEC_INLINE void filter_taps(const Images& im, const ConvShape& s, const int64_t* off, int64_t r0, int64_t r1, const float* dy, const float* y,
                                  int64_t co0, int64_t cw, float* dw, int64_t cop, float* db) {
  typedef typename Vec<L>::f V;
  V acc[G], bacc = {};
  int64_t o[G];
  for (int g = 0; g < G; g++) acc[g] = V{}, o[g] = off[g];
  const int64_t plane = s.oh * s.ow, step = s.sw * s.c;
  for (int64_t r = r0; r < r1;) {
    // One output row's run of pixels at a time: their first taps are `step` floats apart.
    const int64_t n = r / plane, oh = (r % plane) / s.ow, ow = r % s.ow, end = std::min(r1, r + (s.ow - ow));
    const float* src = im.x + ((n * im.h + oh * s.sh) * im.w + ow * s.sw) * s.c;
    for (; r < end; r++, src += step) {
      V d = load_part<L>(dy + (r - r0) * s.co + co0, cw);
      if (y) {  // as LoomReluGrad: dy where y > 0, NaN where y is NaN, else 0
        const V yv = load_part<L>(y + (r - r0) * s.co + co0, cw);
        d = yv > 0.f ? d : yv != yv ? yv : V{};
      }
      for (int g = 0; g < G; g++) acc[g] += src[o[g]] * d;
      if (db) bacc += d;
    }
  }
  for (int g = 0; g < G; g++) std::memcpy(dw + g * cop + co0, &acc[g], sizeof(V));
  if (db) std::memcpy(db + co0, &bacc, sizeof(V));
}

// filter_taps for a group of g ≤ G taps (a compile-time count, so that the accumulators stay in registers).
template <int L, int G>
LOOM_VEC_INLINE void filter_group(int64_t g, const Images& im, const ConvShape& s, const int64_t* off, int64_t r0, int64_t r1, const float* dy,
                                   const float* y, int64_t co0, int64_t cw, float* dw, int64_t cop, float* db) {
  if constexpr (G > 1) {
    if (g < G) return filter_group<L, G - 1>(g, im, s, off, r0, r1, dy, y, co0, cw, dw, cop, db);
  }
  filter_taps<L, G>(im, s, off, r0, r1, dy, y, co0, cw, dw, cop, db);
}

// The partial sums of output pixels [r0, r1) (dy and y from pixel r0's row) into part: [kdim, cop] for the filter,
// then [cop] for the bias when `bias`. The taps go in groups of at most 12 (vector accumulators), evenly sized.
template <int L>
LOOM_VEC_INLINE void filter_chunk_impl(const Images& im, const int64_t* off, const float* dy, const float* y, const ConvShape& s, int64_t r0,
                                        int64_t r1, int64_t cop, bool bias, float* part) {
  const int64_t kdim = s.kh * s.kw * s.c;
  const int64_t groups = (kdim + 11) / 12, per = (kdim + groups - 1) / groups;
  for (int64_t co0 = 0; co0 < s.co; co0 += L) {
    const int64_t cw = std::min<int64_t>(L, s.co - co0);
    for (int64_t t0 = 0; t0 < kdim; t0 += per)
      filter_group<L, 12>(std::min(per, kdim - t0), im, s, off + t0, r0, r1, dy, y, co0, cw, part + t0 * cop, cop,
                       bias && t0 == 0 ? part + kdim * cop : nullptr);
  }
}

// One band of `ph` rows of a convolution's output (rows `ow·co` floats apart) max-pooled over windows of ph × pw that
// tile it (pw_out of them): y and at (the window tap of each maximum, row-major in the window, as a float: exact below
// 2^24; -1 when no value is greater than -inf, i.e. all NaN) for one pooled row. Comparisons as the max pooling kernels': the first maximum in
// scan order, NaN never.
template <int L>
LOOM_VEC_INLINE void pool_band_impl(const float* band, int64_t ow, int64_t co, int64_t ph, int64_t pw, int64_t pw_out, float* y, float* at) {
  for (int64_t q = 0; q < pw_out; q++)
    for (int64_t c0 = 0; c0 < co; c0 += L) {
      typedef typename Vec<L>::f V;
      typedef typename Vec<L>::i VI;
      const int64_t cw = std::min<int64_t>(L, co - c0);
      V best = V{} - std::numeric_limits<float>::infinity();
      VI arg = VI{} - 1;
      for (int64_t i = 0, tap = 0; i < ph; i++)
        for (int64_t j = 0; j < pw; j++, tap++) {
          const V v = load_part<L>(band + (i * ow + q * pw + j) * co + c0, cw);
          const VI gt = v > best;
          best = gt ? v : best;
          arg = gt ? VI{} + (int32_t)tap : arg;
        }
      store_part<L>(y + q * co + c0, best, cw);
      store_part<L>(at + q * co + c0, __builtin_convertvector(arg, V), cw);
    }
}

// dz of the convolution outputs under pooled rows [pr0, pr1) of image n (those rows' bands of ph output rows,
// contiguous) of a convolution followed by that pooling, into out: at each window's maximum (at) the window's dy, relu's
// gradient applied by the pooled y when `relu` (dy where y > 0, NaN where y is NaN, else 0); 0 elsewhere, and in the
// columns right of the last window. dy, y and at are the pooled [n, oh/ph, ow/pw, co].
template <int L>
LOOM_VEC_INLINE void fill_dz_impl(const float* dy, const float* y, const float* at, bool relu, const ConvShape& s, int64_t ph, int64_t pw,
                                   int64_t n, int64_t pr0, int64_t pr1, float* out) {
  const int64_t poh = s.oh / ph, pow_ = s.ow / pw;
  for (int64_t pr = pr0; pr < pr1; pr++) {
    float* band = out + (pr - pr0) * ph * s.ow * s.co;
    for (int64_t pc = 0; pc < pow_; pc++) {
      const int64_t q = ((n * poh + pr) * pow_ + pc) * s.co;
      for (int64_t c0 = 0; c0 < s.co; c0 += L) {
        typedef typename Vec<L>::f V;
        const int64_t cw = std::min<int64_t>(L, s.co - c0);
        const V a = load_part<L>(at + q + c0, cw);
        V d = load_part<L>(dy + q + c0, cw);
        if (relu) {
          const V yv = load_part<L>(y + q + c0, cw);
          d = yv > 0.f ? d : yv != yv ? yv : V{};
        }
        for (int64_t i = 0, tap = 0; i < ph; i++)
          for (int64_t j = 0; j < pw; j++, tap++) store_part<L>(band + (i * s.ow + pc * pw + j) * s.co + c0, a == (float)tap ? d : V{}, cw);
      }
    }
    for (int64_t i = 0; i < ph; i++) std::fill(band + (i * s.ow + pow_ * pw) * s.co, band + (i + 1) * s.ow * s.co, 0.f);
  }
}

using PoolBand = void (*)(const float*, int64_t, int64_t, int64_t, int64_t, int64_t, float*, float*);
using FillDz = void (*)(const float*, const float*, const float*, bool, const ConvShape&, int64_t, int64_t, int64_t, int64_t, int64_t, float*);
using ConvDirect = void (*)(const Images&, const int64_t*, const float*, const float*, bool, float*, const ConvShape&, int64_t, int64_t, int64_t);
using FilterChunk = void (*)(const Images&, const int64_t*, const float*, const float*, const ConvShape&, int64_t, int64_t, int64_t, bool, float*);
// Each compiled for the GEMM's instruction set (simd_level()), so that FMA or not matches the GEMM path's.
#define LOOM_CONV_PATHS(suffix, target, L, P)                                                                                          \
  target void conv_direct_##suffix(const Images& im, const int64_t* off, const float* wp, const float* bp, bool relu, float* y,    \
                                   const ConvShape& s, int64_t cop, int64_t row0, int64_t row1) {                                 \
    conv_direct_impl<L, P>(im, off, wp, bp, relu, y, s, cop, row0, row1);                                                            \
  }                                                                                                                                 \
  target void filter_chunk_##suffix(const Images& im, const int64_t* off, const float* dy, const float* y, const ConvShape& s,     \
                                    int64_t r0, int64_t r1, int64_t cop, bool bias, float* part) {                                \
    filter_chunk_impl<L>(im, off, dy, y, s, r0, r1, cop, bias, part);                                                                 \
  }                                                                                                                                 \
  target void pool_band_##suffix(const float* band, int64_t ow, int64_t co, int64_t ph, int64_t pw, int64_t pw_out, float* y,       \
                                 float* at) {                                                                                       \
    pool_band_impl<L>(band, ow, co, ph, pw, pw_out, y, at);                                                                            \
  }                                                                                                                                 \
  target void fill_dz_##suffix(const float* dy, const float* y, const float* at, bool relu, const ConvShape& s, int64_t ph,       \
                               int64_t pw, int64_t n, int64_t pr0, int64_t pr1, float* out) {                                       \
    fill_dz_impl<L>(dy, y, at, relu, s, ph, pw, n, pr0, pr1, out);                                                                     \
  }
#if defined(__x86_64__)
LOOM_CONV_PATHS(avx512, __attribute__((target("avx512f,fma"))), 16, 8)
LOOM_CONV_PATHS(avx2, __attribute__((target("avx2,fma"))), 8, 4)
#endif
LOOM_CONV_PATHS(base, , 4, 4)
#undef LOOM_CONV_PATHS

struct ConvPaths {
  ConvDirect conv;
  FilterChunk filter;
  PoolBand pool_band;
  FillDz fill_dz;
};
ConvPaths conv_paths() {
#if defined(__x86_64__)
  const char* level = simd_level();
  if (!std::strcmp(level, "avx512")) return {conv_direct_avx512, filter_chunk_avx512, pool_band_avx512, fill_dz_avx512};
  if (!std::strcmp(level, "avx2") || !std::strcmp(level, "avx512-on-avx2"))
    return {conv_direct_avx2, filter_chunk_avx2, pool_band_avx2, fill_dz_avx2};
#endif
  return {conv_direct_base, filter_chunk_base, pool_band_base, fill_dz_base};
}
const ConvPaths& paths() {
  static const ConvPaths p = conv_paths();
  return p;
}

int64_t pad16(int64_t n) { return (n + 15) / 16 * 16; }

// Relu's gradient as LoomReluGrad computes it: dy where y > 0, NaN where y is NaN, else 0 (the scalar paths').
inline float relu_grad(float dy, float y) { return y > 0.f ? dy : y != y ? y : 0.f; }

// Whether products round their operands to bf16 (bf16.h): the direct kernels then read rounded copies.
bool bf16_products() { return gemm_precision() != 0; }

// x's `count` values rounded to bf16 into `store` (in blocks over the threads), or x itself in fp32 precision.
const float* operand(const float* x, int64_t count, std::vector<float>& store) {
  if (!bf16_products()) return x;
  store.resize(count);
  constexpr int64_t kBlock = 1 << 16;
  pool().parallel_for((int)((count + kBlock - 1) / kBlock), [&](int b) {
    const int64_t i0 = b * kBlock;
    bf16_round_array(x + i0, store.data() + i0, std::min(kBlock, count - i0), 0);
  });
  return store.data();
}

// The filter as the direct kernels read it: [kdim, cop], each tap's co values then zeros to cop (rounded to bf16
// in bf16 precision).
std::vector<float> padded_filter(const float* w, const ConvShape& s, int64_t cop) {
  const int64_t kdim = s.kh * s.kw * s.c;
  std::vector<float> wp(kdim * cop, 0.f), store;
  w = operand(w, kdim * s.co, store);
  for (int64_t t = 0; t < kdim; t++) std::copy(w + t * s.co, w + (t + 1) * s.co, wp.begin() + t * cop);
  return wp;
}

// A second per-thread buffer (scratch() may hold a chunk's gradient while this holds its rounded copy).
float* scratch2(size_t n) {
  thread_local std::vector<float> buf;
  if (buf.size() < n) buf.resize(n);
  return buf.data();
}

// y = x ⋆ W (+ bias, relu) by the direct kernel, over tasks of whole output rows.
void conv2d_direct(const float* x, const float* w, float* y, const ConvShape& s, const float* bias, bool relu) {
  if (s.oh == 0 || s.ow == 0) return;
  const int64_t cop = pad16(s.co);
  const std::vector<float> wp = padded_filter(w, s, cop);
  std::vector<float> bp(bias ? cop : 0, 0.f), store, rounded;
  if (bias) std::copy(bias, bias + s.co, bp.begin());
  const Images im = padded_images(operand(x, s.n * s.h * s.w * s.c, rounded), s, store);
  const std::vector<int64_t> off = tap_offsets(s, im);
  const int64_t rows = s.n * s.oh;
  // Each output element is computed alone, so how the rows are split changes no result: small tasks, for balance.
  const int64_t per = std::max<int64_t>(1, rows / (8 * pool().size()));
  const int tasks = (int)((rows + per - 1) / per);
  const ConvDirect run = paths().conv;
  pool().parallel_for(tasks, [&](int t) {
    const int64_t r0 = t * per, r1 = std::min(rows, r0 + per);
    run(im, off.data(), wp.data(), bias ? bp.data() : nullptr, relu, y + r0 * s.ow * s.co, s, cop, r0, r1);
  });
}

// dw (and db when given) by the direct kernel from x and the output gradient over `chunks` fixed runs of output
// pixels: range(c) gives chunk c's run [r0, r1), chunk(r0, r1, scratch) its {dy, y} from pixel r0's row (y null: no
// relu mask); scratch has room for `most` pixels' gradient when the chunk is made on the fly. Partial sums per
// chunk, added in chunk order (pixels in no chunk add nothing). In bf16 precision the products take x and the
// (relu-masked) gradient rounded to bf16; the bias gradient, a plain sum, takes the fp32 gradient, as sgemm's column
// sums do, in the same pixel order as the fp32 kernel's.
template <class Range, class Chunk>
void filter_grad_chunked(const float* x, float* dw, float* db, const ConvShape& s, int64_t chunks, int64_t most, Range range, Chunk chunk) {
  const int64_t kdim = s.kh * s.kw * s.c, cop = pad16(s.co), rows = s.n * s.oh * s.ow;
  if (rows == 0) {  // a sum of no terms
    std::fill(dw, dw + kdim * s.co, 0.f);
    if (db) std::fill(db, db + s.co, 0.f);
    return;
  }
  std::vector<float> store, rounded;
  const Images im = padded_images(operand(x, s.n * s.h * s.w * s.c, rounded), s, store);
  const std::vector<int64_t> off = tap_offsets(s, im);
  const int64_t stride = (kdim + 1) * cop;
  std::vector<float> part(std::max<int64_t>(1, chunks) * stride, 0.f);  // no chunk: the sums of nothing, 0
  const FilterChunk run = paths().filter;
  const bool bf16 = bf16_products();
  pool().parallel_for((int)chunks, [&](int c) {
    const std::pair<int64_t, int64_t> r = range(c);
    const std::pair<const float*, const float*> g = chunk(r.first, r.second, scratch(most * s.co));
    float* out = part.data() + c * stride;
    if (!bf16) return run(im, off.data(), g.first, g.second, s, r.first, r.second, cop, db != nullptr, out);
    const int64_t m = (r.second - r.first) * s.co;
    float* dz = scratch2(m);
    for (int64_t i = 0; i < m; i++) dz[i] = g.second ? relu_grad(g.first[i], g.second[i]) : g.first[i];
    if (db)
      for (int64_t p = 0; p < r.second - r.first; p++)
        for (int64_t j = 0; j < s.co; j++) out[kdim * cop + j] += dz[p * s.co + j];
    bf16_round_array(dz, dz, m, 0);
    run(im, off.data(), dz, nullptr, s, r.first, r.second, cop, false, out);
  });
  for (int64_t t = 0; t < kdim; t++)
    for (int64_t j = 0; j < s.co; j++) {
      float v = part[t * cop + j];
      for (int64_t c = 1; c < chunks; c++) v += part[c * stride + t * cop + j];
      dw[t * s.co + j] = v;
    }
  if (db)
    for (int64_t j = 0; j < s.co; j++) {
      float v = part[kdim * cop + j];
      for (int64_t c = 1; c < chunks; c++) v += part[c * stride + kdim * cop + j];
      db[j] = v;
    }
}

// dw (and db when given) from x and dy (masked by y > 0 when y is given) by the direct kernel.
void filter_grad_direct(const float* x, const float* dy, const float* y, float* dw, float* db, const ConvShape& s) {
  const int64_t rows = s.n * s.oh * s.ow;
  const auto range = [&](int64_t c) { return std::pair<int64_t, int64_t>(c * kFilterChunk, std::min(rows, (c + 1) * kFilterChunk)); };
  filter_grad_chunked(x, dw, db, s, (rows + kFilterChunk - 1) / kFilterChunk, kFilterChunk, range, [&](int64_t r0, int64_t, float*) {
    return std::pair<const float*, const float*>(dy + r0 * s.co, y ? y + r0 * s.co : nullptr);
  });
}

// Max pooling over windows that tile the image: stride = window, no dilation or padding, every window inside (the
// usual 2×2 / stride 2). Blocks of L channels in vector registers; the baseline pooling loops were scalar or SSE.
// Comparisons as the general path's: a value replaces the maximum when greater (NaN never does), so the gradient goes
// to the first maximum in scan order, as tfjs's maxPoolPositions.
bool tiled(const ConvShape& s) {
  return s.sh == s.kh && s.sw == s.kw && s.dh == 1 && s.dw == 1 && s.pt == 0 && s.pl == 0 && s.oh * s.kh <= s.h && s.ow * s.kw <= s.w;
}

// Image n: y = the windows' maxima.
template <int L>
LOOM_VEC_INLINE void max_pool_tiled_impl(const float* x, float* y, const ConvShape& s, int64_t n) {
  const float* xn = x + n * s.h * s.w * s.c;
  for (int64_t oh = 0; oh < s.oh; oh++)
    for (int64_t ow = 0; ow < s.ow; ow++) {
      float* out = y + ((n * s.oh + oh) * s.ow + ow) * s.c;
      for (int64_t c0 = 0; c0 < s.c; c0 += L) {
        typedef typename Vec<L>::f V;
        const int64_t cw = std::min<int64_t>(L, s.c - c0);
        V best = V{} - std::numeric_limits<float>::infinity();
        for (int64_t i = 0; i < s.kh; i++)
          for (int64_t j = 0; j < s.kw; j++) {
            const V v = load_part<L>(xn + ((oh * s.kh + i) * s.w + ow * s.kw + j) * s.c + c0, cw);
            best = v > best ? v : best;
          }
        store_part<L>(out + c0, best, cw);
      }
    }
}

// Image n of max pooling's gradient: each window's dy goes to its first maximum and every other element of dx is
// written 0 (the windows do not overlap), including the rows and columns no window covers. One pass, no clearing.
template <int L>
LOOM_VEC_INLINE void max_pool_grad_tiled_impl(const float* dy, const float* x, float* dx, const ConvShape& s, int64_t n) {
  const int64_t image = s.h * s.w * s.c, row = s.w * s.c;
  const float* xn = x + n * image;
  float* dxn = dx + n * image;
  for (int64_t oh = 0; oh < s.oh; oh++) {
    for (int64_t ow = 0; ow < s.ow; ow++) {
      const float* g = dy + ((n * s.oh + oh) * s.ow + ow) * s.c;
      for (int64_t c0 = 0; c0 < s.c; c0 += L) {
        typedef typename Vec<L>::f V;
        typedef typename Vec<L>::i VI;
        const int64_t cw = std::min<int64_t>(L, s.c - c0);
        V best = V{} - std::numeric_limits<float>::infinity();
        VI at = VI{} - 1;
        for (int64_t i = 0, tap = 0; i < s.kh; i++)
          for (int64_t j = 0; j < s.kw; j++, tap++) {
            const V v = load_part<L>(xn + ((oh * s.kh + i) * s.w + ow * s.kw + j) * s.c + c0, cw);
            const VI gt = v > best;
            best = gt ? v : best;
            at = gt ? VI{} + (int32_t)tap : at;
          }
        const V gv = load_part<L>(g + c0, cw);
        for (int64_t i = 0, tap = 0; i < s.kh; i++)
          for (int64_t j = 0; j < s.kw; j++, tap++)
            store_part<L>(dxn + ((oh * s.kh + i) * s.w + ow * s.kw + j) * s.c + c0, at == (int32_t)tap ? gv : V{}, cw);
      }
    }
    // Columns right of the last window, in this band of rows.
    for (int64_t i = 0; i < s.kh; i++) std::fill(dxn + (oh * s.kh + i) * row + s.ow * s.kw * s.c, dxn + (oh * s.kh + i + 1) * row, 0.f);
  }
  std::fill(dxn + s.oh * s.kh * row, dxn + image, 0.f);  // rows below the last window
}

using PoolImage = void (*)(const float*, float*, const ConvShape&, int64_t);
using PoolGradImage = void (*)(const float*, const float*, float*, const ConvShape&, int64_t);
#define LOOM_POOL_PATHS(suffix, target, L)                                                                                 \
  target void max_pool_tiled_##suffix(const float* x, float* y, const ConvShape& s, int64_t n) {                       \
    max_pool_tiled_impl<L>(x, y, s, n);                                                                                    \
  }                                                                                                                     \
  target void max_pool_grad_tiled_##suffix(const float* dy, const float* x, float* dx, const ConvShape& s, int64_t n) { \
    max_pool_grad_tiled_impl<L>(dy, x, dx, s, n);                                                                          \
  }
#if defined(__x86_64__)
LOOM_POOL_PATHS(avx512, __attribute__((target("avx512f,avx512bw,avx512vl"))), 16)
LOOM_POOL_PATHS(avx2, __attribute__((target("avx2"))), 8)
#endif
LOOM_POOL_PATHS(base, , 4)
#undef LOOM_POOL_PATHS

struct PoolPaths {
  PoolImage pool;
  PoolGradImage grad;
};
const PoolPaths& pool_paths() {
  static const PoolPaths p = [] {
#if defined(__x86_64__)
    const char* level = simd_level();
    if (!std::strcmp(level, "avx512")) return PoolPaths{max_pool_tiled_avx512, max_pool_grad_tiled_avx512};
    if (!std::strcmp(level, "avx2") || !std::strcmp(level, "avx512-on-avx2")) return PoolPaths{max_pool_tiled_avx2, max_pool_grad_tiled_avx2};
#endif
    return PoolPaths{max_pool_tiled_base, max_pool_grad_tiled_base};
  }();
  return p;
}

}  // namespace

void conv2d(const float* x, const float* w, float* y, const ConvShape& s, const float* bias, bool relu) {
  if (direct(s)) return conv2d_direct(x, w, y, s, bias, relu);
  const int64_t rows = s.n * s.oh * s.ow, kdim = s.kh * s.kw * s.c;
  const int64_t per = task_rows(rows, kdim);
  const int tasks = (int)((rows + per - 1) / per);
  pool().parallel_for(tasks, [&](int t) {
    const int64_t r0 = t * per, r1 = std::min(rows, r0 + per);
    float* cols = scratch((r1 - r0) * kdim);
    im2col(x, s, r0, r1, cols);
    sgemm(r1 - r0, s.co, kdim, {cols, kdim, false}, {w, s.co, false}, y + r0 * s.co, s.co, 0.f, bias, relu, false);
  });
}

void conv2d_backprop_input(const float* dy, const float* w, float* dx, const ConvShape& s) {
  const int64_t kdim = s.kh * s.kw * s.c, per_image = s.oh * s.ow;
  // Tasks own whole images, so their col2im writes never overlap.
  const int64_t threads = pool().size();
  const int64_t images = std::max<int64_t>(1, std::min((s.n + threads - 1) / threads, kColsBudget / std::max<int64_t>(1, per_image * kdim)));
  const int tasks = (int)((s.n + images - 1) / images);
  auto run = [&](int t, bool parallel_gemm) {
    const int64_t n0 = t * images, n1 = std::min(s.n, n0 + images);
    const int64_t r0 = n0 * per_image, r1 = n1 * per_image;
    float* cols = scratch((r1 - r0) * kdim);
    std::memset(dx + n0 * s.h * s.w * s.c, 0, (n1 - n0) * s.h * s.w * s.c * sizeof(float));  // cleared by its task, in cache for col2im
    // dcols = dy · Wᵀ, W viewed as [kdim, co].
    sgemm(r1 - r0, kdim, s.co, {dy + r0 * s.co, s.co, false}, {w, s.co, true}, cols, kdim, 0.f, nullptr, false, parallel_gemm);
    col2im(cols, s, r0, r1, dx);
  };
  if (tasks == 1) return run(0, true);  // a single image: let the product use every thread
  pool().parallel_for(tasks, [&](int t) { run(t, false); });
}

void conv2d_backprop_filter(const float* x, const float* dy, float* dw, const ConvShape& s) {
  if (direct(s)) return filter_grad_direct(x, dy, nullptr, dw, nullptr, s);
  const int64_t rows = s.n * s.oh * s.ow, kdim = s.kh * s.kw * s.c;
  const int64_t per = task_rows(rows, kdim);
  const int tasks = (int)((rows + per - 1) / per);
  // Each task adds colsᵀ · dy over its rows into its own partial sum; the partials are added at the end.
  std::vector<std::vector<float>> partial(tasks, std::vector<float>(kdim * s.co));
  pool().parallel_for(tasks, [&](int t) {
    const int64_t r0 = t * per, r1 = std::min(rows, r0 + per);
    float* cols = scratch((r1 - r0) * kdim);
    im2col(x, s, r0, r1, cols);
    sgemm(kdim, s.co, r1 - r0, {cols, kdim, true}, {dy + r0 * s.co, s.co, false}, partial[t].data(), s.co, 0.f, nullptr, false,
          false);
  });
  std::memcpy(dw, partial[0].data(), kdim * s.co * sizeof(float));
  for (int t = 1; t < tasks; t++)
    for (int64_t i = 0; i < kdim * s.co; i++) dw[i] += partial[t][i];
}

void conv2d_filter_bias_grad(const float* x, const float* dy, const float* y, float* dw, float* db, const ConvShape& s) {
  if (direct(s)) return filter_grad_direct(x, dy, y, dw, db, s);
  const int64_t rows = s.n * s.oh * s.ow;
  std::vector<float> masked;
  if (y) {  // relu's gradient, written out for the im2col path
    masked.resize(rows * s.co);
    float* m = masked.data();
    pool().parallel_for((int)std::max<int64_t>(1, s.n), [&](int n) {
      const int64_t i0 = n * s.oh * s.ow * s.co, i1 = std::min(rows * s.co, i0 + s.oh * s.ow * s.co);
      for (int64_t i = i0; i < i1; i++) m[i] = relu_grad(dy[i], y[i]);
    });
    dy = m;
  }
  conv2d_backprop_filter(x, dy, dw, s);
  if (!db) return;
  // Σ over pixels in fixed chunks (kFilterChunk), the chunks' sums added in order, as the direct path does.
  std::fill(db, db + s.co, 0.f);
  std::vector<float> acc(s.co);
  for (int64_t r0 = 0; r0 < rows; r0 += kFilterChunk) {
    std::fill(acc.begin(), acc.end(), 0.f);
    for (int64_t r = r0; r < std::min(rows, r0 + kFilterChunk); r++)
      for (int64_t j = 0; j < s.co; j++) acc[j] += dy[r * s.co + j];
    for (int64_t j = 0; j < s.co; j++) db[j] += acc[j];
  }
}

void conv2d_maxpool(const float* x, const float* w, const float* bias, bool relu, float* y, float* at, const ConvShape& s, int64_t ph, int64_t pw) {
  const int64_t poh = s.oh / ph, pow_ = s.ow / pw, prows = s.n * poh;
  if (prows == 0 || pow_ == 0 || s.co == 0) return;
  const PoolBand band_pool = paths().pool_band;
  if (!direct(s)) {  // the whole convolution first (im2col), then the pooling
    std::vector<float> full(s.n * s.oh * s.ow * s.co);
    conv2d(x, w, full.data(), s, bias, relu);
    pool().parallel_for((int)prows, [&](int pr) {
      const int64_t n = pr / poh, row0 = n * s.oh + (pr % poh) * ph;
      band_pool(full.data() + row0 * s.ow * s.co, s.ow, s.co, ph, pw, pow_, y + pr * pow_ * s.co, at + pr * pow_ * s.co);
    });
    return;
  }
  // Each pooled row from its band of ph convolution rows, computed into a per-thread buffer and pooled while in cache.
  const int64_t cop = pad16(s.co);
  const std::vector<float> wp = padded_filter(w, s, cop);
  std::vector<float> bp(bias ? cop : 0, 0.f), store, rounded;
  if (bias) std::copy(bias, bias + s.co, bp.begin());
  const Images im = padded_images(operand(x, s.n * s.h * s.w * s.c, rounded), s, store);
  const std::vector<int64_t> off = tap_offsets(s, im);
  const ConvDirect run = paths().conv;
  pool().parallel_for((int)prows, [&](int pr) {
    const int64_t n = pr / poh, row0 = n * s.oh + (pr % poh) * ph;
    float* band = scratch(ph * s.ow * s.co);
    run(im, off.data(), wp.data(), bias ? bp.data() : nullptr, relu, band, s, cop, row0, row0 + ph);
    band_pool(band, s.ow, s.co, ph, pw, pow_, y + pr * pow_ * s.co, at + pr * pow_ * s.co);
  });
}

void conv2d_maxpool_filter_grad(const float* x, const float* dy, const float* y, const float* at, bool relu, float* dw, float* db, const ConvShape& s,
                                int64_t ph, int64_t pw) {
  const FillDz fill = paths().fill_dz;
  const int64_t poh = s.oh / ph, band = ph * s.ow;  // output pixels under one pooled row
  if (!direct(s)) {  // the convolution's whole output gradient (0 in rows no window reaches), then its filter gradient
    const int64_t plane = s.oh * s.ow;
    std::vector<float> dz(s.n * plane * s.co);
    pool().parallel_for((int)s.n, [&](int n) {
      float* dzn = dz.data() + n * plane * s.co;
      fill(dy, y, at, relu, s, ph, pw, n, 0, poh, dzn);
      std::fill(dzn + poh * band * s.co, dzn + plane * s.co, 0.f);
    });
    return conv2d_filter_bias_grad(x, dz.data(), nullptr, dw, db, s);
  }
  // Chunks of whole pooled rows of one image (about kFilterChunk pixels): rows below the last window add nothing.
  const int64_t per = std::max<int64_t>(1, kFilterChunk / std::max<int64_t>(1, band)), per_image = (poh + per - 1) / per;
  const auto range = [&](int64_t c) {
    const int64_t n = c / per_image, pr0 = (c % per_image) * per, pr1 = std::min(poh, pr0 + per);
    return std::pair<int64_t, int64_t>(n * s.oh * s.ow + pr0 * band, n * s.oh * s.ow + pr1 * band);
  };
  filter_grad_chunked(x, dw, db, s, s.n * per_image, per * band, range, [&](int64_t r0, int64_t r1, float* buf) {
    const int64_t n = r0 / (s.oh * s.ow), pr0 = (r0 % (s.oh * s.ow)) / band;
    fill(dy, y, at, relu, s, ph, pw, n, pr0, pr0 + (r1 - r0) / band, buf);
    return std::pair<const float*, const float*>(buf, nullptr);
  });
}

void pool2d(const float* x, float* y, const ConvShape& s, bool is_max) {
  if (is_max && tiled(s)) {
    const PoolImage run = pool_paths().pool;
    return pool().parallel_for((int)s.n, [&](int n) { run(x, y, s, n); });
  }
  pool().parallel_for((int)s.n, [&](int n) {
    for (int64_t oh = 0; oh < s.oh; oh++) {
      const int64_t h0 = oh * s.sh - s.pt, hmin = std::max<int64_t>(0, h0), hmax = std::min(s.h, h0 + (s.kh - 1) * s.dh + 1);
      for (int64_t ow = 0; ow < s.ow; ow++) {
        const int64_t w0 = ow * s.sw - s.pl, wmin = std::max<int64_t>(0, w0), wmax = std::min(s.w, w0 + (s.kw - 1) * s.dw + 1);
        float* out = y + ((n * s.oh + oh) * s.ow + ow) * s.c;
        for (int64_t c = 0; c < s.c; c++) out[c] = is_max ? -std::numeric_limits<float>::infinity() : 0.f;
        int64_t count = 0;
        // As tfjs's pool(): the window clipped to the image; padding does not count towards the average.
        for (int64_t ih = hmin; ih < hmax; ih += s.dh)
          for (int64_t iw = wmin; iw < wmax; iw += s.dw) {
            const float* in = x + ((n * s.h + ih) * s.w + iw) * s.c;
            if (is_max)
              for (int64_t c = 0; c < s.c; c++) out[c] = in[c] > out[c] ? in[c] : out[c];
            else
              for (int64_t c = 0; c < s.c; c++) out[c] += in[c];
            count++;
          }
        if (!is_max)
          for (int64_t c = 0; c < s.c; c++) out[c] /= (float)count;
      }
    }
  });
}

void max_pool_grad(const float* dy, const float* x, float* dx, const ConvShape& s) {
  if (tiled(s)) {
    const PoolGradImage run = pool_paths().grad;
    return pool().parallel_for((int)s.n, [&](int n) { run(dy, x, dx, s, n); });
  }
  const int64_t image = s.h * s.w * s.c;
  pool().parallel_for((int)s.n, [&](int n) {
    const float* xn = x + n * image;
    float* dxn = dx + n * image;
    // Cleared per image by the task that fills it, so the image is in cache for the additions below (one pass over
    // the whole batch first was a round trip through memory: dx of the MNIST CNN at batch 128 is 11 MB).
    std::memset(dxn, 0, image * sizeof(float));
    // Per channel: the best value so far and its offset in the image (int32 and branch-free, so the channel loop
    // vectorises with compare-and-blend; int32 holds any single image's offsets).
    std::vector<float> best(s.c);
    std::vector<int32_t> at(s.c);
    float* bp = best.data();
    int32_t* ap = at.data();
    for (int64_t oh = 0; oh < s.oh; oh++) {
      const int64_t h0 = oh * s.sh - s.pt, hmax = std::min(s.h, h0 + (s.kh - 1) * s.dh + 1);
      const int64_t hstart = h0 < 0 ? h0 + (-h0 + s.dh - 1) / s.dh * s.dh : h0;  // the first tap inside the image
      for (int64_t ow = 0; ow < s.ow; ow++) {
        const int64_t w0 = ow * s.sw - s.pl, wmax = std::min(s.w, w0 + (s.kw - 1) * s.dw + 1);
        const int64_t wstart = w0 < 0 ? w0 + (-w0 + s.dw - 1) / s.dw * s.dw : w0;
        std::fill(bp, bp + s.c, -std::numeric_limits<float>::infinity());
        std::fill(ap, ap + s.c, -1);
        // The gradient goes to the first maximum in scan order (strict >), as tfjs's maxPoolPositions picks it.
        for (int64_t ih = hstart; ih < hmax; ih += s.dh)
          for (int64_t iw = wstart; iw < wmax; iw += s.dw) {
            const int32_t base = (int32_t)((ih * s.w + iw) * s.c);
            const float* xp = xn + base;
            for (int32_t c = 0; c < (int32_t)s.c; c++) {
              const float v = xp[c], b = bp[c];
              const int32_t gt = -(int32_t)(v > b);  // all ones where v is the new maximum
              bp[c] = v > b ? v : b;
              ap[c] = (ap[c] & ~gt) | ((base + c) & gt);
            }
          }
        const float* g = dy + ((n * s.oh + oh) * s.ow + ow) * s.c;
        for (int64_t c = 0; c < s.c; c++)
          if (ap[c] >= 0) dxn[ap[c]] += g[c];
      }
    }
  });
}

namespace {
// Of the taps p0 + i·step (i in [0, taps)), the first that is ≥ 0 and one past the last that is < size.
int64_t first_tap(int64_t p0, int64_t step) { return p0 < 0 ? (-p0 + step - 1) / step : 0; }
int64_t end_tap(int64_t p0, int64_t step, int64_t size, int64_t taps) { return p0 >= size ? 0 : std::min(taps, (size - p0 + step - 1) / step); }
}  // namespace

void avg_pool_grad(const float* dy, float* dx, const ConvShape& s) {
  // As tfjs's cpu kernel: every window position receives dy / (KH·KW), whatever the clipping at the border.
  const float scale = 1.f / (float)(s.kh * s.kw);
  pool().parallel_for((int)s.n, [&](int n) {
    std::memset(dx + n * s.h * s.w * s.c, 0, s.h * s.w * s.c * sizeof(float));  // cleared by its task, in cache for the additions
    for (int64_t oh = 0; oh < s.oh; oh++)
      for (int64_t ow = 0; ow < s.ow; ow++) {
        const float* g = dy + ((n * s.oh + oh) * s.ow + ow) * s.c;
        // Only the taps inside the image: i in [i0, i1), j in [j0, j1) (the window may be far larger than the image).
        const int64_t h0 = oh * s.sh - s.pt, w0 = ow * s.sw - s.pl;
        const int64_t i0 = first_tap(h0, s.dh), i1 = end_tap(h0, s.dh, s.h, s.kh);
        const int64_t j0 = first_tap(w0, s.dw), j1 = end_tap(w0, s.dw, s.w, s.kw);
        for (int64_t i = i0; i < i1; i++) {
          const int64_t ih = h0 + i * s.dh;
          for (int64_t j = j0; j < j1; j++) {
            const int64_t iw = w0 + j * s.dw;
            float* d = dx + ((n * s.h + ih) * s.w + iw) * s.c;
            for (int64_t c = 0; c < s.c; c++) d[c] += g[c] * scale;
          }
        }
      }
  });
}

}  // namespace loom
