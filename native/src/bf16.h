// bf16 products with fp32 accumulation, the mixed precision of Kalamkar et al. 2019 ("A Study of BFLOAT16 for Deep
// Learning Training", §3: GEMM and convolution inputs in bf16, outputs, master weights, gradients' accumulation and
// optimizer state in fp32) and Micikevicius et al. 2018 ("Mixed Precision Training"). While the precision is bf16,
// every sgemm (gemm.h) rounds both operands to bf16 (round to nearest even, as vcvtne2ps2bf16 does) and sums their
// products in fp32. The product of two bf16 values (8-bit significands) is exact in fp32 (24 bits), so the paths
// differ only in the order the fp32 sums are taken:
//   avx512_bf16: a packed 14×32 micro-kernel on vdpbf16ps (_mm512_dpbf16_ps; Cooper Lake, Sapphire Rapids, Zen 4),
//                which adds two products per fp32 lane per instruction, with DAZ/FTZ (denormal sums flush to zero);
//   amx:         tdpbf16ps on tile registers (Sapphire Rapids and later), 32×32 blocks of C in four fp32 tiles; not yet
//                run on a CPU with AMX: tested here only as the same loop on an emulation of the tiles (mode 5);
//   portable:    the operands rounded into copies, then the fp32 kernel of this CPU (AVX-512, AVX2, NEON, scalar).
// Bias, relu, B's column sums (a bias gradient) and C stay fp32.
#pragma once
#include <cstdint>
#include <cstring>

namespace loom {

// float → bf16 bits as vcvtne2ps2bf16 does (Intel SDM, convert_fp32_to_bfloat16): NaN → quiet NaN (sign and top
// payload kept, quiet bit set), ±0 and denormals → signed zero (DAZ), ±inf kept, otherwise round to nearest, ties to
// even (a finite value past the largest bf16 rounds to inf).
inline uint16_t bf16_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u);
  if ((u & 0x7f800000u) == 0) return (uint16_t)((u >> 16) & 0x8000u);
  return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
inline float bf16_round(float f) {
  const uint32_t u = (uint32_t)bf16_bits(f) << 16;
  float r;
  std::memcpy(&r, &u, 4);
  return r;
}

// Precision of every sgemm from now on: 0 = fp32, 1 = bf16 on the best path here (LOOM_BF16=portable makes that the
// portable one, LOOM_BF16=avx512_bf16 vdpbf16ps on an AMX host), 2 = bf16 portable, 3 = bf16 on avx512_bf16 (the
// portable path where the CPU lacks it, or LOOM_SIMD caps the float kernel below AVX-512), 4 = bf16 on AMX (3 where
// the CPU or the OS lacks it), 5 = AMX's loop on emulated tiles (any CPU; for tests, slow).
// Returns the mode now in force (1, 3 and 4 resolved). Set from JavaScript between products, never while one runs.
int set_gemm_precision(int mode);
int gemm_precision();
// "fp32", "bf16 (portable)", "bf16 (avx512_bf16)", "bf16 (amx)" or "bf16 (amx, emulated)" for a mode; the best bf16
// path's name: "amx", "avx512_bf16" or "portable".
const char* precision_name(int mode);
const char* best_bf16_path();

// y[i] = bf16_round(x[i]) on `path`: 0 the best here, 1 scalar (bf16_bits), 2 vcvtne2ps2bf16 (scalar without
// avx512_bf16). Returns the path used.
int bf16_round_array(const float* x, float* y, int64_t count, int path);

}  // namespace loom
