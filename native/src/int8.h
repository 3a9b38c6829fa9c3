// Integer matrix products for post-training quantization (Jacob et al. 2018, "Quantization and Training of Neural
// Networks for Efficient Integer-Arithmetic-Only Inference", eqs. 1–7): activations are uint8 with a per-tensor
// scale s_a and zero point z_a (x ≈ s_a·(q_a − z_a)), weights int8, symmetric, with one scale per output channel
// (w ≈ s_w[j]·q_w). The product is computed exactly in int32,
//   acc[i, j] = Σ_p q_a[i, p] · q_w[j, p],
// and dequantized with the zero point's correction taken from the weights' row sums (eq. 7's a₂ term):
//   y[i, j] = s_a·s_w[j]·(acc[i, j] − z_a·Σ_p q_w[j, p]) + bias[j].
// u8×s8 is the operand pair AVX-512 VNNI's vpdpbusd multiplies (four products summed into an int32 lane, no
// intermediate saturation). Without VNNI the AVX2 path widens both operands to int16 and uses vpmaddwd, whose
// pair sums (at most 2·255·128 in magnitude) cannot saturate, unlike vpmaddubsw's int16 sums (2·255·127 > 32767)
// that FBGEMM avoids by reducing activations to 7 bits. AMX int8 is not implemented (no AMX machine to test on).
// Every path gives the same int32 sums, so results do not depend on the path or on the thread count.
#pragma once
#include <cstdint>

#include "conv.h"

namespace loom {

// The deepest product whose int32 sums cannot overflow: 255·128·k < 2^31.
constexpr int64_t kInt8MaxDepth = 65535;

// Which int8 path: 0 = the best this CPU has, 1 = scalar, 2 = AVX2 (widening), 3 = AVX-512 VNNI. A path the CPU
// lacks falls back to the next one down. Returns the path used.
int int8_path(int requested);
// Its name: "scalar", "avx2" or "avx512-vnni".
const char* int8_path_name(int path);

// c[m×n] = a[m×k] (uint8) · b[n×k]ᵀ (int8), int32, row-major. k ≤ kInt8MaxDepth.
int gemm_u8s8(int64_t m, int64_t n, int64_t k, const uint8_t* a, const int8_t* b, int32_t* c, int requested = 0);

// The bytes of a weight matrix w [n×k] (int8, one row per output channel) packed for this CPU's path, and the
// packing: the panels the micro-kernel reads, then each row's sum (int32) for the zero point's correction.
int64_t int8_packed_bytes(int64_t n, int64_t k);
void int8_pack(int64_t n, int64_t k, const int8_t* w, int8_t* packed);
// The (n, k) a buffer was packed for (its first 8 bytes).
void int8_packed_shape(const int8_t* packed, int64_t* n, int64_t* k);

// q = clamp(round_half_even(x / scale) + zero, 0, 255) elementwise (NaN → 0).
void quantize_u8(const float* x, int64_t count, float scale, int32_t zero, uint8_t* q);

// y[m×n] = dequantized (q_a(x) · w ᵀ) + bias, relu optional: x quantized with (scale, zero), w [n×k] int8 packed by
// int8_pack, with per-row scales w_scale[n]. bias may be null.
void int8_linear(int64_t m, int64_t n, int64_t k, const float* x, float scale, int32_t zero, const int8_t* packed, const float* w_scale,
                 const float* bias, bool relu, float* y);

// y (NHWC, [n, oh, ow, co]) = the convolution of x (NHWC) quantized with (scale, zero) by w [co × kh·kw·c] (int8,
// each output channel's filter flattened in (ky, kx, c) order, packed by int8_pack) with per-channel scales
// w_scale[co]; im2col, then int8_linear's product. Padding counts as 0.0 (the zero point).
void int8_conv2d(const ConvShape& s, const float* x, float scale, int32_t zero, const int8_t* packed, const float* w_scale, const float* bias,
                 bool relu, float* y);

}  // namespace loom
