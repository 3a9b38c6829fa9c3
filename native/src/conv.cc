// Convolutions (NHWC, filter [KH, KW, C, CO]) as im2col + SGEMM, and pooling.
#include "conv.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "gemm.h"
#include "pool.h"

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

}  // namespace

void conv2d(const float* x, const float* w, float* y, const ConvShape& s, const float* bias, bool relu) {
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
  std::memset(dx, 0, s.n * s.h * s.w * s.c * sizeof(float));
  // Tasks own whole images, so their col2im writes never overlap.
  const int64_t threads = pool().size();
  const int64_t images = std::max<int64_t>(1, std::min((s.n + threads - 1) / threads, kColsBudget / std::max<int64_t>(1, per_image * kdim)));
  const int tasks = (int)((s.n + images - 1) / images);
  auto run = [&](int t, bool parallel_gemm) {
    const int64_t n0 = t * images, n1 = std::min(s.n, n0 + images);
    const int64_t r0 = n0 * per_image, r1 = n1 * per_image;
    float* cols = scratch((r1 - r0) * kdim);
    // dcols = dy · Wᵀ, W viewed as [kdim, co].
    sgemm(r1 - r0, kdim, s.co, {dy + r0 * s.co, s.co, false}, {w, s.co, true}, cols, kdim, 0.f, nullptr, false, parallel_gemm);
    col2im(cols, s, r0, r1, dx);
  };
  if (tasks == 1) return run(0, true);  // a single image: let the product use every thread
  pool().parallel_for(tasks, [&](int t) { run(t, false); });
}

void conv2d_backprop_filter(const float* x, const float* dy, float* dw, const ConvShape& s) {
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

void pool2d(const float* x, float* y, const ConvShape& s, bool is_max) {
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
  std::memset(dx, 0, s.n * s.h * s.w * s.c * sizeof(float));
  const int64_t image = s.h * s.w * s.c;
  pool().parallel_for((int)s.n, [&](int n) {
    const float* xn = x + n * image;
    float* dxn = dx + n * image;
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
  std::memset(dx, 0, s.n * s.h * s.w * s.c * sizeof(float));
  const float scale = 1.f / (float)(s.kh * s.kw);
  pool().parallel_for((int)s.n, [&](int n) {
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
