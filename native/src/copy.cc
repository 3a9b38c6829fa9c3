#include "copy.h"

#include <algorithm>
#include <cstring>

#include "pool.h"

namespace loom {

void strided_copy(const float* src, float* dst, int rank, const int64_t* shape, const int64_t* ss, const int64_t* ds) {
  const int64_t inner = shape[rank - 1], si = ss[rank - 1], di = ds[rank - 1];
  int64_t rows = 1;
  for (int d = 0; d < rank - 1; d++) rows *= shape[d];
  auto run = [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; r++) {
      int64_t rem = r, so = 0, dof = 0;
      for (int d = rank - 2; d >= 0; d--) {
        const int64_t i = rem % shape[d];
        rem /= shape[d];
        so += i * ss[d];
        dof += i * ds[d];
      }
      const float* s = src + so;
      float* t = dst + dof;
      if (si == 1 && di == 1)
        std::memcpy(t, s, inner * sizeof(float));
      else
        for (int64_t j = 0; j < inner; j++) t[j * di] = s[j * si];
    }
  };
  const int threads = pool().size();
  if (rows * inner < (1 << 16) || threads == 1 || rows < threads) return run(0, rows);
  const int64_t per = (rows + threads - 1) / threads;
  pool().parallel_for(threads, [&](int t) { run(t * per, std::min(rows, (t + 1) * per)); });
}

}  // namespace loom
