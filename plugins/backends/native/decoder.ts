/**
 * LoomDecoderStep: one position of a pre-norm, decoder-only Transformer block (GPT's) over its key/value cache, in
 * one kernel call instead of the ~25 tfjs ops of the composed block (transformer-decoder.ts). It runs the kernels
 * those ops run, in the same order on the same values (layer norm, the qkv product with its bias, the cached
 * attention, the output product, the residual Add, ...), calling their kernel functions directly: what it saves
 * is tfjs's bookkeeping per op (tensor tracking, scopes, kernel lookup, reshapes), ~0.3 ms of a GPT token's ~2 ms
 * at batch 1. The results are the composed block's, bit for bit (plugins/layers/decoder-step.test.ts).
 */
import * as tf from '@tensorflow/tfjs-core';
import type { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';
import { FUSED_KERNELS } from '../../../core/kernels';
import type { Info, KernelArgs, KernelFamily } from './kernel';

type Inputs = Record<
  'x' | 'norm1Gamma' | 'norm1Beta' | 'qkvKernel' | 'qkvBias' | 'outKernel' | 'outBias' | 'norm2Gamma' | 'norm2Beta' | 'ff1Kernel' | 'ff2Kernel' | 'k' | 'v',
  Info
> & { ff1Bias?: Info; ff2Bias?: Info };
type Attrs = {
  numHeads: number;
  length: number;
  epsilon1: number;
  epsilon2: number;
  activation: 'linear' | 'relu' | 'gelu-tanh';
  ff2Activation: 'linear' | 'relu';
};

export const decoderFamily: KernelFamily = {
  fused: () => ({
    [FUSED_KERNELS.decoderStep]: (args: KernelArgs) => {
      const backend = args.backend as MathBackendCPU;
      const i = args.inputs as Inputs;
      const a = args.attrs as unknown as Attrs;
      const [rows, d] = i.x.shape as [number, number];
      if (i.x.shape.length !== 2 || i.qkvKernel.shape.join() !== [d, 3 * d].join() || i.outKernel.shape.join() !== [d, d].join()) {
        throw new Error(`${FUSED_KERNELS.decoderStep}: x [${i.x.shape}], qkv kernel [${i.qkvKernel.shape}] and out kernel [${i.outKernel.shape}] do not fit`);
      }
      const made: Info[] = [];
      // The kernel registered under `name` on this backend now (loom's, or tfjs's where loom's declines a case).
      const run = (name: string, inputs: tf.NamedTensorInfoMap, attrs: tf.NamedAttrMap = {}): Info => {
        const kernel = tf.getKernel(name, tf.getBackend());
        if (!kernel) throw new Error(`${FUSED_KERNELS.decoderStep}: the backend has no ${name} kernel`);
        const out = kernel.kernelFunc({ inputs, attrs, backend }) as Info | Info[];
        const info = Array.isArray(out) ? out[0]! : out;
        made.push(info);
        return info;
      };
      const dense = (x: Info, kernel: Info, bias: Info | undefined, activation: 'linear' | 'relu') =>
        run('_FusedMatMul', bias ? { a: x, b: kernel, bias } : { a: x, b: kernel }, { transposeA: false, transposeB: false, activation });
      try {
        // y = x + Attention(LN1(x)) W_o + b_o
        const h1 = run(FUSED_KERNELS.layerNorm, { x: i.x, gamma: i.norm1Gamma, beta: i.norm1Beta }, { epsilon: a.epsilon1 });
        const qkv = dense(h1, i.qkvKernel, i.qkvBias, 'linear');
        const context = run(FUSED_KERNELS.cachedAttention, { qkv, k: i.k, v: i.v }, { numHeads: a.numHeads, length: a.length });
        const y = run('Add', { a: i.x, b: dense(context, i.outKernel, i.outBias, 'linear') });
        // out = y + act(LN2(y) W_1 + b_1) W_2 + b_2
        const h2 = run(FUSED_KERNELS.layerNorm, { x: y, gamma: i.norm2Gamma, beta: i.norm2Beta }, { epsilon: a.epsilon2 });
        // Dense (dense.ts) fuses the bias of a linear or relu layer into the product; for another activation it adds
        // the bias after a plain product, then applies the activation.
        let f: Info;
        if (a.activation === 'gelu-tanh') {
          const z = run('BatchMatMul', { a: h2, b: i.ff1Kernel }, { transposeA: false, transposeB: false });
          f = run(FUSED_KERNELS.geluTanh, { x: i.ff1Bias ? run('Add', { a: z, b: i.ff1Bias }) : z });
        } else f = dense(h2, i.ff1Kernel, i.ff1Bias, a.activation);
        const out = run('Add', { a: y, b: dense(f, i.ff2Kernel, i.ff2Bias, a.ff2Activation) });
        if (out.shape.join() !== [rows, d].join()) throw new Error(`${FUSED_KERNELS.decoderStep}: the block gave [${out.shape}], not [${rows}, ${d}]`);
        made.pop(); // the output is the caller's
        return out;
      } finally {
        for (const t of made) backend.disposeIntermediateTensorInfo(t);
      }
    },
  }),
};
