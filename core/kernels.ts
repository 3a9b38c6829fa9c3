/**
 * Fused kernels a backend may provide beyond tfjs's own (registered with `tf.registerKernel` under these names).
 * Plugins use them when the active backend has them (`hasKernel`) and fall back to composing tfjs ops, so every
 * plugin runs everywhere and runs fast where a backend offers more.
 */
import * as tf from '@tensorflow/tfjs-core';

export const FUSED_KERNELS = {
  /**
   * One Adam step on one tensor (Kingma & Ba 2015, Algorithm 1). Inputs `{ param, grad, m, v }`, attrs
   * `{ lr, beta1, beta2, epsilon, c1, c2 }` with c1 = 1 − β1^t and c2 = 1 − β2^t; outputs `[param', m', v']`.
   */
  adam: 'LoomAdam',
  /**
   * The Adam steps of several tensors in one kernel call (the optimizer's whole step where the backend has it; one
   * dispatch for as many tensors as the GPU can bind at once). Inputs `{ param0, grad0, m0, v0, param1, ... }`; attrs
   * hold one number per tensor, `{ lr, beta1, beta2, epsilon, c1, c2, decay }`, where the parameter is first multiplied
   * by `decay` (AdamW's 1 − α·λ, Loshchilov & Hutter 2019, Algorithm 2, line 12; 1 without decay); outputs
   * `[param0', m0', v0', param1', ...]`.
   */
  adamMulti: 'LoomAdamMulti',
  /**
   * One SGD step on one tensor, as plugins/optimizers/sgd.ts composes it from tfjs ops and with the same roundings:
   * g' = g + λθ (nothing added where λ = 0); with momentum μ b' = μb + g' and θ' = θ − α·b' (Nesterov: θ − α·(g' + μb')),
   * else θ' = θ − α·g'. Inputs `{ param, grad }`, and `momentum` (the buffer b) with momentum; attrs
   * `{ lr, decay, momentum, nesterov }` (nesterov 1 or 0); outputs `[param']`, or `[param', momentum']`.
   */
  sgd: 'LoomSGD',
  /**
   * A float32 tensor's range: input `{ x }` (any shape); output [2] = [min, max] over its values, NaN skipped
   * (+Infinity and −Infinity when there is none). No gradient. Dynamic int8 quantization reads each batch's range
   * with it (core/quantization.ts).
   */
  minMax: 'LoomMinMax',
  /** Softmax over the last axis. Input `{ logits }`; output `y`. Its gradient (core/ops/softmax.ts) uses `softmaxGrad`. */
  softmax: 'LoomSoftmax',
  /** dx = y ⊙ (dy − Σ dy ⊙ y) over the last axis. Inputs `{ dy, y }` (y the softmax's output); output `dx`. */
  softmaxGrad: 'LoomSoftmaxGrad',
  /**
   * Layer normalisation over the last axis (Ba et al. 2016, eq. 4). Inputs `{ x, gamma, beta }`, attrs
   * `{ epsilon }`; output `γ ⊙ (x − μ)/√(σ² + ε) + β` with the biased variance σ².
   */
  layerNorm: 'LoomLayerNorm',
  /**
   * The gradient of `layerNorm`, from its input (μ and σ recomputed rather than stored). Inputs `{ dy, x, gamma }`,
   * attrs `{ epsilon }`; outputs `[dx, dgamma, dbeta]`.
   */
  layerNormGrad: 'LoomLayerNormGrad',
  /** relu's gradient from its output: dy where y > 0, else 0. Inputs `{ dy, y }`; output `dx`. */
  reluGrad: 'LoomReluGrad',
  /**
   * GELU's tanh approximation x·½·(1 + tanh(√(2/π)·(x + 0.044715·x·x·x))) in one kernel, for inference (no gradient:
   * used only while no gradient tape records). Input `{ x }` float32; output of x's shape, the same float32
   * operations and roundings, in the same order, as the composed ops of plugins/activations/gelu.ts.
   */
  geluTanh: 'LoomGeluTanh',
  /**
   * A dense layer's weight and bias gradients in one pass over dz: inputs `{ x [..., in], dz [..., out] }` (the same
   * rows); outputs `[dW = xᵀ·dz [in, out], db = Σ_rows dz [out]]`. When the product is split along the rows (a batch's
   * tokens), each slice of dz is summed while it is in cache for the product.
   */
  matMulBiasGrad: 'LoomMatMulBiasGrad',
  /**
   * A 2-D convolution's filter and bias gradients in one pass over its output gradient (NHWC): inputs
   * `{ x [n, h, w, c], dy [n, oh, ow, co], y? }`, attrs `{ strides, pad, dimRoundingMode, filterShape [kh, kw, c, co] }`
   * (as tfjs's Conv2DBackpropFilter's); outputs `[dW [kh, kw, c, co], db [co]]` of dz = dy, or, when y (a relu
   * convolution's output) is given, of dz = dy where y > 0 (relu's gradient, never written out).
   */
  conv2dFilterBiasGrad: 'LoomConv2DFilterBiasGrad',
  /**
   * A 2-D convolution (NHWC, bias row, linear or relu) followed by max pooling over windows that tile its output
   * (stride = window, 'valid'), without writing the convolution's output. Inputs `{ x, filter, bias }`, attrs
   * `{ strides, pad, activation, poolSize: [ph, pw] }`; outputs `[y [n, ⌊oh/ph⌋, ⌊ow/pw⌋, co], at]`, at the tap of
   * each maximum in its window (row-major, as float32 values: exact, and its buffer reused; -1 where none: all NaN).
   * Values as FusedConv2D then MaxPool's.
   */
  conv2dMaxPool: 'LoomConv2DMaxPool',
  /**
   * Its filter and bias gradients: inputs `{ x, dy, y, at }` (dy, y and at pooled), attrs `{ strides, pad, activation,
   * poolSize, filterShape }`; outputs `[dW, db]` of the convolution's output gradient dz = dy at each maximum (relu's
   * gradient by y applied when the activation is relu), 0 elsewhere.
   */
  conv2dMaxPoolGrad: 'LoomConv2DMaxPoolGrad',
  /**
   * Multi-head self-attention from the packed projection (Vaswani et al. 2017, eq. 1, §3.2.2). Inputs `{ qkv, keep }`:
   * qkv [batch, time, 3·d] (q, k and v blocks of d columns, head h in columns h·d/heads.. of each), keep
   * [batch, time] (1 = a key to attend to, 0 = padding); attrs `{ numHeads, causal }`. Outputs
   * `[context [batch, time, d], probs [batch, heads, time, time]]`; masked scores are replaced by −1e9.
   */
  attention: 'LoomAttention',
  /**
   * Softmax cross-entropy per row against q = (1 − ε)·onehot(label) + ε/K. Inputs `{ logits [n, K], labels [n] int32 }`,
   * attrs `{ labelSmoothing }`; output `[n]`: logsumexp(z) − Σ_k q_k z_k (a label outside [0, K) adds no one-hot term).
   */
  crossEntropy: 'LoomCrossEntropy',
  /** Its gradient: inputs `{ logits, labels, scale [n] }`, the same attrs; output `scale_n · (softmax(z_n) − q_n)`. */
  crossEntropyGrad: 'LoomCrossEntropyGrad',
  /** The gradient of `attention` with respect to qkv. Inputs `{ dy, qkv, keep, probs }`, the same attrs; output `dqkv`. */
  attentionGrad: 'LoomAttentionGrad',
  /**
   * One step of incremental causal self-attention over a key/value cache (inference only, no gradient). Inputs
   * `{ qkv [batch, 3·d], k, v }` with k and v [batch, heads, capacity, d_k] holding `length` cached positions; attrs
   * `{ numHeads, length }`, length < capacity. Writes the new position's key and value (qkv's second and third
   * blocks) into row `length` of k and v IN PLACE (they must be the cache's own tensors, shared with nothing), then
   * returns the context [batch, d] of its query over the length + 1 keys: softmax(q kᵀ · (1/√d_k)) v per head, the
   * products, rounding and softmax of the composed ops (BatchMatMul, Multiply, softmax, BatchMatMul).
   */
  cachedAttention: 'LoomCachedAttention',
  /**
   * The rows of a key/value cache in `cachedAttention`'s layout, reordered (beam search: each hypothesis takes the
   * cache of the one it extends). Inputs `{ x [batch, heads, capacity, d_k], indices [rows] int32, out? }`, attrs
   * `{ length }` (the filled positions, ≤ capacity); output [rows, heads, capacity, d_k]: positions below `length` of
   * row r are row indices[r]'s, the rest zero. Only the filled positions are copied, not the spare capacity. `out`, a
   * float32 tensor of the output's shape other than x whose positions from `length` on are zero (the cache's previous
   * buffer), is written IN PLACE and its data returned: no new buffer, no zeros written.
   */
  cacheReorder: 'LoomCacheReorder',
  /**
   * One step of decoding's attention to a cached memory (cross-attention over the encoder output; inference only, no
   * gradient). Inputs `{ q [rows, d], k, v [items, heads, keys, d_k], keep? [rows, keys] }` with rows = items · repeat:
   * query row r attends to item ⌊r / repeat⌋'s keys and values (a beam search's hypotheses share their source's, not
   * repeated); attrs `{ numHeads, repeat }`. Output the context [rows, d]: per head softmax(s · m/√d_k + (m − 1) · 1e9) v,
   * s = q kᵀ, m = 1 where keep ≠ 0 (or without keep) and 0 elsewhere: the products, roundings and softmax of the
   * composed ops (BatchMatMul, Multiply, Add, softmax, BatchMatMul) on the repeated keys and values.
   */
  memoryAttention: 'LoomMemoryAttention',
  /**
   * One position of a pre-norm decoder-only Transformer block (GPT's: Radford et al. 2019, §2.3) over its
   * key/value cache, inference only. Inputs `{ x [rows, d], norm1Gamma, norm1Beta, qkvKernel [d, 3·d], qkvBias,
   * outKernel [d, d], outBias, norm2Gamma, norm2Beta, ff1Kernel [d, ff], ff1Bias?, ff2Kernel [ff, d], ff2Bias?, k, v }`
   * (k and v as `cachedAttention`'s, written IN PLACE at row `length`), attrs `{ numHeads, length, epsilon1,
   * epsilon2, activation: 'linear' | 'relu' | 'gelu-tanh', ff2Activation: 'linear' | 'relu' }`. Output [rows, d]:
   * y = x + cachedAttention(LN1(x)·W_qkv + b_qkv)·W_o + b_o, then y + act2(act(LN2(y)·W_1 + b_1)·W_2 + b_2), with the
   * kernels, order and roundings of the composed layers (layerNorm, _FusedMatMul with its bias, cachedAttention,
   * Add; for gelu-tanh BatchMatMul, Add of the bias, geluTanh).
   */
  decoderStep: 'LoomDecoderStep',
  /**
   * One time step of an LSTM cell (plugins/layers/lstm.ts; gates in Keras's order i, f, g, o), no gradient (the layer's
   * own backward pass uses `lstmCellGrad`). Inputs `{ zx [batch, time, 4u], hu [batch, 4u], c [batch, u] }`, attrs
   * `{ t }`: z = zx[:, t] + hu, i, f, o = σ(z_i, z_f, z_o), g = tanh(z_g), c' = f·c + i·g, h = o·tanh(c'). Outputs
   * `[h [batch, u], c' [batch, u], gates [batch, 4u] = (i, f, g, o)]`, with the operations and roundings of the composed
   * ops (Add, Sigmoid, Tanh, Multiply, Add, Tanh, Multiply), in that order.
   */
  lstmCell: 'LoomLSTMCell',
  /**
   * Its backward step t: inputs `{ dh [batch, u], dy?, gates [time, batch, 4u], cs [time + 1, batch, u], dc [batch, u] }`
   * (cs[t] = c_{t−1}, cs[t + 1] = c_t; dy [batch, time, u] read at step t when attrs.dyAt is 'sequence', dy [batch, u]
   * added when 'last', absent when 'none'), attrs `{ t, dyAt }`. With dh_t = dy_t + dh (or dh), tc = tanh(c_t),
   * dc_t = dc + dh_t·o·(1 − tc²): outputs `[dz = (dc_t·g·i(1 − i), dc_t·c_{t−1}·f(1 − f), dc_t·i·(1 − g²), dh_t·tc·o(1 − o))
   * [batch, 4u], dc_t·f [batch, u]]`, the roundings of the layer's composed gradient.
   */
  lstmCellGrad: 'LoomLSTMCellGrad',
  /**
   * A quantized dense layer (core/quantization.ts): inputs `{ x [rows, in], kernel [in, out] (integers in [−127, 127]),
   * scale [out], bias? [out] }`, attrs `{ inputScale, inputZeroPoint, relu }`; x is quantized to uint8 with the
   * attrs, multiplied in int32 and dequantized: output `[rows, out]`.
   */
  int8Linear: 'LoomInt8Linear',
  /**
   * A quantized 2-D convolution, NHWC: inputs `{ x, kernel [kh, kw, in, out] (integers), scale [out], bias? [out] }`,
   * attrs `{ inputScale, inputZeroPoint, relu, strides: [sh, sw], pad: 'valid' | 'same' }`; output as tf.conv2d's.
   */
  int8Conv2d: 'LoomInt8Conv2D',
} as const;

export function hasKernel(name: string): boolean {
  return tf.getKernel(name, tf.getBackend()) !== undefined;
}
