/**
 * Differentiable ops that plugins share (as torch.nn.functional is to torch.nn): a fully connected product with
 * bias and activation, softmax, layer normalisation and multi-head self-attention. Each runs one backend kernel when the active backend has
 * it (core/kernels.ts) and composes tfjs ops otherwise, with the same values either way (the conformance tests
 * compare the backends).
 *
 * Their gradients are registered with tfjs here, per input and lazily: tfjs's own `tf.fused.matMul` takes its
 * gradient through `customGrad`, which computes every input's gradient, including the input's when nothing
 * needs it (a model's first layer), and it stops fusing relu as soon as gradients are recorded. PyTorch skips
 * what is not needed; so does this.
 */
import * as tf from '@tensorflow/tfjs-core';
import { ShapeError } from './errors';
import { FUSED_KERNELS, hasKernel } from './kernels';

export type LinearActivation = 'linear' | 'relu';

/**
 * y = act(x·W + b) for x of shape [..., in] and W of shape [in, out]: one `_FusedMatMul` kernel, whose gradient
 * (below) computes dx, dW and db only when something needs them.
 */
export function linear(x: tf.Tensor, w: tf.Tensor2D, bias?: tf.Tensor1D | null, activation: LinearActivation = 'linear'): tf.Tensor {
  const [inF, outF] = w.shape;
  if (x.shape.at(-1) !== inF) throw new ShapeError('linear', `[..., ${inF}] (the weight is [${w.shape}])`, x.shape);
  if (bias && (bias.rank !== 1 || bias.shape[0] !== outF)) throw new ShapeError('linear bias', `[${outF}]`, bias.shape);
  const lead = x.shape.slice(0, -1);
  const rows = lead.reduce((a, b) => a * b, 1);
  if (!hasKernel('_FusedMatMul')) {
    // A backend without the fused kernel: the same maths from tfjs ops (and tfjs's gradients).
    const z = tf.matMul(tf.reshape(x, [rows, inF]), w);
    const zb = bias ? tf.add(z, bias) : z;
    return tf.reshape(activation === 'relu' ? tf.relu(zb) : zb, [...lead, outF]);
  }
  const a = tf.reshape(x, [1, rows, inF]);
  const b = tf.reshape(w, [1, inF, outF]);
  const inputs: tf.NamedTensorMap = bias ? { a, b, bias } : { a, b };
  // loomBias tells the gradient below that a bias gradient will be asked for, so it can come with the weight's.
  const attrs = { transposeA: false, transposeB: false, activation, loomBias: !!bias };
  const y = tf.engine().runKernel('_FusedMatMul', inputs, attrs as never) as tf.Tensor;
  return tf.reshape(y, [...lead, outF]);
}

/** Softmax over the last axis; its gradient is one kernel from the output where the backend has it. */
export function softmax(x: tf.Tensor): tf.Tensor {
  if (!hasKernel(FUSED_KERNELS.softmax) || x.dtype !== 'float32') return tf.softmax(x);
  return tf.engine().runKernel(FUSED_KERNELS.softmax, { logits: x }) as tf.Tensor;
}

/**
 * Layer normalisation over the last axis (Ba, Kiros & Hinton 2016, eq. 4): y = γ · (x − μ)/√(σ² + ε) + β. The
 * gradient: with x̂ = (x − μ)·r, r = 1/√(σ² + ε) and g = dy·γ, dx = r · (g − mean(g) − x̂ · mean(g·x̂)) (means over the
 * last axis), dγ = Σ dy·x̂ and dβ = Σ dy over the other axes.
 */
export function layerNorm(x: tf.Tensor, gamma: tf.Tensor1D, beta: tf.Tensor1D, epsilon: number): tf.Tensor {
  if (hasKernel(FUSED_KERNELS.layerNorm) && x.dtype === 'float32') {
    return tf.engine().runKernel(FUSED_KERNELS.layerNorm, { x, gamma, beta }, { epsilon }) as tf.Tensor;
  }
  const norm = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [xs, g, b] = args as tf.Tensor[];
    const save = args[3] as tf.GradSaveFunc;
    const centred = tf.sub(xs!, tf.mean(xs!, -1, true));
    const r = tf.rsqrt(tf.add(tf.mean(tf.square(centred), -1, true), epsilon));
    const xhat = tf.mul(centred, r);
    save([xhat, r, g!]);
    return {
      value: tf.add(tf.mul(xhat, g!), b!),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [sx, sr, sg] = saved as [tf.Tensor, tf.Tensor, tf.Tensor];
        const gy = tf.mul(dy, sg);
        const dx = tf.mul(sr, tf.sub(tf.sub(gy, tf.mean(gy, -1, true)), tf.mul(sx, tf.mean(tf.mul(gy, sx), -1, true))));
        const rows = (t: tf.Tensor) => tf.reshape(t, [-1, sg.shape[0]!]);
        return [dx, tf.sum(rows(tf.mul(dy, sx)), 0), tf.sum(rows(dy), 0)];
      },
    };
  });
  return norm(x, gamma, beta);
}

/**
 * Multi-head self-attention of a packed projection qkv [batch, time, 3·d] → context [batch, time, d], in one kernel
 * each way (no head transposes). Only where the backend has `FUSED_KERNELS.attention` (multi-head-attention
 * composes tfjs ops otherwise). `keyMask` [batch, time]: 0 marks padding keys; `causal`: query i sees keys ≤ i.
 */
export function selfAttention(qkv: tf.Tensor, numHeads: number, keyMask: tf.Tensor | null | undefined, causal: boolean): tf.Tensor {
  const [b, t, d3] = qkv.shape as [number, number, number];
  if (qkv.rank !== 3 || d3 % (3 * numHeads) !== 0) throw new ShapeError('selfAttention', `[batch, time, 3·d] with d divisible by ${numHeads} heads`, qkv.shape);
  if (keyMask && (keyMask.rank !== 2 || keyMask.shape[0] !== b || keyMask.shape[1] !== t)) throw new ShapeError('selfAttention key mask', `[${b}, ${t}]`, keyMask.shape);
  return tf.tidy(() => {
    const keep = keyMask ? tf.cast(tf.notEqual(keyMask, 0), 'float32') : tf.ones([b, t]);
    const [context, probs] = tf.engine().runKernel(FUSED_KERNELS.attention, { qkv, keep }, { numHeads, causal }) as tf.Tensor[];
    probs!.dispose(); // the backward pass keeps its own reference
    return context!;
  });
}

/** dy masked by relu's output y (dy where y > 0): one kernel where the backend has it. */
function reluGrad(dy: tf.Tensor, y: tf.Tensor): tf.Tensor {
  if (hasKernel(FUSED_KERNELS.reluGrad)) return tf.engine().runKernel(FUSED_KERNELS.reluGrad, { dy, y }) as tf.Tensor;
  return tf.mul(dy, tf.step(y));
}

type Attrs = { transposeA: boolean; transposeB: boolean; activation: string; loomBias?: boolean };

/**
 * The gradient of `_FusedMatMul` as `linear` calls it (equal batch dimensions, a bias row, linear or relu): the
 * four transpose cases of op(A)·op(B), each input's gradient computed only when asked for. When `linear` has a
 * bias and the backend has `FUSED_KERNELS.matMulBiasGrad`, the weight's gradient brings the bias's along (for a
 * batch's tokens dz is summed while in cache for the product, not read again by a Sum that ran at DRAM speed);
 * tfjs asks for the inputs' gradients in order, and a bias gradient asked for without the weight's falls back to
 * the Sum.
 */
function fusedMatMulGradient(dy: tf.Tensor | tf.Tensor[], saved: tf.Tensor[], attrs: tf.NamedAttrMap): Record<string, () => tf.Tensor> {
  const [a, b, y] = saved as [tf.Tensor, tf.Tensor, tf.Tensor];
  const { transposeA: tA, transposeB: tB, activation, loomBias } = attrs as unknown as Attrs;
  if (activation !== 'linear' && activation !== 'relu') throw new Error(`linear: no gradient for activation '${activation}' (linear or relu)`);
  const dz = activation === 'relu' ? reluGrad(dy as tf.Tensor, y) : (dy as tf.Tensor);
  const mm = (p: tf.Tensor, q: tf.Tensor, tp: boolean, tq: boolean) => tf.matMul(p, q, tp, tq);
  // Values, not a tensor: a tensor kept for a bias gradient that is never asked for would leak.
  let biasGrad: Float32Array | null = null;
  const weightAndBias = () => {
    const [dw, db] = tf.engine().runKernel(FUSED_KERNELS.matMulBiasGrad, { x: a, dz }) as tf.Tensor[];
    biasGrad = db!.dataSync() as Float32Array;
    db!.dispose();
    return tf.reshape(dw!, b.shape);
  };
  const fuseBias = loomBias === true && !tA && !tB && dz.dtype === 'float32' && hasKernel(FUSED_KERNELS.matMulBiasGrad);
  return {
    a: () => (tA ? (tB ? mm(b, dz, true, true) : mm(b, dz, false, true)) : tB ? mm(dz, b, false, false) : mm(dz, b, false, true)),
    b: () => (fuseBias ? weightAndBias() : tA ? (tB ? mm(dz, a, true, true) : mm(a, dz, false, false)) : tB ? mm(dz, a, true, false) : mm(a, dz, true, false)),
    bias: () => (biasGrad ? tf.tensor1d(biasGrad) : tf.sum(dz, dz.shape.map((_, i) => i).slice(0, -1))),
  };
}

tf.registerGradient({ kernelName: '_FusedMatMul', inputsToSave: ['a', 'b'], outputsToSave: [true], gradFunc: fusedMatMulGradient });

tf.registerGradient({
  kernelName: FUSED_KERNELS.softmax,
  outputsToSave: [true],
  gradFunc: (dy, saved) => {
    const [y] = saved as [tf.Tensor];
    const g = dy as tf.Tensor;
    return {
      logits: () =>
        hasKernel(FUSED_KERNELS.softmaxGrad)
          ? (tf.engine().runKernel(FUSED_KERNELS.softmaxGrad, { dy: g, y }) as tf.Tensor)
          : tf.mul(y, tf.sub(g, tf.sum(tf.mul(g, y), -1, true))),
    };
  },
});

tf.registerGradient({
  kernelName: FUSED_KERNELS.attention,
  inputsToSave: ['qkv', 'keep'],
  outputsToSave: [false, true],
  // The probabilities are internal to selfAttention, so only the context's gradient flows back.
  gradFunc: (dys, saved, attrs) => {
    const [qkv, keep, probs] = saved as [tf.Tensor, tf.Tensor, tf.Tensor];
    const dy = (dys as tf.Tensor[])[0]!;
    return {
      qkv: () => tf.engine().runKernel(FUSED_KERNELS.attentionGrad, { dy, qkv, keep, probs }, attrs) as tf.Tensor,
      keep: () => tf.zerosLike(keep),
    };
  },
});

tf.registerGradient({
  kernelName: FUSED_KERNELS.layerNorm,
  inputsToSave: ['x', 'gamma'],
  gradFunc: (dy, saved, attrs) => {
    const [x, gamma] = saved as [tf.Tensor, tf.Tensor];
    // One kernel gives all three; unused ones are released with the backward pass's scope.
    const [dx, dgamma, dbeta] = tf.engine().runKernel(FUSED_KERNELS.layerNormGrad, { dy: dy as tf.Tensor, x, gamma }, attrs) as tf.Tensor[];
    return { x: () => dx!, gamma: () => dgamma!, beta: () => dbeta! };
  },
});
