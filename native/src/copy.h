// Strided copies: the data movement behind slice, concat, stack/unstack, split and transpose.
#pragma once
#include <cstdint>

namespace loom {

// For every index i of a box of `rank` dimensions (sizes shape[]): dst[Σ i_d·ds_d] = src[Σ i_d·ss_d].
// Offsets are applied by the caller. The innermost dimension with both strides 1 is copied with memcpy.
void strided_copy(const float* src, float* dst, int rank, const int64_t* shape, const int64_t* ss, const int64_t* ds);

}  // namespace loom
